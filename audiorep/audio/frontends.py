"""Feature frontends: Kaldi fbank (BEATs, SSAST/AST) and the PaSST mel spectrogram, in pure JAX.

A frontend turns a batch of waveforms into log-mel features on the accelerator, inside the jitted
step: `f32[B, samples] -> f32[B, frames, mels]`, time-major. Nothing loops over the batch in Python.
Encoders (models/*) take these features; a model directory (models/model_dir.py) stores its frontend via
`to_dict()` / `frontend_from_dict()`.

Two families:

* `kaldi_fbank(waves, cfg)` follows Kaldi's `compute-fbank-feats` as `torchaudio.compliance.kaldi.fbank`
  implements it (the call BEATs and SSAST make), option for option: framing with or without
  `snip_edges`, dither (explicit PRNG key), DC removal, raw/windowed log energy, pre-emphasis,
  povey/hanning/hamming/rectangular/blackman windows, power-of-two FFT, Kaldi mel banks (with VTLN
  warping), power or magnitude, log with the float32-epsilon floor, energy column (first, or last
  with `htk_compat`). Mel bins that hold no FFT bin (128 bins at 16 kHz) give log(float32 eps), as
  torchaudio does. `KaldiFbank(cfg)` adds the model's input scaling and normalisation
  (`BEATS_FBANK`, `SSAST_FBANK`).
* `passt_mel(waves, cfg)` is PaSST's `AugmentMelSTFT` (kkoutini/PaSST models/preprocess.py):
  pre-emphasis, centred STFT (reflect padding) with a symmetric Hann window, power, Kaldi mel banks,
  log(x + 1e-5), and at training time the fmin/fmax jitter (drawn per clip here) and SpecAugment
  masks; `PasstMel(cfg)` adds the "fast normalisation" (x + 4.5) / 5.

Every frontend object has `name`, `sample_rate`, `num_mel_bins`, `hop_samples`, `num_frames(n)`,
`__call__(waves, *, key=None, train=False)`, `to_dict()`; `frontend_from_dict(d)` and
`get_frontend('beats' | 'ssast' | 'passt')` rebuild them.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Self

import jax
import jax.numpy as jnp
import numpy as np

from audiorep.audio import augment
from audiorep.errors import AudiorepError

# numeric_limits<float>::epsilon(): Kaldi's (and torchaudio's) floor before every log.
FLOAT_EPS = float(np.finfo(np.float32).eps)
WINDOW_TYPES = ("povey", "hanning", "hamming", "rectangular", "blackman")
_HIGHEST = jax.lax.Precision.HIGHEST  # keep f32 matmuls exact on GPU/TPU (no TF32/bf16 passes)


class FrontendError(AudiorepError, ValueError):
    """A frontend option or input that cannot work; the message says which and how to fix it."""


# ------------------------------------------------------------------------------------------ mel banks
def mel_scale(freq):
    """Hz -> mel (Kaldi / HTK natural-log form): 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(freq, np.float64) / 700.0)


def inverse_mel_scale(mel):
    """mel -> Hz, the inverse of `mel_scale`."""
    return 700.0 * np.expm1(np.asarray(mel, np.float64) / 1127.0)


def _vtln_warp_freq(vtln_low: float, vtln_high: float, low: float, high: float, warp: float, freq: np.ndarray):
    """Kaldi's piecewise-linear VTLN warp of frequencies in Hz (identity when warp == 1)."""
    lo_knee = vtln_low * max(1.0, warp)
    hi_knee = vtln_high * min(1.0, warp)
    scale = 1.0 / warp
    if not (lo_knee > low and hi_knee < high):
        raise FrontendError(
            f"VTLN cut-offs {vtln_low}..{vtln_high} Hz do not fit inside the mel range {low}..{high} Hz; "
            "raise vtln_low above low_freq and keep vtln_high below high_freq."
        )
    slope_left = (scale * lo_knee - low) / (lo_knee - low)
    slope_right = (high - scale * hi_knee) / (high - hi_knee)
    out = np.where(freq < hi_knee, scale * freq, high + slope_right * (freq - high))
    out = np.where(freq < lo_knee, low + slope_left * (freq - low), out)
    return np.where((freq < low) | (freq > high), freq, out)


def mel_banks(
    num_bins: int,
    n_fft: int,
    sample_rate: float,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    vtln_low: float = 100.0,
    vtln_high: float = -500.0,
    vtln_warp: float = 1.0,
) -> np.ndarray:
    """Kaldi triangular mel filterbank (as torchaudio's `get_mel_banks`).  -> f32[num_bins, n_fft // 2].

    Triangles are linear in mel, over FFT bins 0 .. n_fft/2 - 1 (Kaldi never uses the Nyquist bin:
    pad one zero column to apply it to a `n_fft // 2 + 1` spectrum). `high_freq <= 0` is an offset
    from Nyquist; a negative `vtln_high` is an offset from Nyquist too. Rows with no FFT bin inside
    their triangle are all zero (torchaudio accepts that; kaldi-native-fbank refuses it).
    """
    if num_bins <= 3:
        raise FrontendError(f"num_mel_bins must be at least 4 (Kaldi's minimum), got {num_bins}.")
    if n_fft % 2:
        raise FrontendError(
            f"the FFT size {n_fft} is odd; Kaldi mel banks need an even size. Set round_to_power_of_two=True "
            "or choose a frame length with an even number of samples."
        )
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise FrontendError(
            f"mel range low_freq={low_freq} Hz .. high_freq={high_freq} Hz does not fit 0..{nyquist} Hz "
            f"(Nyquist at {sample_rate} Hz); pass 0 <= low_freq < high_freq <= Nyquist "
            "(high_freq <= 0 means an offset from Nyquist)."
        )
    if vtln_high < 0.0:
        vtln_high += nyquist
    # Float32, in torchaudio's order of operations: weights near a triangle's edges come from differences
    # of nearby mel values, so float32 rounding there is part of what BEATs/SSAST/PaSST were trained on.
    f32 = np.float32
    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    delta = f32((mel_high - mel_low) / (num_bins + 1))
    idx = np.arange(num_bins, dtype=f32)[:, None]
    left = f32(mel_low) + idx * delta
    centre = f32(mel_low) + (idx + f32(1.0)) * delta
    right = f32(mel_low) + (idx + f32(2.0)) * delta
    if vtln_warp != 1.0:
        def warp(m):
            hz = inverse_mel_scale(m)
            return mel_scale(_vtln_warp_freq(vtln_low, vtln_high, low_freq, high_freq, vtln_warp, hz)).astype(f32)
        left, centre, right = warp(left), warp(centre), warp(right)
    freqs = f32(sample_rate / n_fft) * np.arange(n_fft // 2, dtype=f32)
    fft_mel = (f32(1127.0) * np.log(f32(1.0) + freqs / f32(700.0)))[None, :]
    up = (fft_mel - left) / (centre - left)
    down = (right - fft_mel) / (right - centre)
    if vtln_warp == 1.0:
        return np.maximum(f32(0.0), np.minimum(up, down))
    rising = (fft_mel > left) & (fft_mel <= centre)
    falling = (fft_mel > centre) & (fft_mel < right)
    return np.where(rising, up, np.where(falling, down, f32(0.0))).astype(f32)


def _mel_banks_jax(num_bins: int, n_fft: int, sample_rate: float, low_freq, high_freq) -> jax.Array:
    """`mel_banks` with traced (per-clip) edges and no VTLN warp.  f32[] x2 -> f32[num_bins, n_fft // 2]."""
    low_freq = jnp.asarray(low_freq, jnp.float32)
    high_freq = jnp.asarray(high_freq, jnp.float32)
    mel_low = 1127.0 * jnp.log1p(low_freq / 700.0)
    mel_high = 1127.0 * jnp.log1p(high_freq / 700.0)
    delta = (mel_high - mel_low) / (num_bins + 1)
    idx = jnp.arange(num_bins, dtype=jnp.float32)[:, None]
    left, centre, right = (mel_low + (idx + j) * delta for j in (0.0, 1.0, 2.0))
    fft_mel = 1127.0 * jnp.log1p(jnp.arange(n_fft // 2, dtype=jnp.float32) * (sample_rate / n_fft) / 700.0)
    up = (fft_mel - left) / (centre - left)
    down = (right - fft_mel) / (right - centre)
    return jnp.maximum(0.0, jnp.minimum(up, down))


# ------------------------------------------------------------------------------------------ windows
def window_function(window_type: str, size: int, blackman_coeff: float = 0.42) -> np.ndarray:
    """Kaldi analysis windows (symmetric, a = 2 pi / (size - 1)).  -> f64[size]."""
    n = np.arange(size, dtype=np.float64)
    a = 2.0 * math.pi / (size - 1)
    if window_type == "hanning":
        return 0.5 - 0.5 * np.cos(a * n)
    if window_type == "povey":
        return (0.5 - 0.5 * np.cos(a * n)) ** 0.85
    if window_type == "hamming":
        return 0.54 - 0.46 * np.cos(a * n)
    if window_type == "rectangular":
        return np.ones(size)
    if window_type == "blackman":
        return blackman_coeff - 0.5 * np.cos(a * n) + (0.5 - blackman_coeff) * np.cos(2 * a * n)
    raise FrontendError(f"window_type {window_type!r} is not one of {', '.join(WINDOW_TYPES)}.")


# ------------------------------------------------------------------------------------------ framing
def _frame(x: jax.Array, num_frames: int, length: int, shift: int, index_map=None) -> jax.Array:
    """Frames x[..., i * shift : i * shift + length] with strided slices, no gather over frames.

    With g = gcd(length, shift) the signal is cut into rows of g samples; frame i is rows
    i * shift/g ... + length/g, so length/g strided row slices side by side hold every frame (25 ms /
    10 ms: 5 slices of 80 samples). When length/g is large, ceil(length / shift) slices of `shift`-sample
    rows are used instead, then trimmed.  f32[B, n] -> f32[B, num_frames, length].
    """
    if index_map is not None:
        x = x[:, index_map]
    g = math.gcd(length, shift)
    step, parts = shift // g, length // g
    if parts > 8:
        g, step, parts = shift, 1, -(-length // shift)
    rows_needed = (num_frames - 1) * step + parts
    total = rows_needed * g
    if x.shape[1] < total:
        x = jnp.pad(x, ((0, 0), (0, total - x.shape[1])))
    rows = x[:, :total].reshape(x.shape[0], rows_needed, g)
    span = (num_frames - 1) * step + 1
    frames = jnp.concatenate([rows[:, j:j + span:step] for j in range(parts)], axis=-1)
    return frames if frames.shape[-1] == length else frames[..., :length]


def _reflect_indices(start: int, count: int, n: int) -> np.ndarray:
    """Kaldi's edge reflection (-1 -> 0, n -> n - 1), repeated for pathological lengths.  -> i32[count]."""
    idx = np.arange(start, start + count, dtype=np.int64)
    period = 2 * n
    idx = np.mod(idx, period)
    idx = np.where(idx >= n, period - 1 - idx, idx)
    return idx.astype(np.int32)


# ------------------------------------------------------------------------------------------ configs
class _FrontendConfig:
    """What both frontend configs (frozen dataclasses) share: `replace`, and the dict a model directory stores.

    Each also gives the geometry of its frontend's output: `num_features` per frame, `hop_samples` between
    frame starts and `output_frames(num_samples)`.
    """

    def replace(self, **changes) -> Self:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """The config that `to_dict()` described; an option this version does not know is an error."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = set(d) - set(names)
        if unknown:
            raise FrontendError(f"unknown {cls.__name__} option(s) {sorted(unknown)}; valid ones: {names}.")
        return cls(**d)


# ------------------------------------------------------------------------------------------ Kaldi fbank
@dataclass(frozen=True)
class FbankConfig(_FrontendConfig):
    """Every option of Kaldi's fbank (torchaudio names in brackets where they differ), plus model I/O.

    Kaldi options: sample_rate [sample_frequency], num_mel_bins, frame_length_ms, frame_shift_ms,
    window_type, blackman_coeff, preemphasis [preemphasis_coefficient], remove_dc_offset, dither,
    use_energy, raw_energy, htk_compat, snip_edges, low_freq, high_freq (<= 0: offset from Nyquist),
    energy_floor, round_to_power_of_two, use_log_fbank, use_power, vtln_low, vtln_high, vtln_warp,
    subtract_feature_mean [subtract_mean: per-utterance mean of every output column].

    Model I/O (applied by `KaldiFbank`, not by `kaldi_fbank`): `waveform_scale` multiplies the
    waveform (BEATs: 2**15), `subtract_mean` removes each clip's waveform mean (SSAST), `target_frames`
    zero-pads (in the log-mel domain, before normalisation) or cuts the frames to a fixed count as
    SSAST's dataloader does (1024; None keeps Kaldi's count), and the output is normalised as
    (x - norm_mean) / (2 * norm_std), the convention of BEATs and AST/SSAST; the defaults (0, 0.5)
    leave it unchanged. `level_db` (None: off; no official model uses it) scales each clip to that RMS
    level in dB re full scale before everything else, as speech models normalise each
    utterance (wav2vec 2.0's `do_normalize`): recordings made at different gains then look alike. Exact-zero
    samples (padding) do not count towards the RMS.
    """

    sample_rate: int = 16000
    num_mel_bins: int = 23
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window_type: str = "povey"
    blackman_coeff: float = 0.42
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    dither: float = 0.0
    use_energy: bool = False
    raw_energy: bool = True
    htk_compat: bool = False
    snip_edges: bool = True
    low_freq: float = 20.0
    high_freq: float = 0.0
    energy_floor: float = 0.0
    round_to_power_of_two: bool = True
    use_log_fbank: bool = True
    use_power: bool = True
    vtln_low: float = 100.0
    vtln_high: float = -500.0
    vtln_warp: float = 1.0
    subtract_feature_mean: bool = False
    waveform_scale: float = 1.0
    subtract_mean: bool = False
    norm_mean: float = 0.0
    norm_std: float = 0.5
    target_frames: int | None = None
    level_db: float | None = None

    def __post_init__(self):
        if self.target_frames is not None and self.target_frames < 1:
            raise FrontendError(f"target_frames must be a positive frame count or None, got {self.target_frames}.")
        if self.window_type not in WINDOW_TYPES:
            raise FrontendError(f"window_type {self.window_type!r} is not one of {', '.join(WINDOW_TYPES)}.")
        if not 0.0 <= self.preemphasis <= 1.0:
            raise FrontendError(f"preemphasis must be in [0, 1], got {self.preemphasis} (Kaldi uses 0.97).")
        if self.window_size < 2:
            raise FrontendError(
                f"frame_length_ms={self.frame_length_ms} at {self.sample_rate} Hz gives {self.window_size} "
                "samples per frame; use at least 2 samples (25 ms is the Kaldi default)."
            )
        if self.window_shift < 1:
            raise FrontendError(
                f"frame_shift_ms={self.frame_shift_ms} at {self.sample_rate} Hz gives a shift of "
                f"{self.window_shift} samples; use at least one sample (10 ms is the Kaldi default)."
            )
        if self.norm_std <= 0:
            raise FrontendError(f"norm_std must be positive, got {self.norm_std}.")
        if self.dither < 0:
            raise FrontendError(f"dither must be >= 0, got {self.dither}.")
        mel_banks(self.num_mel_bins, self.padded_window_size, self.sample_rate, self.low_freq, self.high_freq,
                  self.vtln_low, self.vtln_high, self.vtln_warp)  # validates the mel options early

    @property
    def window_size(self) -> int:
        """Samples per frame (truncated like Kaldi/torchaudio)."""
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def window_shift(self) -> int:
        """Samples between frame starts."""
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    @property
    def padded_window_size(self) -> int:
        """FFT size: the frame length, rounded up to a power of two when `round_to_power_of_two`."""
        n = self.window_size
        return 1 << (n - 1).bit_length() if self.round_to_power_of_two else n

    @property
    def num_features(self) -> int:
        """Output columns: mel bins, plus one for the energy when `use_energy`."""
        return self.num_mel_bins + int(self.use_energy)

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi produces for `num_samples` samples (0 when a snip_edges clip is shorter than a frame)."""
        size, shift = self.window_size, self.window_shift
        if self.snip_edges:
            return 0 if num_samples < size else 1 + (num_samples - size) // shift
        return (num_samples + shift // 2) // shift

    def output_frames(self, num_samples: int) -> int:
        """Frames `KaldiFbank` returns: `target_frames` when set, else `num_frames(num_samples)`."""
        return self.num_frames(num_samples) if self.target_frames is None else self.target_frames

    @property
    def hop_samples(self) -> int:
        return self.window_shift

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if d["level_db"] is None:  # off: the description (and every cache key built on it) stays as before
            del d["level_db"]
        return d


BEATS_FBANK = FbankConfig(
    sample_rate=16000, num_mel_bins=128, frame_length_ms=25.0, frame_shift_ms=10.0,
    waveform_scale=2.0 ** 15, norm_mean=15.41663, norm_std=6.55582,
)
"""BEATs (microsoft/unilm beats/BEATs.py::preprocess): torchaudio defaults, x 2**15, (x - 15.41663) / (2 * 6.55582)."""

SSAST_FBANK = FbankConfig(
    sample_rate=16000, num_mel_bins=128, frame_length_ms=25.0, frame_shift_ms=10.0, window_type="hanning",
    htk_compat=True, use_energy=False, subtract_mean=True, norm_mean=-4.2677393, norm_std=4.5689974,
)
"""SSAST/AST (YuanGongND/ssast src/dataloader.py): waveform mean removed, hanning, htk_compat,
(x + 4.2677393) / (2 * 4.5689974)."""


class _Frontend(abc.ABC):
    """What both frontend objects share: a config and a name, the output geometry (read from the config), batching,
    and the `to_dict()` a model directory stores.

    A subclass sets `kind` (the `type` in `to_dict()` and the default name), `config_type` and `default_config`,
    and computes the features of a batch in `_features(x, key, train)`: f32[B, samples] -> f32[B, frames, mels].
    """

    kind: str
    config_type: type[_FrontendConfig]
    default_config: _FrontendConfig

    def __init__(self, cfg: _FrontendConfig | None = None, name: str | None = None):
        self.cfg = self.default_config if cfg is None else cfg
        self.name = self.kind if name is None else name

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def num_mel_bins(self) -> int:
        """Feature columns per frame."""
        return self.cfg.num_features

    @property
    def hop_samples(self) -> int:
        return self.cfg.hop_samples

    def num_frames(self, num_samples: int) -> int:
        """Frames the frontend returns for a clip of `num_samples` samples."""
        return self.cfg.output_frames(num_samples)

    def __call__(self, waves, *, key: jax.Array | None = None, train: bool = False) -> jax.Array:
        """f32[B, samples] -> f32[B, frames, mels] (f32[samples] -> f32[frames, mels]), normalised."""
        x, single = _as_batch(waves, f"frontend {self.name!r}")
        out = self._features(x, key, bool(train))
        return out[0] if single else out

    @abc.abstractmethod
    def _features(self, x: jax.Array, key: jax.Array | None, train: bool) -> jax.Array:
        """The normalised features of a batch; raises FrontendError when this call needs a `key` and has none."""

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "name": self.name, "config": self.cfg.to_dict()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, {self.cfg})"


def _as_batch(waves, what: str) -> tuple[jax.Array, bool]:
    waves = jnp.asarray(waves)
    if waves.ndim == 1:
        return waves[None].astype(jnp.float32), True
    if waves.ndim != 2:
        raise FrontendError(f"{what} takes waveforms f32[batch, samples] (or one f32[samples]), got shape "
                            f"{tuple(waves.shape)}; down-mix channels first (load_audio(..., mono=True)).")
    return waves.astype(jnp.float32), False


def kaldi_fbank(waves: jax.Array, cfg: FbankConfig, key: jax.Array | None = None,
                mel_weights=None) -> jax.Array:
    """Kaldi log-mel filterbank (torchaudio.compliance.kaldi.fbank semantics), batched.

    f32[B, samples] -> f32[B, frames, num_mel_bins (+1 with use_energy)]; f32[samples] -> f32[frames, ...].
    `key` drives the Gaussian dither and is required when `cfg.dither > 0`. `mel_weights`
    f32[num_mel_bins, n_fft // 2 (+1)] replaces the Kaldi mel banks (a custom filterbank, or another
    implementation's float rounding of them). Model scaling and normalisation (`waveform_scale`,
    `subtract_mean`, `norm_*`) are NOT applied here; see `KaldiFbank`.
    """
    x, single = _as_batch(waves, "kaldi_fbank")
    n = x.shape[1]
    size, shift, padded = cfg.window_size, cfg.window_shift, cfg.padded_window_size
    m = cfg.num_frames(n)
    if m == 0:
        raise FrontendError(
            f"a clip of {n} samples is shorter than one {size}-sample frame ({cfg.frame_length_ms} ms at "
            f"{cfg.sample_rate} Hz), so snip_edges=True gives no frames; pad the clip or use snip_edges=False."
        )
    if cfg.snip_edges:
        frames = _frame(x, m, size, shift)
    else:
        start = shift // 2 - size // 2
        k = -(-size // shift)
        frames = _frame(x, m, size, shift, index_map=_reflect_indices(start, (m + k - 1) * shift, n))

    if cfg.dither > 0.0:
        if key is None:
            raise FrontendError(f"dither={cfg.dither} needs a PRNG key: pass key=jax.random.key(seed), "
                                "or set dither=0.0 for deterministic features.")
        frames = frames + cfg.dither * jax.random.normal(key, frames.shape, frames.dtype)
    if cfg.remove_dc_offset:
        frames = frames - frames.mean(axis=-1, keepdims=True)

    def log_energy(f):
        e = jnp.log(jnp.maximum(jnp.sum(f * f, axis=-1), FLOAT_EPS))
        return jnp.maximum(e, math.log(cfg.energy_floor)) if cfg.energy_floor > 0.0 else e

    energy = log_energy(frames) if cfg.raw_energy else None
    if cfg.preemphasis != 0.0:
        previous = jnp.concatenate([frames[..., :1], frames[..., :-1]], axis=-1)
        frames = frames - cfg.preemphasis * previous
    frames = frames * jnp.asarray(window_function(cfg.window_type, size, cfg.blackman_coeff), jnp.float32)
    if not cfg.raw_energy:
        energy = log_energy(frames)  # zero padding to the FFT size adds nothing

    spec = jnp.fft.rfft(frames, n=padded, axis=-1)[..., : padded // 2]  # Kaldi drops the Nyquist bin
    power = spec.real * spec.real + spec.imag * spec.imag
    if not cfg.use_power:
        power = jnp.sqrt(power)
    if mel_weights is None:
        banks = jnp.asarray(mel_banks(cfg.num_mel_bins, padded, cfg.sample_rate, cfg.low_freq, cfg.high_freq,
                                      cfg.vtln_low, cfg.vtln_high, cfg.vtln_warp))
    else:
        banks = jnp.asarray(mel_weights, jnp.float32)
        if banks.ndim != 2 or banks.shape[1] not in (padded // 2, padded // 2 + 1):
            raise FrontendError(f"mel_weights has shape {tuple(banks.shape)}; expected (mel bins, {padded // 2}) "
                                f"or (mel bins, {padded // 2 + 1}) for an FFT of {padded} points.")
        banks = banks[:, : padded // 2]
    mel = jnp.matmul(power, banks.T, precision=_HIGHEST)
    if cfg.use_log_fbank:
        mel = jnp.log(jnp.maximum(mel, FLOAT_EPS))
    if cfg.use_energy:
        parts = (mel, energy[..., None]) if cfg.htk_compat else (energy[..., None], mel)
        mel = jnp.concatenate(parts, axis=-1)
    if cfg.subtract_feature_mean:
        mel = mel - mel.mean(axis=1, keepdims=True)
    return mel[0] if single else mel


def normalise_level(waves: jax.Array, level_db: float) -> jax.Array:
    """Scale each clip to an RMS of `level_db` dB re full scale, exact-zero samples (padding) not counted.

    f32[B, n] -> f32[B, n]; an all-zero clip stays zero.
    """
    counted = jnp.maximum(jnp.sum(waves != 0, axis=-1, keepdims=True), 1).astype(waves.dtype)
    rms = jnp.sqrt(jnp.sum(waves * waves, axis=-1, keepdims=True) / counted)
    return waves * (10.0 ** (level_db / 20.0) / jnp.maximum(rms, 1e-10))


@partial(jax.jit, static_argnames=("cfg",))
def _kaldi_frontend(waves, key, cfg: FbankConfig):
    if cfg.level_db is not None:  # first: dB re full scale (+-1), and padding is still exact zeros here
        waves = normalise_level(waves, cfg.level_db)
    if cfg.waveform_scale != 1.0:
        waves = waves * cfg.waveform_scale
    if cfg.subtract_mean:
        waves = waves - waves.mean(axis=-1, keepdims=True)
    feats = kaldi_fbank(waves, cfg, key)
    if cfg.target_frames is not None:
        have = feats.shape[1]
        if have < cfg.target_frames:
            feats = jnp.pad(feats, ((0, 0), (0, cfg.target_frames - have), (0, 0)))
        feats = feats[:, : cfg.target_frames]
    return (feats - cfg.norm_mean) / (2.0 * cfg.norm_std)


class KaldiFbank(_Frontend):
    """Kaldi fbank frontend with the model's scaling and normalisation.  f32[B, n] -> f32[B, frames, mels]."""

    kind = "kaldi_fbank"
    config_type = FbankConfig
    default_config = BEATS_FBANK
    cfg: FbankConfig

    def _features(self, x: jax.Array, key: jax.Array | None, train: bool) -> jax.Array:
        """`train` changes nothing (Kaldi has no train-only step); `key` is needed only when the config dithers."""
        if self.cfg.dither > 0.0 and key is None:
            raise FrontendError(f"frontend {self.name!r} dithers (dither={self.cfg.dither}): pass key=...")
        return _kaldi_frontend(x, key, self.cfg)


# ------------------------------------------------------------------------------------------ PaSST mel
@dataclass(frozen=True)
class PasstMelConfig(_FrontendConfig):
    """PaSST's AugmentMelSTFT (kkoutini/PaSST models/preprocess.py) with its AudioSet training settings.

    `fmax=None` means sample_rate // 2 - fmax_aug_range // 2 (15000 Hz at 32 kHz). At training time
    each clip draws fmin + randint(fmin_aug_range) and fmax + fmax_aug_range // 2 - randint(fmax_aug_range),
    then `freqm` / `timem` SpecAugment masks (0 in the log domain, as torchaudio's masking) before the
    normalisation (x + norm_shift) / norm_scale. Official PaSST makes one draw of each for the whole
    batch; `shared_augment=True` does the same (default: a draw per clip).
    """

    sample_rate: int = 32000
    num_mel_bins: int = 128
    win_length: int = 800
    hop_length: int = 320
    n_fft: int = 1024
    fmin: float = 0.0
    fmax: float | None = None
    fmin_aug_range: int = 10
    fmax_aug_range: int = 2000
    preemphasis: float = 0.97
    log_offset: float = 1e-5
    freqm: int = 48
    timem: int = 192
    norm_shift: float = 4.5
    norm_scale: float = 5.0
    shared_augment: bool = False

    def __post_init__(self):
        if self.win_length > self.n_fft:
            raise FrontendError(f"win_length {self.win_length} exceeds n_fft {self.n_fft}; use n_fft >= win_length.")
        if self.fmin_aug_range < 1 or self.fmax_aug_range < 1:
            raise FrontendError("fmin_aug_range and fmax_aug_range must be >= 1 (1 means no augmentation).")
        if self.hop_length < 1:
            raise FrontendError(f"hop_length must be >= 1, got {self.hop_length}.")
        mel_banks(self.num_mel_bins, self.n_fft, self.sample_rate, self.fmin, self.fmax_hz)

    @property
    def fmax_hz(self) -> float:
        """The upper mel edge used at evaluation time."""
        return float(self.sample_rate // 2 - self.fmax_aug_range // 2) if self.fmax is None else float(self.fmax)

    def num_frames(self, num_samples: int) -> int:
        """Centred STFT frames of the pre-emphasised signal (one sample shorter): 1 + (n - 1) // hop."""
        return 1 + (num_samples - 1) // self.hop_length

    output_frames = num_frames  # `PasstMel` returns every frame

    @property
    def num_features(self) -> int:
        return self.num_mel_bins

    @property
    def hop_samples(self) -> int:
        return self.hop_length


PASST_MEL = PasstMelConfig()


def passt_power_spectrogram(waves: jax.Array, cfg: PasstMelConfig) -> jax.Array:
    """Pre-emphasis + centred STFT power of PaSST.  f32[B, samples] -> f32[B, frames, n_fft // 2 + 1]."""
    x, _ = _as_batch(waves, "passt_power_spectrogram")
    n = x.shape[1]
    if n < 2:
        raise FrontendError(f"a clip of {n} sample(s) is too short for PaSST's pre-emphasis; pass >= 2 samples.")
    x = x[:, 1:] - cfg.preemphasis * x[:, :-1]  # conv1d with kernel [-0.97, 1]: one sample shorter
    n = n - 1
    m = cfg.num_frames(n + 1)
    half = cfg.n_fft // 2
    # torch.stft(center=True): reflect padding ([2, 1, 0, 1, 2]) of n_fft // 2 on both sides; the
    # win_length window sits centred inside n_fft, so frame i starts at i * hop + offset in the padded signal.
    offset = (cfg.n_fft - cfg.win_length) // 2
    k = -(-cfg.win_length // cfg.hop_length)
    idx = np.arange(-half + offset, -half + offset + (m + k - 1) * cfg.hop_length, dtype=np.int64)
    period = 2 * (n - 1) if n > 1 else 1
    idx = np.abs(np.mod(idx, period))
    idx = np.where(idx >= n, period - idx, idx).astype(np.int32)
    frames = _frame(x, m, cfg.win_length, cfg.hop_length, index_map=idx)
    window = 0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(cfg.win_length) / (cfg.win_length - 1))
    frames = frames * jnp.asarray(window, jnp.float32)
    # The window's position inside the n_fft frame only changes the phase, not the power.
    spec = jnp.fft.rfft(frames, n=cfg.n_fft, axis=-1)
    return spec.real * spec.real + spec.imag * spec.imag


def passt_mel_edges(key: jax.Array, batch: int, cfg: PasstMelConfig = PASST_MEL) -> tuple[jax.Array, jax.Array]:
    """Training-time mel edges, one draw per clip: fmin + randint(fmin_aug_range) and
    fmax + fmax_aug_range // 2 - randint(fmax_aug_range).  -> (f32[B], f32[B]) in Hz."""
    k_min, k_max = jax.random.split(key)
    fmin = cfg.fmin + jax.random.randint(k_min, (batch,), 0, cfg.fmin_aug_range)
    fmax = cfg.fmax_hz + cfg.fmax_aug_range // 2 - jax.random.randint(k_max, (batch,), 0, cfg.fmax_aug_range)
    return fmin.astype(jnp.float32), fmax.astype(jnp.float32)


def passt_mel(waves: jax.Array, cfg: PasstMelConfig = PASST_MEL, *, key: jax.Array | None = None,
              train: bool = False) -> jax.Array:
    """PaSST log-mel before the normalisation: log(mel + 1e-5).  f32[B, samples] -> f32[B, frames, mels].

    With `train=True` (needs `key`), every clip gets its own fmin/fmax jitter and SpecAugment masks.
    """
    x, single = _as_batch(waves, "passt_mel")
    power = passt_power_spectrogram(x, cfg)[..., : cfg.n_fft // 2]  # the padded zero column adds nothing
    if train:
        if key is None:
            raise FrontendError("PaSST training-time augmentation needs a PRNG key: pass key=jax.random.key(seed).")
        k_edges, k_freq, k_time = jax.random.split(key, 3)
        fmin, fmax = passt_mel_edges(k_edges, 1 if cfg.shared_augment else x.shape[0], cfg)
        banks = jax.vmap(lambda lo, hi: _mel_banks_jax(cfg.num_mel_bins, cfg.n_fft, cfg.sample_rate, lo, hi))(
            fmin, fmax)
        if cfg.shared_augment:
            mel = jnp.matmul(power, banks[0].T, precision=_HIGHEST)
        else:
            mel = jnp.einsum("btf,bmf->btm", power, banks, precision=_HIGHEST)
    else:
        banks = mel_banks(cfg.num_mel_bins, cfg.n_fft, cfg.sample_rate, cfg.fmin, cfg.fmax_hz)
        mel = jnp.matmul(power, jnp.asarray(banks.T, jnp.float32), precision=_HIGHEST)
    mel = jnp.log(mel + cfg.log_offset)
    if train:
        if cfg.freqm > 0:
            mel = augment.freq_mask(k_freq, mel, cfg.freqm, shared=cfg.shared_augment)
        if cfg.timem > 0:
            mel = augment.time_mask(k_time, mel, cfg.timem, shared=cfg.shared_augment)
    return mel[0] if single else mel


@partial(jax.jit, static_argnames=("cfg", "train"))
def _passt_frontend(waves, key, cfg: PasstMelConfig, train: bool):
    return (passt_mel(waves, cfg, key=key, train=train) + cfg.norm_shift) / cfg.norm_scale


class PasstMel(_Frontend):
    """PaSST mel frontend with the fast normalisation (x + 4.5) / 5.  f32[B, n] -> f32[B, frames, mels]."""

    kind = "passt_mel"
    config_type = PasstMelConfig
    default_config = PASST_MEL
    cfg: PasstMelConfig

    def _features(self, x: jax.Array, key: jax.Array | None, train: bool) -> jax.Array:
        """`train=True` needs `key` (fmin/fmax jitter + SpecAugment)."""
        if train and key is None:
            raise FrontendError(f"frontend {self.name!r} with train=True needs key=jax.random.key(seed).")
        return _passt_frontend(x, key, self.cfg, train)


# ------------------------------------------------------------------------------------------ registry
Frontend = KaldiFbank | PasstMel

_PRESETS = {
    "beats": lambda: KaldiFbank(BEATS_FBANK, name="beats"),
    "ssast": lambda: KaldiFbank(SSAST_FBANK, name="ssast"),
    "ast": lambda: KaldiFbank(SSAST_FBANK, name="ast"),
    "passt": lambda: PasstMel(PASST_MEL, name="passt"),
}


def get_frontend(name: str) -> Frontend:
    """The frontend a model family expects: 'beats', 'ssast' (= 'ast') or 'passt'."""
    try:
        return _PRESETS[name.lower()]()
    except KeyError:
        raise FrontendError(f"unknown frontend {name!r}; choose one of {', '.join(sorted(_PRESETS))}.") from None


_KINDS = {cls.kind: cls for cls in (KaldiFbank, PasstMel)}


def frontend_from_dict(d: dict[str, Any]) -> Frontend:
    """Rebuild a frontend from its `to_dict()` (as stored in a model directory)."""
    kind = d.get("type")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise FrontendError(f"frontend description has type {kind!r}; expected {' or '.join(map(repr, _KINDS))}. "
                            "The model directory may come from a newer audiorep; upgrade it.")
    return cls(cls.config_type.from_dict(d["config"]), name=d.get("name", kind))
