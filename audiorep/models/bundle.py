"""A model bundle: frontend + encoder + pooling + input window, everything needed to embed audio with one model.

`registry.get_bundle` makes one from a registered name or a model directory (model_dir.py);
`downstream.embed.Embedder` wraps one with jit, batching and chunking. The window helpers here say how many
samples fill a model's window of feature frames, so chunking and pretraining crop agree on it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import nnx

from audiorep.models.families import Family, ModelDirError

POOLINGS = ("mean", "max", "mean+max", "mean+std", "mean+std+delta", "cls", "cls+mean")
FREQUENCY_MODES = ("mean", "stack")
"""How the frequency rows of one time step become its embedding: averaged (D) or stacked in order (F x D; keeps
which band a token came from -- matters for patch models on speech).  Frame models have one row: both agree."""

DEFAULT_WINDOW_SECONDS = {"beats": 10.0, "ast": 10.24, "passt": 10.0}
"""A family's input window in seconds, used when its config has no `num_frames` and none was given."""


@dataclasses.dataclass
class ModelBundle:
    """Everything needed to embed audio with one model.

    Attributes:
      name: registry name, or the directory path it was loaded from.
      family: 'beats' | 'ast' | 'passt'.
      frontend: the frontend object: f32[B, samples] -> f32[B, frames, mels] (audiorep.audio.frontends).
      encoder: the nnx encoder: features -> EncoderOutput.
      encoder_config: its config dataclass.
      pooling: default scene pooling.
      frequency: default handling of a time step's frequency rows ('mean' | 'stack').
      window_frames: model input window in feature frames.
      window_samples: the fewest samples that fill `window_frames` frames.
      time_patch: (kernel, stride) of a patch along time, in frames.
      checkpoint_hash: sha256 of the parameters (stable key for caches).
      source: 'registry' (random init, fixed seed) or the model directory.
      meta: the directory's meta (source checkpoint, training run, ...).
      extra_state: the optional extra arrays saved beside the encoder (numpy), or None.
    """

    name: str
    family: str
    frontend: Any
    encoder: nnx.Module
    encoder_config: Any
    pooling: str
    window_frames: int
    window_samples: int
    time_patch: tuple[int, int]
    checkpoint_hash: str
    source: str
    meta: dict = dataclasses.field(default_factory=dict)
    extra_state: Any = None
    frequency: str = "mean"

    @property
    def sample_rate(self) -> int:
        return int(self.frontend.sample_rate)

    @property
    def hop_samples(self) -> int:
        return int(self.frontend.hop_samples)

    @property
    def time_resolution_ms(self) -> float:
        """Spacing of timestamp embeddings: one time patch stride."""
        return 1000.0 * self.time_patch[1] * self.hop_samples / self.sample_rate


def samples_for_frames(frontend, frames: int) -> int:
    """The fewest samples for which `frontend.num_frames(samples) >= frames`."""
    lo, hi = 1, max(2, frames * int(frontend.hop_samples) * 2 + 4096)
    while frontend.num_frames(hi) < frames:
        hi *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if frontend.num_frames(mid) >= frames:
            hi = mid
        else:
            lo = mid + 1
    return lo


def window_frames_for(cfg, frontend, family: str, override: int | None = None) -> int:
    """The model's input window in frames: an explicit value, else the config's `num_frames`, else 10 s of audio."""
    if override is not None:
        return int(override)
    frames = getattr(cfg, "num_frames", None)
    if frames:
        return int(frames)
    seconds = DEFAULT_WINDOW_SECONDS.get(family, 10.0)
    return max(1, int(frontend.num_frames(int(round(seconds * frontend.sample_rate)))))


def make_bundle(*, name: str, fam: Family, frontend, encoder: nnx.Module, cfg, pooling: str, window_frames: int,
                digest: str, source: str, meta: dict, extra=None, frequency: str = "mean") -> ModelBundle:
    """A ModelBundle with its patch geometry and window size in samples worked out from `fam`, `cfg`, `frontend`.

    Raises:
      ModelDirError: the window is shorter than one time patch.
    """
    kernel, stride = (int(v) for v in fam.time_patch(cfg))
    if window_frames < kernel:
        raise ModelDirError(f"{name}: window of {window_frames} frames is shorter than one patch ({kernel} frames).")
    return ModelBundle(
        name=name,
        family=fam.name,
        frontend=frontend,
        encoder=encoder,
        encoder_config=cfg,
        pooling=pooling,
        frequency=frequency,
        window_frames=int(window_frames),
        window_samples=samples_for_frames(frontend, window_frames),
        time_patch=(kernel, stride),
        checkpoint_hash=digest,
        source=source,
        meta=meta,
        extra_state=extra,
    )
