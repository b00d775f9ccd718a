"""Frozen scene and timestamp embeddings from any registered model or model directory.

`Embedder` wraps a `ModelBundle` (models/bundle.py) with input checking, resampling, chunking,
batching and one jitted forward pass (frontend + encoder + pooling). `audiorep.load()` builds one;
the HEAR module (downstream/hear.py) and `audiorep embed` use it.

How audio becomes embeddings
----------------------------
* Input: numpy, JAX or torch arrays (torch only if it is installed; torch is never imported here
  otherwise): one clip f32[n], a batch f32[B, n], or a list of clips of different lengths.
* A clip's time patches are those its own feature frames fill, as the official models count them (the conv
  patch embedding drops trailing frames that do not fill a patch): a 10.0 s clip at 32 kHz is 1000 PaSST
  frames, 99 patches; 5 s at 16 kHz is 498 BEATs frames, 31 patches. A clip shorter than one patch gets
  one, zero-padded.
* A clip that fits the model's window (BEATs 62 patches of 160 ms, SSAST 64 x 160 ms or 512 x 20 ms,
  PaSST 99 x 100 ms) is embedded in one pass. A longer one is cut into chunks of at most that window;
  consecutive chunks start exactly P patch strides apart, so every time patch of the clip is computed
  once and the patch grid stays regular across chunk boundaries. A chunk's feature frames are those of
  the whole clip: frontends whose frames reach past their hop (PaSST's centred STFT) get the real
  samples on both sides of the chunk, and past the clip's end the reflection the whole clip's STFT
  would see; clip statistics (SSAST's waveform mean, `level_db`) are taken over the whole clip.
* A chunk is padded only up to the next *bucket* (a multiple of `bucket_patches` patches), so a
  short clip does not pay for a whole window, and the jitted forward sees few distinct shapes. The
  encoder gets a padding mask: padded patches are never attended to (BEATs also zeroes them before its
  conv positional embedding, as the official model does), take no part in pooling or timestamps, and
  AST/SSAST positions are those of the window's start whatever the padding. So a clip's embedding
  never depends on its bucket or on the other clips of the call: batch == one by one == unpadded.
* All chunks of all clips of a call go through the jitted forward in fixed-size batches (batch size, or
  the next power of two for the last one); nothing loops over clips around the model. With several
  local devices (GPUs, TPU chips) each batch is split across them (parameters replicated).

Scene embedding f32[B, D]: the chosen layer(s), pooled over every valid token of the clip:
'mean' (exact mean over all chunks), 'max', 'mean+max' (concatenated), 'mean+std' (statistics pooling:
the mean and the standard deviation over the clip's patches, as x-vectors and the log-mel baseline),
'mean+std+delta' (those and the standard deviation of the delta -- HTK's regression delta with N = 1, the centred
difference (x[t+1] - x[t-1]) / 2 between time patches -- which keeps how fast the embedding changes: modulation
and rhythm that mean and std over time cannot tell apart; 0 for clips of fewer than three patches), 'cls'
(the mean of the special tokens -- cls and distillation -- averaged over chunks weighted by their valid patches;
AST/PaSST only) or 'cls+mean'.

Frequency rows: the F tokens of one time patch (one per frequency row of the patch grid) become that time step's
vector by `frequency='mean'` (their average, D) or `'stack'` (concatenated from low to high band, F x D: keeps
which band a token came from, which per-token LayerNorm and averaging otherwise lose -- patch models on speech).
Frame models (F = 1) give the same either way. Default: the model directory's (`mean` unless exported otherwise).

Timestamp embeddings f32[B, T, D] with times f32[B, T] in ms: one embedding per time patch (its frequency rows
averaged or stacked, as above), from one forward pass per chunk; times are the patch centres
(regular, spaced one patch stride apart: BEATs 160 ms, SSAST-patch 160 ms, SSAST-frame 20 ms,
PaSST 100 ms) and never past the clip's end.

Layers: 'last' (the encoder's output tokens, after its final norm), an int (hidden state index:
0 = the patch embeddings entering the first block, L = the last block's output before the final
norm; negative counts from the end), a list of ints (concatenated along features), or 'all'.
"""

from __future__ import annotations

import concurrent.futures
import copy
import functools
import inspect
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import soundfile as sf
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from scipy import signal
from tqdm.auto import tqdm

from audiorep import __version__
from audiorep.audio.frontends import KaldiFbank, PasstMel
from audiorep.audio.io import AudioError, check_sample_rate, check_samples, load_audio, resample
from audiorep.data.sources import audio_extensions, files_under
from audiorep.downstream.stream import Streamer
from audiorep.errors import AudiorepError
from audiorep.models.bundle import FREQUENCY_MODES, POOLINGS, ModelBundle, samples_for_frames
from audiorep.models.registry import get_bundle
from audiorep.paths import nearest_existing, write_atomically


class EmbedError(AudiorepError, ValueError):
    """An embedding request that cannot be served (layer/pooling the model does not have, ...)."""


# ------------------------------------------------------------------------------------------- inputs
def is_torch_tensor(x) -> bool:
    """True for a torch.Tensor, decided without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _to_numpy(x, what: str) -> np.ndarray:
    if is_torch_tensor(x):
        x = x.detach()
        if x.is_floating_point():
            x = x.float()
        return x.cpu().numpy()
    if isinstance(x, jax.Array):
        return np.asarray(jax.device_get(x))
    if isinstance(x, (np.ndarray, np.generic, int, float)) and not isinstance(x, bool):
        return np.asarray(x)
    if isinstance(x, (list, tuple)) and all(isinstance(v, (int, float, np.number)) for v in x):
        return np.asarray(x, dtype=np.float32)
    raise AudioError(
        f"{what}: expected a numpy, JAX or torch array of samples, got {type(x).__name__}. "
        "Read files with audiorep.audio.io.load_audio first."
    )


def _check_float(x: np.ndarray, what: str) -> np.ndarray:
    kind = x.dtype.kind
    if kind == "f":
        return x.astype(np.float32, copy=False)
    if kind in "iu":
        hint = " (int16 PCM: divide by 32768)" if x.dtype == np.int16 else ""
        raise AudioError(f"{what} has integer samples ({x.dtype}); pass float audio in [-1, 1]{hint}.")
    raise AudioError(f"{what} has dtype {x.dtype}; pass real-valued float audio in [-1, 1].")


def as_clips(audio, what: str = "audio") -> tuple[list[np.ndarray], str]:
    """Normalise an input into a list of f32[n] clips and its kind: 'one' | 'batch' | 'list'.

    Raises:
      AudioError: wrong type/rank/dtype, an empty clip or batch, NaN/Inf samples (naming the clip).
    """
    if isinstance(audio, (list, tuple)) and len(audio) == 0:
        raise AudioError(f"{what} is an empty list; pass at least one clip.")
    if isinstance(audio, (list, tuple)) and not all(isinstance(v, (int, float, np.number)) for v in audio):
        clips = []
        for i, clip in enumerate(audio):
            arr = _check_float(_to_numpy(clip, f"{what}[{i}]"), f"{what}[{i}]")
            if arr.ndim != 1:
                raise AudioError(
                    f"{what}[{i}] has shape {arr.shape}; a list must hold mono clips f32[n] "
                    "(average channels first: x.mean(axis=0))."
                )
            clips.append(check_samples(arr, f"{what}[{i}]"))
        return clips, "list"
    arr = _check_float(_to_numpy(audio, what), what)
    if arr.ndim == 1:
        return [check_samples(arr, what)], "one"
    if arr.ndim == 2:
        if arr.shape[0] == 0:
            raise AudioError(f"{what} is an empty batch (shape {arr.shape}); pass at least one clip.")
        check_samples(arr, what)
        return list(arr), "batch"
    hint = (" For multichannel audio f32[B, channels, n] average the channels: x.mean(axis=1)."
            if arr.ndim == 3 else "")
    raise AudioError(
        f"{what} has shape {arr.shape} ({arr.ndim} dims); expected one clip f32[n], a batch f32[B, n] or a list "
        f"of clips.{hint}"
    )


# ------------------------------------------------------------------------------------------ pooling
def delta_std(steps: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Standard deviation over time of the delta of each sequence (HTK regression delta, N = 1).

    The delta at step t is (x[t+1] - x[t-1]) / 2, defined for the interior steps of a sequence; sequences of
    fewer than three steps get 0. Computed for all sequences at once (no loop over them), in float64.

    Args:
      steps: f32[sum(counts), D], the steps of every sequence, one sequence after the other.
      counts: i[B] steps per sequence.

    Returns:
      f32[B, D].
    """
    steps = np.asarray(steps, np.float64)
    counts = np.asarray(counts, np.int64)
    if steps.ndim != 2 or steps.shape[0] != counts.sum():
        raise ValueError(f"steps {steps.shape} do not hold sum(counts) = {counts.sum()} rows of features.")
    owner = np.repeat(np.arange(len(counts)), counts)
    inner = owner[2:] == owner[:-2]  # steps t whose neighbours t-1 and t+1 belong to the same sequence
    delta = ((steps[2:] - steps[:-2]) / 2)[inner]
    n = np.maximum(counts - 2, 0)
    ends = np.cumsum(n)
    starts = ends - n
    some = n > 0

    def seg_sum(x):  # f64[sum(n), D] -> f64[B, D]; empty segments sum to 0
        out = np.zeros((len(n), x.shape[1]))
        if some.any():
            out[some] = np.add.reduceat(x, starts[some], axis=0)
        return out

    mean = seg_sum(delta) / np.maximum(n, 1)[:, None]
    var = seg_sum((delta - np.repeat(mean, n, axis=0)) ** 2) / np.maximum(n, 1)[:, None]
    return np.sqrt(var).astype(np.float32)


# ------------------------------------------------------------------------------------------- framing
@dataclass(frozen=True)
class ChunkFraming:
    """How the Embedder makes a chunk's feature frames equal to the same frames of the whole clip.

    Attributes:
      frontend: what runs on the chunks: the model's frontend without its clip-level statistics.
      level_db: RMS level (dB re full scale) each clip is scaled to on the host first, or None.
      subtract_mean: remove each clip's waveform mean on the host (SSAST), after the level.
      context: frames of real signal a chunk gets on each side (0 when a frame only sees its own samples,
        as Kaldi's snip_edges frames; 2 for PaSST's centred 800-sample window at a 320-sample hop).
      preemphasis: for a centred STFT of the pre-emphasised signal (PaSST): its coefficient. Past the clip's
        end the host then appends the samples whose pre-emphasis continues the reflection the STFT of the
        whole clip pads with. None: zeros past the clip's end.
    """

    frontend: object
    level_db: float | None
    subtract_mean: bool
    context: int
    preemphasis: float | None

    @classmethod
    def of(cls, frontend) -> ChunkFraming:
        """The framing of a `KaldiFbank` (snip_edges) or `PasstMel` frontend.

        Raises:
          EmbedError: a frontend whose frames depend on the clip's other frames (subtract_feature_mean) or
            on the clip's edges in a way chunks cannot reproduce (Kaldi snip_edges=False).
        """
        if isinstance(frontend, KaldiFbank):
            cfg = frontend.cfg
            if not cfg.snip_edges or cfg.subtract_feature_mean:
                why = ("reflects the clip's edges (snip_edges=False)" if not cfg.snip_edges
                       else "subtracts the mean of all frames (subtract_feature_mean=True)")
                raise EmbedError(
                    f"frontend {frontend.name!r}: the embedder needs every frame computed from its own samples, but "
                    f"this Kaldi configuration {why}; export the model with snip_edges=True and "
                    "subtract_feature_mean=False.")
            chunk = KaldiFbank(cfg.replace(level_db=None, subtract_mean=False), name=frontend.name)
            return cls(chunk, cfg.level_db, bool(cfg.subtract_mean), 0, None)
        if isinstance(frontend, PasstMel):
            cfg = frontend.cfg
            before = cfg.n_fft // 2 - (cfg.n_fft - cfg.win_length) // 2  # window samples before a frame's centre
            reach = max(before, cfg.win_length - before)
            return cls(frontend, None, False, -(-reach // cfg.hop_length), float(cfg.preemphasis))
        raise EmbedError(f"the embedder does not know how frames of a {type(frontend).__name__} frontend sit in the "
                         "clip; use a KaldiFbank or PasstMel frontend.")

    def prepare(self, clip: np.ndarray, tail: int) -> np.ndarray:
        """f32[n] clip -> f32[n + tail]: the clip-level statistics applied, then `tail` samples past its end."""
        x = clip.astype(np.float64)
        if self.level_db is not None:  # as frontends.normalise_level: exact zeros (padding) do not count
            rms = np.sqrt(np.sum(x * x) / max(np.count_nonzero(x), 1))
            x = x * (10.0 ** (self.level_db / 20.0) / max(rms, 1e-10))
        if self.subtract_mean:
            x = x - x.mean()
        if self.preemphasis is None or len(x) < 2:
            return np.concatenate([x, np.zeros(tail)]).astype(np.float32)
        # Pre-emphasised signal y[t] = x[t + 1] - a x[t] (length L = n - 1); the centred STFT of the clip reads
        # y[L + j] as its reflection y[refl(L + j)]. Samples x[n + j] that make the chunk's own pre-emphasis
        # give exactly those values: x[n + j] = y[refl(L + j)] + a x[n + j - 1], a stable recursion (|a| < 1).
        a = self.preemphasis
        y = x[1:] - a * x[:-1]
        n_y = len(y)
        period = 2 * (n_y - 1) if n_y > 1 else 1
        idx = np.abs(np.mod(np.arange(n_y, n_y + tail), period))
        idx = np.where(idx >= n_y, period - idx, idx)
        ext, _ = signal.lfilter([1.0], [1.0, -a], y[idx], zi=[a * x[-1]])
        return np.concatenate([x, ext]).astype(np.float32)


# ------------------------------------------------------------------------------------------ planning
@dataclass(frozen=True)
class ChunkPlan:
    """Chunks of a call (`Embedder.plan`): which clip, where it starts, how many valid patches, which bucket."""

    clip: np.ndarray  # i32[C] clip index of each chunk
    start: np.ndarray  # i64[C] first sample of each chunk in its clip
    shift: np.ndarray  # i32[C] context frames before the chunk's first frame (0 for a clip's first chunk)
    valid: np.ndarray  # i32[C] valid time patches in each chunk
    bucket: np.ndarray  # i32[C] patches the chunk is padded to
    n_patches: np.ndarray  # i32[B] valid time patches per clip (= timestamps per clip)
    lengths: np.ndarray  # i64[B] clip lengths in samples


class Embedder:
    """Scene and timestamp embeddings of one model.

    Attributes:
      sample_rate: the model's input rate (audio at another rate is resampled when its rate is given).
      scene_embedding_size: D of `scene`.
      timestamp_embedding_size: D of `timestamps`.
      time_resolution_ms: spacing of timestamp embeddings (one patch stride).
      name, family, bundle, layer, pooling, batch_size.
    """

    chunking_rule = 2
    """How clips become chunks and how padding is kept out (part of the embedding cache key): 2 = the patches the
    clip's frames fill, whole-clip frames per chunk, padding mask in the encoder."""

    def __init__(self, bundle: ModelBundle, *, layer="last", pooling: str | None = None, batch_size: int = 16,
                 bucket_patches: int | None = None, window_seconds: float | None = None, devices=None,
                 frequency: str | None = None):
        """
        Args:
          bundle: from models.registry.get_bundle.
          layer: 'last' | int | list of ints | 'all' (see the module docstring).
          pooling: scene pooling, one of POOLINGS; None takes the model's default ('mean' when that default is
            a cls pooling and `layer` is not 'last').
          batch_size: chunks per forward pass.
          bucket_patches: padding granularity of short chunks, in time patches (None: 1/8 of the window).
          window_seconds: a shorter chunk window than the model's (None: the model's window).
          devices: the devices that share each batch (data parallel; parameters replicated). None: all
            local devices (several GPUs / TPU chips of this host; one device on CPU). The batch size is
            rounded up to a multiple of their number.
          frequency: 'mean' | 'stack' (see the module docstring); None: the model's default.
        """
        self.bundle = bundle
        self.name = bundle.name
        self.family = bundle.family
        self.frontend = bundle.frontend
        self.sample_rate = int(bundle.sample_rate)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise EmbedError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.batch_size = int(batch_size)
        self.pooling = bundle.pooling if pooling is None else pooling
        if pooling is None and layer != "last" and "cls" in self.pooling:
            self.pooling = "mean"  # the model's default pools the final cls token, which inner layers lack
        if self.pooling not in POOLINGS:
            raise EmbedError(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}.")
        self.frequency = bundle.frequency if frequency is None else frequency
        if self.frequency not in FREQUENCY_MODES:
            raise EmbedError(f"frequency {self.frequency!r} is not one of {', '.join(FREQUENCY_MODES)}.")

        hop = int(self.frontend.hop_samples)
        self.kernel, self.stride = bundle.time_patch
        window_frames = bundle.window_frames
        if window_seconds is not None:
            frames = int(self.frontend.num_frames(int(round(float(window_seconds) * self.sample_rate))))
            if not self.kernel <= frames <= window_frames:
                raise EmbedError(
                    f"window_seconds={window_seconds} gives {frames} frames; choose between one patch "
                    f"({self.kernel} frames) and the model's window ({window_frames} frames, "
                    f"{bundle.window_samples / self.sample_rate:.2f} s)."
                )
            window_frames = frames
        self.window_frames = int(window_frames)
        self.window_patches = int(bundle.encoder.grid_for(window_frames)[1])
        self.bucket_patches = int(bucket_patches or max(1, math.ceil(self.window_patches / 8)))
        self.patch_hop = self.stride * hop  # samples between consecutive time patches
        self.time_resolution_ms = 1000.0 * self.patch_hop / self.sample_rate
        # Frame j covers samples centred at j * hop + frame_offset (Kaldi snip_edges: half a window;
        # centred STFT: 0); patch t's centre is the middle of its first and last frame.
        frame_offset = (samples_for_frames(self.frontend, 1) - 1) / 2.0
        self.first_centre = frame_offset + (self.kernel - 1) * hop / 2.0
        self._chunk_samples = {}
        self.framing = ChunkFraming.of(self.frontend)
        accepts = inspect.signature(type(bundle.encoder).__call__).parameters
        if "padding_mask" not in accepts:
            raise EmbedError(f"the {self.family} encoder takes no padding_mask, so padding would leak into its "
                             "embeddings; give its __call__ a padding_mask (bool[B, frames], True = padded).")
        # Encoders that fit positions to the input's grid (AST/SSAST) are told the window each chunk starts.
        self._encoder_kwargs = {"window_frames": self.window_frames} if "window_frames" in accepts else {}

        self.feature_transform = None  # with_feature_transform: features -> features before the encoder
        self._graphdef, self._state = nnx.split(bundle.encoder)
        self.devices = list(jax.local_devices() if devices is None else devices)
        if not self.devices:
            raise EmbedError("devices is empty; pass None (all local devices) or a list of jax devices.")
        n_dev = len(self.devices)
        self.batch_size = -(-self.batch_size // n_dev) * n_dev
        if n_dev > 1:
            mesh = Mesh(np.array(self.devices), ("data",))
            self._placement = NamedSharding(mesh, PartitionSpec("data"))
            self._state = jax.device_put(self._state, NamedSharding(mesh, PartitionSpec()))
        else:
            self._placement = self.devices[0]
            self._state = jax.device_put(self._state, self._placement)
        self._layers = self._resolve_layers(layer)
        self.layer = layer
        probe = self._probe_dims()
        self.timestamp_embedding_size = int(probe)
        if self.pooling in ("cls", "cls+mean") and self._layers is not None:
            raise EmbedError(
                f"pooling {self.pooling!r} uses the final cls token; it cannot be combined with layer={layer!r}. "
                "Use pooling='mean' or 'max' for inner layers."
            )
        self.scene_embedding_size = int(probe * len(self.pooling.split("+")))
        self._jitted = {}

    def with_feature_transform(self, transform) -> Embedder:
        """A copy whose encoder sees `transform(feats, waves)` instead of the frontend's features: transform maps
        (f32[B, frames, mels], the rows' samples f32[B, L]) -> f32[B, frames, mels] and runs inside the jitted
        forward (e.g. SpecAugment-style masks for the augmented views of downstream/semisup.py). The copy shares
        the weights; its `cache_spec` is the original's, so the caller adds to the cache key what the transform
        does."""
        twin = copy.copy(self)
        twin.feature_transform = transform
        twin._jitted = {}
        return twin

    # ------------------------------------------------------------------------------------- set-up
    def _hidden_count(self) -> int:
        feats = jax.ShapeDtypeStruct((1, self.frontend.num_frames(self.chunk_samples(1)),
                                      int(self.frontend.num_mel_bins)), jnp.float32)

        def run(state, x):
            out = nnx.merge(self._graphdef, state)(x, padding_mask=jnp.zeros(x.shape[:2], bool), deterministic=True,
                                                   return_hidden=True, **self._encoder_kwargs)
            return out.hidden, out.cls

        hidden, cls = jax.eval_shape(run, self._state, feats)
        self._has_cls = cls is not None
        return len(hidden)

    def _resolve_layers(self, layer) -> tuple[int, ...] | None:
        n = self._hidden_count()
        if isinstance(layer, str):
            if layer == "last":
                return None
            if layer == "all":
                return tuple(range(n))
            raise EmbedError(f"layer {layer!r}: use 'last', 'all', an int in [{-n}, {n - 1}] or a list of ints.")
        items = [layer] if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool) else layer
        if not isinstance(items, (list, tuple)) or not items or not all(
                isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in items):
            raise EmbedError(f"layer {layer!r}: use 'last', 'all', an int in [{-n}, {n - 1}] or a list of ints.")
        out = []
        for i in items:
            if not -n <= i < n:
                raise EmbedError(
                    f"layer {i} does not exist: this model has hidden states 0..{n - 1} (0 = patch embeddings, "
                    f"{n - 1} = last block) or -{n}..-1."
                )
            out.append(int(i) % n)
        return tuple(out)

    def _probe_dims(self) -> int:
        waves = jax.ShapeDtypeStruct((1, self.row_samples(1)), jnp.float32)
        index = jax.ShapeDtypeStruct((1,), jnp.int32)
        out = jax.eval_shape(functools.partial(self._forward, want_time=False), self._state, waves, index, index)
        if self.pooling in ("cls", "cls+mean") and not self._has_cls:
            raise EmbedError(
                f"{self.family} models have no cls token, so pooling {self.pooling!r} is not available; "
                "use 'mean', 'max' or 'mean+max'."
            )
        return int(out["sum"].shape[-1])

    def chunk_samples(self, patches: int) -> int:
        """Samples a chunk needs to fill `patches` time patches."""
        if patches not in self._chunk_samples:
            frames = (patches - 1) * self.stride + self.kernel
            self._chunk_samples[patches] = samples_for_frames(self.frontend, frames)
        return self._chunk_samples[patches]

    def row_samples(self, patches: int) -> int:
        """Samples of one forward row for a bucket of `patches` patches: the chunk and its context on both sides."""
        return self.chunk_samples(patches) + 2 * self.framing.context * int(self.frontend.hop_samples)

    # ------------------------------------------------------------------------------------- forward
    def _forward(self, state, waves, shift, valid, *, want_time: bool):
        """f32[B, L] rows (chunk + context), i32[B] context frames before each chunk, i32[B] valid patches ->
        pooled pieces (sum/max over valid patches, cls, per-patch)."""
        encoder = nnx.merge(self._graphdef, state)
        feats = self.framing.frontend(waves)  # f32[B, frames + 2 * context, mels]
        if self.framing.context:
            frames = feats.shape[1] - 2 * self.framing.context
            feats = jax.vmap(lambda f, s: jax.lax.dynamic_slice_in_dim(f, s, frames, axis=0))(feats, shift)
        if self.feature_transform is not None:
            feats = self.feature_transform(feats, waves)
        # Frames past the last valid patch are padding (a whole padded row when valid = 0: batch filler).
        end = jnp.where(valid > 0, (valid - 1) * self.stride + self.kernel, 0)
        padding = jnp.arange(feats.shape[1])[None, :] >= end[:, None]
        out = encoder(feats, padding_mask=padding, deterministic=True, return_hidden=self._layers is not None,
                      **self._encoder_kwargs)
        if self._layers is None:
            tokens = out.tokens
        else:
            tokens = jnp.concatenate([out.hidden[i] for i in self._layers], axis=-1)
        grid = out.tokens_by_time(tokens)  # f32[B, T, F, D]
        b, t, f, d = grid.shape
        per_patch = grid.reshape(b, t, f * d) if self.frequency == "stack" else grid.mean(axis=2)  # f32[B, T, D']
        mask = (jnp.arange(grid.shape[1])[None, :] < valid[:, None])[..., None]
        res = {"sum": jnp.where(mask, per_patch, 0.0).sum(axis=1)}
        if "std" in self.pooling:  # second moments about the chunk's own mean (no cancellation in float32)
            chunk_mean = res["sum"] / jnp.maximum(valid, 1)[:, None].astype(per_patch.dtype)
            centred = jnp.where(mask, per_patch - chunk_mean[:, None], 0.0)
            res["m2"] = (centred ** 2).sum(axis=1)
        if "max" in self.pooling:
            by_time = per_patch if self.frequency == "stack" else grid.max(axis=2)
            res["max"] = jnp.where(mask, by_time, -jnp.inf).max(axis=1)
        if "cls" in self.pooling:
            res["cls"] = out.cls.mean(axis=1)
        if want_time:
            res["time"] = per_patch
        return res

    def _jit(self, want_time: bool):
        if want_time not in self._jitted:
            self._jitted[want_time] = jax.jit(functools.partial(self._forward, want_time=want_time))
        return self._jitted[want_time]

    # ------------------------------------------------------------------------------------ planning
    def _prepare(self, audio, sample_rate) -> tuple[list[np.ndarray], str]:
        clips, kind = as_clips(audio)
        if sample_rate is not None:
            rate = check_sample_rate(sample_rate, "sample_rate")
            if rate != self.sample_rate:
                if kind == "list":
                    clips = [resample(c, rate, self.sample_rate) for c in clips]
                else:
                    clips = list(resample(np.stack(clips), rate, self.sample_rate))
        return clips, kind

    def plan(self, lengths) -> ChunkPlan:
        """The chunk layout of clips with these lengths in samples (i[B] at the model rate).

        A clip has the time patches its frames fill (at least one); it is one chunk when they fit the window,
        else chunks of `window_patches` patches starting P patch strides apart, the last one shorter.
        """
        lengths = np.atleast_1d(np.asarray(lengths, np.int64))
        frames = np.array([self.frontend.num_frames(int(n)) for n in lengths], np.int64)
        n_patches = np.maximum(1, np.where(frames >= self.kernel, (frames - self.kernel) // self.stride + 1, 0))
        p = self.window_patches
        n_chunks = -(-n_patches // p)
        clip = np.repeat(np.arange(len(lengths)), n_chunks)
        first = np.cumsum(n_chunks) - n_chunks
        index = np.arange(len(clip)) - first[clip]  # chunk index within its clip
        valid = np.minimum(p, n_patches[clip] - index * p)
        bucket = np.minimum(p, -(-valid // self.bucket_patches) * self.bucket_patches)
        shift = np.where(index > 0, self.framing.context, 0)
        return ChunkPlan(clip.astype(np.int32), index * p * self.patch_hop, shift.astype(np.int32),
                     valid.astype(np.int32), bucket.astype(np.int32), n_patches.astype(np.int32), lengths)

    def _padded_batch(self, count: int) -> int:
        """Rows of the forward batch for `count` chunks: the batch size, or for a last partial batch the next
        power of two (rounded up to a multiple of the device count), so few shapes are ever compiled."""
        n_dev = len(self.devices)
        size = self.batch_size if count >= self.batch_size else min(self.batch_size, 1 << (count - 1).bit_length())
        return -(-size // n_dev) * n_dev

    def _prepared(self, clips: list[np.ndarray], plan: ChunkPlan) -> list[np.ndarray]:
        """Each clip with its clip-level statistics applied and, past its end, what its frames see there (zeros,
        or the continued reflection of a centred STFT) up to the end of its last row."""
        hop = int(self.frontend.hop_samples)
        rows = {int(b): self.row_samples(int(b)) for b in np.unique(plan.bucket)}
        ends = np.zeros(len(clips), np.int64)
        np.maximum.at(ends, plan.clip, plan.start - plan.shift * hop + np.array([rows[int(b)] for b in plan.bucket]))
        # Past the reach of the clip's real frames only the padded patches look, except for a clip shorter than
        # one patch, whose one patch reads up to the end of a one-patch row; beyond that zeros are as good.
        reach = max(self.row_samples(1), 2 * self.framing.context * hop + 2)
        out = []
        for clip, end in zip(clips, ends):  # host preparation per clip, as decoding and resampling
            tail = max(0, int(end) - len(clip))
            x = self.framing.prepare(clip, min(tail, reach))
            out.append(np.pad(x, (0, len(clip) + tail - len(x))))
        return out

    def _gather(self, clips: list[np.ndarray], plan: ChunkPlan, rows: np.ndarray, length: int) -> np.ndarray:
        """f32[len(rows), length]: the prepared audio of the rows `rows`, from `shift` frames before each chunk."""
        hop = int(self.frontend.hop_samples)
        out = np.zeros((len(rows), length), np.float32)
        for r, row in enumerate(rows):  # one slice copy per chunk; the model never runs per chunk
            first = plan.start[row] - plan.shift[row] * hop
            seg = clips[plan.clip[row]][first: first + length]
            out[r, : len(seg)] = seg
        return out

    def _run(self, clips: list[np.ndarray], plan: ChunkPlan, want_time: bool) -> dict[str, np.ndarray]:
        """Forward every chunk in fixed-size batches; results in chunk order."""
        fn = self._jit(want_time)
        clips = self._prepared(clips, plan)
        pending = []
        for bucket in np.unique(plan.bucket):
            rows = np.flatnonzero(plan.bucket == bucket)
            length = self.row_samples(int(bucket))
            for i in range(0, len(rows), self.batch_size):
                part = rows[i: i + self.batch_size]
                size = self._padded_batch(len(part))
                waves = np.zeros((size, length), np.float32)
                waves[: len(part)] = self._gather(clips, plan, part, length)
                shift, valid = np.zeros(size, np.int32), np.zeros(size, np.int32)
                shift[: len(part)], valid[: len(part)] = plan.shift[part], plan.valid[part]
                waves, shift, valid = jax.device_put((waves, shift, valid), self._placement)
                pending.append((part, fn(self._state, waves, shift, valid)))  # dispatched asynchronously
        results: dict[str, list] = {}
        order = []
        for part, res in pending:
            order.append(part)
            for k, v in jax.device_get(res).items():
                results.setdefault(k, []).append(np.asarray(v)[: len(part)])
        order = np.concatenate(order)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        out = {}
        for k, parts in results.items():
            if k == "time":
                width = self.window_patches
                padded = [np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0))) for a in parts]
                out[k] = np.concatenate(padded)[inverse]
            else:
                out[k] = np.concatenate(parts)[inverse]
        return out

    # --------------------------------------------------------------------------------- public API
    def scene(self, audio, sample_rate: int | None = None) -> np.ndarray:
        """Clip-level embeddings.

        Args:
          audio: one clip f32[n], a batch f32[B, n], or a list of clips (numpy, JAX or torch).
          sample_rate: the audio's rate; resampled to `self.sample_rate` when different. None: already there.

        Returns:
          f32[B, scene_embedding_size] (f32[D] for one clip).
        """
        clips, kind = self._prepare(audio, sample_rate)
        plan = self.plan(np.array([len(c) for c in clips]))
        res = self._run(clips, plan, want_time="delta" in self.pooling)
        b, weights = len(clips), plan.valid.astype(np.float64)
        parts = []
        if "mean" in self.pooling:
            total = np.zeros((b, res["sum"].shape[1]), np.float64)
            np.add.at(total, plan.clip, res["sum"])
            parts.append(total / plan.n_patches[:, None])
        if "std" in self.pooling:  # chunks' (count, mean, M2) merged exactly (Chan et al.'s parallel variance)
            n_c = plan.valid.astype(np.float64)[:, None]
            mean_c = res["sum"] / n_c
            dev = mean_c - parts[0][plan.clip]
            m2 = np.zeros_like(parts[0])
            np.add.at(m2, plan.clip, res["m2"] + n_c * dev ** 2)
            parts.append(np.sqrt(m2 / plan.n_patches[:, None]))
        if "delta" in self.pooling:  # a clip's chunks are consecutive in plan order and all but its last are full
            steps = res["time"][np.arange(res["time"].shape[1])[None, :] < plan.valid[:, None]]
            parts.append(delta_std(steps, plan.n_patches))
        if "max" in self.pooling:
            best = np.full((b, res["max"].shape[1]), -np.inf)
            np.maximum.at(best, plan.clip, res["max"])
            parts.append(best)
        if "cls" in self.pooling:
            total = np.zeros((b, res["cls"].shape[1]), np.float64)
            np.add.at(total, plan.clip, res["cls"] * weights[:, None])
            parts.insert(0, total / plan.n_patches[:, None])
        emb = np.concatenate(parts, axis=-1).astype(np.float32)
        return emb[0] if kind == "one" else emb

    def timestamp_times(self, num_samples: int) -> np.ndarray:
        """f32[T] centres (ms) of the timestamp embeddings of a clip of `num_samples` samples at the model rate."""
        plan = self.plan(np.array([num_samples]))
        return self._times(plan.n_patches[0], num_samples)

    def _times(self, n: int, length: int) -> np.ndarray:
        centres = (self.first_centre + self.patch_hop * np.arange(n)) * (1000.0 / self.sample_rate)
        return np.minimum(centres, 1000.0 * length / self.sample_rate).astype(np.float32)

    def timestamps(self, audio, sample_rate: int | None = None):
        """Embeddings over time, one per time patch.

        Args:
          audio: one clip f32[n], a batch f32[B, n], or a list of clips (numpy, JAX or torch).
          sample_rate: the audio's rate; resampled when different from `self.sample_rate`.

        Returns:
          (embeddings f32[B, T, timestamp_embedding_size], times_ms f32[B, T]) for a batch;
          ([T, D], [T]) for one clip; two lists of per-clip arrays for a list of clips.
        """
        clips, kind = self._prepare(audio, sample_rate)
        plan = self.plan(np.array([len(c) for c in clips]))
        per_patch = self._run(clips, plan, want_time=True)["time"]  # f32[C, P, D]
        p = self.window_patches
        # The chunks of each clip are consecutive in plan order: lay them end to end and cut per clip.
        first = np.cumsum(-(-plan.n_patches // p)) - (-(-plan.n_patches // p))
        embs, times = [], []
        for i, n in enumerate(plan.n_patches):  # slicing views, no model work
            n_chunks = -(-int(n) // p)
            flat = per_patch[first[i]: first[i] + n_chunks].reshape(n_chunks * p, -1)
            embs.append(flat[:n])
            times.append(self._times(int(n), int(plan.lengths[i])))
        if kind == "one":
            return embs[0], times[0]
        if kind == "list":
            return embs, times
        return np.stack(embs).astype(np.float32), np.stack(times)

    def stream(self, blocks, window_ms: float, hop_ms: float, *, sample_rate: int | None = None, head=None):
        """Embeddings (and head scores) of a sliding window over audio arriving in blocks, in bounded memory.

        Every `hop_ms` the last `window_ms` of audio is embedded exactly as `scene(window)` would (see
        downstream/stream.py for the windows and the memory bound).

        Args:
          blocks: an iterable of mono blocks f32[n] (any sizes) at `sample_rate` (None: the model's rate).
          window_ms, hop_ms: window length and result spacing in milliseconds.
          head: a downstream.heads.Head trained on this embedder's embeddings (HeadError otherwise), or None.

        Returns:
          an iterator of StreamStep(time_ms (the window's end), embedding f32[D], score (None without a head)).
        """
        return Streamer(self, window_ms, hop_ms, sample_rate=sample_rate, head=head).run(blocks)

    def __repr__(self) -> str:
        return (f"Embedder({self.name!r}, family={self.family}, layer={self.layer!r}, pooling={self.pooling!r}, "
                f"frequency={self.frequency!r}, "
                f"sample_rate={self.sample_rate}, scene={self.scene_embedding_size}, "
                f"timestamps={self.timestamp_embedding_size} every {self.time_resolution_ms:g} ms)")


def load(name_or_dir, *, layer="last", pooling: str | None = None, batch_size: int = 16,
         bucket_patches: int | None = None, window_seconds: float | None = None, verify: bool = True,
         devices=None, frequency: str | None = None) -> Embedder:
    """An `Embedder` for a registered model name (fixed-seed random init) or a model directory (its weights).

    See `Embedder.__init__` for the arguments; `verify` checks the directory's parameter checksum.
    """
    bundle = get_bundle(name_or_dir, verify=verify)
    return Embedder(bundle, layer=layer, pooling=pooling, batch_size=batch_size, bucket_patches=bucket_patches,
                    window_seconds=window_seconds, devices=devices, frequency=frequency)


# --------------------------------------------------------------------------------------- files -> npz
@dataclass
class EmbedFilesResult:
    """What `embed_files` wrote: the output path, the embedded and the failed files (with reasons)."""

    out: Path
    files: list[str]
    failed: list[tuple[str, str]]
    dim: int
    seconds: float


def find_audio_files(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], Path]:
    """Every audio file named or found (recursively) under `paths`, sorted, and the folder names are relative to.

    Raises:
      AudioError: a path that does not exist, or no audio file at all.
    """
    exts = audio_extensions()
    files: list[Path] = []
    roots = []
    for p in map(Path, paths):
        if p.is_dir():
            found = files_under(p, exts)
            files.extend(found)
            roots.append(p.resolve())
        elif p.is_file():
            files.append(p)
            roots.append(p.resolve().parent)
        else:
            raise AudioError(f"{p}: no such file or folder. Check the path (relative paths start at {Path.cwd()}).")
    if not files:
        raise AudioError(f"no audio files under {', '.join(map(str, paths))} (looked for {', '.join(sorted(exts))}).")
    root = Path(os.path.commonpath(roots)) if roots else Path.cwd()
    unique = list(dict.fromkeys(f.resolve() for f in files))
    return unique, root


def _probe_length(path: Path, rate: int) -> tuple[float, str | None]:
    """(length at `rate` in samples, error or None) from the file header, without decoding."""
    try:
        info = sf.info(str(path))
        return info.frames * rate / max(1, info.samplerate), None
    except Exception as err:  # unreadable header: let load_audio word the reason (it names the file and the fix)
        try:
            load_audio(path)
        except (AudioError, OSError, RuntimeError, ValueError) as reason:
            return 0.0, str(reason)
        return 0.0, f"{type(err).__name__}: {err}"


def _load_group(paths: Sequence[Path], rate: int) -> list[tuple[np.ndarray | None, str | None]]:
    out = []
    for p in paths:
        try:
            out.append((load_audio(p, sample_rate=rate)[0], None))
        except (AudioError, OSError, RuntimeError, ValueError) as err:
            out.append((None, str(err)))
    return out


def _fixed_unicode(items: Sequence[str]) -> np.ndarray:
    """A fixed-width unicode array (np.load reads it with allow_pickle=False)."""
    width = max([1, *(len(s) for s in items)])
    return np.array(list(items), dtype=f"<U{width}")


def check_npz_output(out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check, before any work, that `out` can take a new .npz: a .npz name, not a folder, not an existing file
    (unless `overwrite`), under a folder that exists or can be created. Returns it as a Path.

    Raises:
      AudioError: the name does not end in .npz.
      EmbedError: `out` is a folder, exists without `overwrite`, or lies under a file or a read-only folder.
    """
    out = Path(out)
    if out.suffix != ".npz":
        raise AudioError(f"--out {out}: the output is a NumPy archive; give it a .npz name (e.g. {out.stem}.npz).")
    if out.is_dir():
        raise EmbedError(f"--out {out} is a folder; give the path of a .npz file (e.g. {out / 'embeddings.npz'}).")
    if out.exists() and not overwrite:
        raise EmbedError(f"--out {out} already exists; choose another name, or pass --force (overwrite=True) to "
                         f"replace it.")
    parent = nearest_existing(out.parent)
    if not parent.is_dir():
        raise EmbedError(f"--out {out}: {parent} is a file, not a folder; choose an output path under a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EmbedError(f"--out {out}: the folder {parent} is not writable; choose an output path you can write.")
    return out


def embed_files(embedder: Embedder, paths: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                timestamps: bool = False, group_size: int | None = None, progress: bool = True,
                overwrite: bool = False) -> EmbedFilesResult:
    """Embed audio files (and folders, recursively) into one .npz, atomically.

    Files are sorted by length (read from their headers) and embedded in groups, so each forward batch
    holds clips of similar length; the next group is decoded while the current one runs. Unreadable
    files are skipped and listed (in the result and in the file), never stop the run; when none is
    readable nothing is written. The output is checked before any work (`check_npz_output`): an existing
    file is replaced only with `overwrite=True`.

    The .npz (np.load(..., allow_pickle=False) reads it) holds:
      embeddings f32[N, D]; files <U[N] (relative to the inputs' common folder, sorted); durations_s f32[N];
      failed_files <U[M], failed_errors <U[M]; model, layer, pooling, checkpoint_hash, audiorep_version (str);
      sample_rate (int). With timestamps: timestamp_embeddings f32[sum T_i, D_t], timestamp_times_ms
      f32[sum T_i] and timestamp_offsets i64[N + 1] (clip i is rows offsets[i]:offsets[i+1]).

    Raises:
      AudioError: no audio found, a missing input path, or an output name that is not .npz.
      EmbedError: an output that is a folder or exists (without `overwrite`), or no input file is readable.
    """
    out = check_npz_output(out, overwrite=overwrite)
    files, root = find_audio_files(paths)
    rate = embedder.sample_rate
    probes = [_probe_length(f, rate) for f in files]
    failed = [(f, err) for f, (_, err) in zip(files, probes) if err is not None]
    readable = [(f, n) for f, (n, err) in zip(files, probes) if err is None]
    readable.sort(key=lambda item: item[1])
    group_size = group_size or max(4 * embedder.batch_size, 64)
    groups = [[f for f, _ in readable[i: i + group_size]] for i in range(0, len(readable), group_size)]

    names, scene_parts, durations, ts_parts, ts_times = [], [], [], [], []
    start = time.perf_counter()
    bar = tqdm(total=len(files), desc=f"embed {embedder.name}", unit="file", disable=not progress)
    bar.update(len(failed))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_load_group, groups[0], rate) if groups else None
        for i, group in enumerate(groups):
            loaded = pending.result()
            pending = pool.submit(_load_group, groups[i + 1], rate) if i + 1 < len(groups) else None
            ok = [(f, x) for f, (x, _) in zip(group, loaded) if x is not None]
            failed.extend((f, err) for f, (x, err) in zip(group, loaded) if x is None)
            if ok:
                clips = [x for _, x in ok]
                scene_parts.append(embedder.scene(clips))
                if timestamps:
                    seqs, times = embedder.timestamps(clips)
                    ts_parts.extend(seqs)
                    ts_times.extend(times)
                names.extend(str(f.relative_to(root)) if f.is_relative_to(root) else str(f) for f, _ in ok)
                durations.extend(len(x) / rate for x in clips)
            bar.update(len(group))
    bar.close()
    seconds = time.perf_counter() - start
    if not names:  # an archive without embeddings would only hide the problem (and replace a good one)
        failed.sort(key=lambda item: str(item[0]))
        reasons = [(err if str(f) in err else f"{f}: {err}").rstrip(". ") for f, err in failed[:3]]
        more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
        raise EmbedError(f"none of the {len(files)} audio file(s) could be read, so nothing was written to {out}: "
                         f"{'; '.join(reasons)}{more}.")

    order = np.argsort(np.array(names, dtype=object), kind="stable")
    emb = np.concatenate(scene_parts)[order]
    failed.sort(key=lambda item: str(item[0]))
    failed_names = [str(f.relative_to(root)) if f.is_relative_to(root) else str(f) for f, _ in failed]
    arrays = {
        "embeddings": emb.astype(np.float32),
        "files": _fixed_unicode([names[i] for i in order]),
        "durations_s": np.asarray(durations, np.float32)[order],
        "failed_files": _fixed_unicode(failed_names),
        "failed_errors": _fixed_unicode([err for _, err in failed]),
        "model": np.array(str(embedder.name)),
        "layer": np.array(str(embedder.layer)),
        "pooling": np.array(embedder.pooling),
        "checkpoint_hash": np.array(embedder.bundle.checkpoint_hash),
        "audiorep_version": np.array(__version__),
        "sample_rate": np.array(rate, np.int64),
    }
    if not failed:
        arrays["failed_files"] = np.zeros(0, "<U1")
        arrays["failed_errors"] = np.zeros(0, "<U1")
    if timestamps:
        seqs = [ts_parts[i] for i in order]
        lengths = np.array([len(s) for s in seqs], np.int64)
        arrays["timestamp_embeddings"] = np.concatenate(seqs).astype(np.float32)
        arrays["timestamp_times_ms"] = np.concatenate([ts_times[i] for i in order]).astype(np.float32)
        arrays["timestamp_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, lambda fh: np.savez(fh, **arrays))
    return EmbedFilesResult(out, [names[i] for i in order], list(zip(failed_names, [e for _, e in failed])),
                            int(emb.shape[1]), seconds)


__all__ = ["EmbedError", "EmbedFilesResult", "Embedder", "as_clips", "check_npz_output", "embed_files",
           "find_audio_files", "is_torch_tensor", "load"]
