"""The log-mel baseline (statistics over time of a frontend's features) and `resolve_model`, which turns a
--model value into the baseline or a loaded encoder."""

from __future__ import annotations

import numpy as np

import audiorep
from audiorep.downstream.tasks.splits import TaskError


class LogMelBaseline:
    """Statistics over time of a frontend's normalised log-mel features: the baseline every encoder must beat.

    frontend: a preset name ('beats', 'ssast', 'passt') or a frontend object (e.g. an encoder's own, so that
    the baseline sees exactly the encoder's input).
    pooling: 'mean+std' (mean and standard deviation per mel bin) or 'mean+std+delta' (plus the standard
    deviation of each bin's delta over frames; downstream/embed.py `delta_std`), so a baseline is pooled the
    same way as the encoders it is compared with.

    scene(list of f32[n] clips at `sample_rate`) -> f32[B, k * mels] (k = 2 or 3). Clips are zero-padded to a
    shared length (a multiple of 0.5 s) and only each clip's own frames enter its statistics.
    """

    POOLINGS = ("mean+std", "mean+std+delta")

    def __init__(self, frontend="beats", batch_size: int = 32, pooling: str = "mean+std"):
        from audiorep.audio.frontends import get_frontend  # JAX: imported on use (`audiorep --help` stays fast)

        if pooling not in self.POOLINGS:
            raise TaskError(f"the log-mel baseline pools with {' or '.join(map(repr, self.POOLINGS))}, "
                             f"not {pooling!r}.")
        self.frontend = get_frontend(frontend) if isinstance(frontend, str) else frontend
        self.frontend_name = frontend if isinstance(frontend, str) else self.frontend.name
        self.sample_rate = int(self.frontend.sample_rate)
        self.name = f"logmel-{self.frontend_name}"
        self.batch_size = int(batch_size)
        self.pooling = pooling
        self.scene_embedding_size = len(pooling.split("+")) * int(self.frontend.num_mel_bins)
        self._fn = None

    def cache_spec(self) -> dict:
        return {"model": self.name, "checkpoint": "none", "frontend": self.frontend.to_dict(),
                "pooling": self.pooling, "layer": "features", "sample_rate": self.sample_rate}

    def _stats(self):
        if self._fn is None:
            import jax  # imported on use, as above
            import jax.numpy as jnp

            frontend = self.frontend

            @jax.jit
            def stats(waves, n_frames):
                feats = frontend(waves)  # f32[B, T, M]
                mask = (jnp.arange(feats.shape[1])[None, :] < n_frames[:, None])[..., None]
                n = jnp.maximum(n_frames, 1)[:, None].astype(jnp.float32)
                mean = jnp.sum(feats * mask, 1) / n
                var = jnp.sum(((feats - mean[:, None]) * mask) ** 2, 1) / n
                return jnp.concatenate([mean, jnp.sqrt(var + 1e-8)], -1), feats

            self._fn = stats
        return self._fn

    def scene(self, clips) -> np.ndarray:
        from audiorep.downstream.embed import delta_std  # JAX: imported on use

        clips = [np.asarray(c, np.float32).reshape(-1) for c in ([clips] if np.ndim(clips[0]) == 0 else clips)]
        step = self.sample_rate // 2
        out = []
        for i in range(0, len(clips), self.batch_size):
            group = clips[i:i + self.batch_size]
            length = max(max(len(c) for c in group), step)
            length = -(-length // step) * step
            waves = np.zeros((len(group), length), np.float32)
            for j, c in enumerate(group):
                waves[j, :len(c)] = c
            frames = np.array([max(1, self.frontend.num_frames(len(c))) for c in group], np.int32)
            stats, feats = self._stats()(waves, frames)
            parts = [np.asarray(stats)]
            if "delta" in self.pooling:
                feats = np.asarray(feats)
                parts.append(delta_std(feats[np.arange(feats.shape[1])[None, :] < frames[:, None]], frames))
            out.append(np.concatenate(parts, -1))
        return np.concatenate(out).astype(np.float32)


def resolve_model(name_or_dir: str, **load_options):
    """'logmel' / 'logmel-<frontend>' -> LogMelBaseline (load_options: only `pooling`); anything else ->
    audiorep.load(name_or_dir, **load_options)."""
    if name_or_dir == "logmel" or name_or_dir.startswith("logmel-"):
        unknown = set(load_options) - {"pooling"}
        if unknown:
            raise TaskError(f"the log-mel baseline takes no {', '.join(sorted(unknown))} option; only pooling.")
        return LogMelBaseline(name_or_dir.split("-", 1)[1] if "-" in name_or_dir else "beats", **load_options)
    return audiorep.load(name_or_dir, **load_options)
