"""The baselines every encoder is compared with, and `resolve_model`, which turns a --model value into a
baseline or a loaded encoder.

`LogMelBaseline`: statistics over time of a frontend's log-mel features. `FeatureBaseline`: the same
statistics of the hand-crafted countermeasure features of audio/features.py (`lfcc`, `mfcc`, `cqcc` and the
ASVspoof 2021 variants `lfcc-asvspoof2021`, `cqcc-asvspoof2021`), so learned embeddings are always set
against the features the spoofing literature uses. Both stand in for an Embedder anywhere (scene /
sample_rate / name / cache_spec).
"""

from __future__ import annotations

import copy

import numpy as np

import audiorep
from audiorep.audio import features
from audiorep.downstream.tasks.splits import TaskError

POOLINGS = ("mean+std", "mean+std+delta")


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

    POOLINGS = POOLINGS

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
        self.feature_transform = None

    def with_feature_transform(self, transform) -> LogMelBaseline:
        """A copy whose statistics are taken over `transform(feats, waves)` ((f32[B, frames, mels], the clips'
        zero-padded samples f32[B, L]) -> f32[B, frames, mels], jax-traceable; e.g. SpecAugment-style masks for
        augmented views). Its `cache_spec` is the original's: the caller adds to
        the cache key what the transform does."""
        twin = copy.copy(self)
        twin.feature_transform = transform
        twin._fn = None
        return twin

    def cache_spec(self) -> dict:
        return {"model": self.name, "checkpoint": "none", "frontend": self.frontend.to_dict(),
                "pooling": self.pooling, "layer": "features", "sample_rate": self.sample_rate}

    def _stats(self):
        if self._fn is None:
            import jax  # imported on use, as above
            import jax.numpy as jnp

            frontend, transform = self.frontend, self.feature_transform

            @jax.jit
            def stats(waves, n_frames):
                feats = frontend(waves)  # f32[B, T, M]
                if transform is not None:
                    feats = transform(feats, waves)
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


class FeatureBaseline:
    """Statistics over time of hand-crafted cepstral features (LFCC / MFCC / CQCC): a baseline model.

    feature: a preset name of audio/features.py (`FEATURE_BASELINES`) or a CepstralConfig / CqccConfig.
    pooling: 'mean+std' (mean and standard deviation of every coefficient, deltas included, over the
    clip's own frames) or 'mean+std+delta' (plus the standard deviation of each value's delta over frames;
    downstream/embed.py `delta_std`), as for LogMelBaseline and the encoders.
    batch_size: clips per feature batch; a batch also holds at most `max_batch_samples` padded samples, so
    minutes-long songs are computed a few at a time. Clips are batched by length (less padding); a clip's
    embedding does not depend on its batch (audio/features.py).

    scene(list of f32[n] clips at `sample_rate`) -> f32[B, k * dim] (k = 2 or 3; dim = 60 for lfcc, mfcc,
    cqcc). The cache key (`cache_spec`) holds the whole feature configuration (and librosa's version for
    CQCC, whose CQT it computes), so changing any option computes new embeddings.
    """

    def __init__(self, feature: str | features.CepstralConfig | features.CqccConfig = "lfcc", *,
                 pooling: str = "mean+std", batch_size: int = 32, max_batch_samples: int = 1 << 22):
        if pooling not in POOLINGS:
            raise TaskError(f"the hand-crafted feature baselines pool with {' or '.join(map(repr, POOLINGS))}, "
                            f"not {pooling!r}.")
        self.config = features.get_config(feature) if isinstance(feature, str) else feature
        self.name = self.config.kind
        self.sample_rate = int(self.config.sample_rate)
        self.pooling = pooling
        self.batch_size = max(1, int(batch_size))
        self.max_batch_samples = int(max_batch_samples)
        self.scene_embedding_size = len(pooling.split("+")) * self.config.dim

    def cache_spec(self) -> dict:
        spec = {"model": self.name, "checkpoint": "none", "features": self.config.to_dict(), "pooling": self.pooling,
                "layer": "features", "sample_rate": self.sample_rate}
        if isinstance(self.config, features.CqccConfig):
            spec["librosa"] = features.librosa_version()
        return spec

    def batches(self, lengths) -> list[np.ndarray]:
        """Clip indices per batch: sorted by length, at most batch_size clips and max_batch_samples padded
        samples each (a longer clip alone)."""
        order = np.argsort(np.asarray(lengths), kind="stable")
        out, group = [], []
        for i in order:
            if group and (len(group) == self.batch_size or (len(group) + 1) * lengths[i] > self.max_batch_samples):
                out.append(np.array(group))
                group = []
            group.append(int(i))
        return out + [np.array(group)] if group else out

    def frames(self, clips) -> tuple[list[np.ndarray], list[int]]:
        """The per-frame features of every clip, in the clips' order: ([f32[T_i, dim]], [samples_i])."""
        clips = _as_clips(clips)
        lengths = [len(c) for c in clips]
        out: list[np.ndarray] = [np.empty(0)] * len(clips)
        for idx in self.batches(lengths):
            width = max(lengths[i] for i in idx)
            waves = np.zeros((len(idx), width), np.float32)
            for j, i in enumerate(idx):
                waves[j, : lengths[i]] = clips[i]
            feats, n = features.extract(waves, np.array([lengths[i] for i in idx]), self.config)
            for j, i in enumerate(idx):
                out[i] = feats[j, : n[j]]
        return out, lengths

    def scene(self, clips) -> np.ndarray:
        if len(clips) == 0:
            return np.zeros((0, self.scene_embedding_size), np.float32)
        per_clip, _ = self.frames(clips)
        counts = np.array([len(f) for f in per_clip])  # every clip has >= 1 frame
        steps = np.concatenate(per_clip).astype(np.float64)  # f64[sum(counts), dim], clip after clip
        starts = np.cumsum(counts) - counts
        mean = np.add.reduceat(steps, starts, axis=0) / counts[:, None]
        var = np.add.reduceat((steps - np.repeat(mean, counts, axis=0)) ** 2, starts, axis=0) / counts[:, None]
        parts = [mean, np.sqrt(var)]
        if "delta" in self.pooling:
            from audiorep.downstream.embed import delta_std  # JAX: imported on use (`audiorep --help` stays fast)

            parts.append(delta_std(steps, counts))
        return np.concatenate(parts, -1).astype(np.float32)

    def __repr__(self) -> str:
        return f"FeatureBaseline({self.name!r}, pooling={self.pooling!r}, dim={self.scene_embedding_size})"


def _as_clips(clips) -> list[np.ndarray]:
    clips = [np.asarray(c, np.float32).reshape(-1) for c in ([clips] if np.ndim(clips[0]) == 0 else clips)]
    empty = [i for i, c in enumerate(clips) if c.size == 0]
    if empty:
        raise TaskError(f"clip {empty[0]} has no samples; hand-crafted features need at least one sample per clip.")
    return clips


FEATURE_BASELINES = tuple(features.PRESETS)


def is_baseline(name: str) -> bool:
    """Whether a --model value names a baseline (logmel[-frontend] or a hand-crafted feature) rather than an
    encoder."""
    return name == "logmel" or name.startswith("logmel-") or name in FEATURE_BASELINES


def resolve_model(name_or_dir: str, **load_options):
    """'logmel' / 'logmel-<frontend>' -> LogMelBaseline (load_options: only `pooling`); 'lfcc', 'mfcc', 'cqcc',
    'lfcc-asvspoof2021', 'cqcc-asvspoof2021' -> FeatureBaseline (pooling, batch_size; an encoder's layer and
    frequency options only at their defaults); anything else -> audiorep.load(name_or_dir, **load_options)."""
    if name_or_dir == "logmel" or name_or_dir.startswith("logmel-"):
        unknown = set(load_options) - {"pooling"}
        if unknown:
            raise TaskError(f"the log-mel baseline takes no {', '.join(sorted(unknown))} option; only pooling.")
        return LogMelBaseline(name_or_dir.split("-", 1)[1] if "-" in name_or_dir else "beats", **load_options)
    if name_or_dir in FEATURE_BASELINES:
        options = dict(load_options)
        if options.pop("layer", None) not in (None, "last"):
            raise TaskError(f"{name_or_dir} is a hand-crafted feature baseline: it has no layers; drop --layer.")
        if options.pop("frequency", None) is not None:
            raise TaskError(f"{name_or_dir} is a hand-crafted feature baseline: it has no frequency tokens; drop "
                            "--frequency.")
        unknown = set(options) - {"pooling", "batch_size"}
        if unknown:
            raise TaskError(f"the {name_or_dir} baseline takes no {', '.join(sorted(unknown))} option; only pooling "
                            "and batch_size.")
        if options.get("pooling") is None:
            options.pop("pooling", None)
        return FeatureBaseline(name_or_dir, **options)
    return audiorep.load(name_or_dir, **load_options)
