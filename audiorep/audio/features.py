r"""Hand-crafted cepstral features: LFCC, MFCC and CQCC, the features the spoofing literature compares with.

Next to the learned encoders' fbank frontends (frontends.py), these are the classic countermeasure front
ends, computed for a batch of clips at once in numpy/scipy (the CQT through librosa): every step is an
array operation over [clips, frames, ...], with no Python loop over frames or clips.

    feats, n = features.extract(waves, lengths, features.PRESETS["lfcc"])   # f32[B, T, 60], i[B]

Each preset follows a published recipe, option for option (the official code read, not re-derived):

* `lfcc`: the ASVspoof 2019 LFCC-GMM baseline (Sahidullah, Kinnunen & Hanilci, Interspeech 2015; the
  challenge's `extract_lfcc(x, fs, 20, 512, 20)`): pre-emphasis 0.97; 20 ms Hamming frames every 10 ms,
  framed as MATLAB's `buffer(..., 'nodelay')` does (the last, partial frame zero-padded); |512-point FFT|^2;
  20 triangular filters (`trimf`) evenly spaced on 0..fs/2; log10(x + eps); orthonormal DCT-II; all 20
  coefficients (c0 included); deltas and delta-deltas as the baseline's `deltas(x, 3)`:
  d[t] = x[t+1] - x[t-1] with the edge frames repeated (not divided by 2). 60 values per frame.
* `lfcc-asvspoof2021`: the ASVspoof 2021 LA/DF LFCC-GMM baseline (`lfcc_bp`): no pre-emphasis, 30 ms
  frames every 15 ms, 1024-point FFT, 70 filters on 0..4 kHz, 19 coefficients (c0 included), HTK deltas
  (x[t+1] - x[t-1]) / 2. 57 values per frame.
* `mfcc`: the `lfcc` pipeline with the 20 filters evenly spaced on the HTK mel scale
  (2595 log10(1 + f / 700)) instead: 20 coefficients (c0 included) + deltas + delta-deltas, 60 values, so
  LFCC and MFCC differ in the filter spacing alone (the comparison of Sahidullah et al. 2015).
* `cqcc`: constant-Q cepstral coefficients (Todisco, Delgado & Evans, Odyssey 2016 / CSL 2017) with the
  defaults of the official `cqcc.m`: 96 bins per octave from fs/2^10 = 15.625 Hz up to fs/2, bandwidths
  Q f + gamma with gamma = 228.7 Q (ERB-proportional: B_k proportional to f_k + 228.7 Hz), bins whose band
  passes fs/2 dropped as the toolbox does (863 bins at 16 kHz); log(|X|^2 + eps); uniform resampling of the
  log power spectrum onto a linear frequency grid with d = 16 samples in the first octave (spacing
  fmin / d, not-a-knot cubic spline, as MATLAB's `resample(..., 'spline')`); orthonormal DCT-II; c0..c19
  ('ZsdD'); deltas and delta-deltas with cqcc.m's HTK window of +-3 frames (divided by 2 * (1 + 4 + 9)).
  60 values per frame. The CQT is librosa's variable-Q transform (the recursive method of Schorkhuber,
  Klapuri, Holighaus & Dorfler 2014, the paper of the MATLAB toolbox the baseline calls), with the
  toolbox's bandwidth offset; its Hann atoms differ in shape from the toolbox's frequency-domain windows,
  so values differ from the MATLAB baseline's, not the design. Hop 8 ms: the toolbox's fully rasterised CQT
  steps by 1 / max bandwidth, about 8.5 ms at these settings.
* `cqcc-asvspoof2021`: the ASVspoof 2021 LA/DF CQCC-GMM setting: 12 bins per octave on 62.5 Hz..4 kHz.

The uniform resampling and the truncated DCT are both linear in the log spectrum, so they are one
[coefficients x CQT bins] matrix, built once per configuration: CQCC costs the CQT plus one matmul.

Silence has a defined floor: an all-zero frame gives log10(eps) (LFCC/MFCC) or log(eps) (CQCC) in every
band, so c0 = sqrt(bands) * floor and every other coefficient 0 (finite, never -inf). A gain g changes
only c0 (by sqrt(bands) * 2 log g in the orthonormal DCT); c1.. and all deltas are gain-invariant where
the spectrum is above the eps floor.

Used by downstream/tasks/baseline.py (`FeatureBaseline`: the `--model lfcc|mfcc|cqcc` baselines).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
import scipy.interpolate

from audiorep.errors import AudiorepError

# MATLAB's eps (2^-52): the floor both official baselines add before the log.
MATLAB_EPS = float(np.finfo(np.float64).eps)
# Glasberg & Moore's ERB(f) = 24.7 + 0.108 f = 0.108 (f + 228.7): cqcc.m's bandwidth offset.
ERB_OFFSET_HZ = 228.7


class FeatureError(AudiorepError, ValueError):
    """A feature option or input that cannot work; the message says which and how to fix it."""


# ------------------------------------------------------------------------------------------ configs
@dataclass(frozen=True)
class CepstralConfig:
    """LFCC / MFCC: framed power spectrum -> triangular filterbank -> log10 -> DCT-II -> deltas.

    scale: 'linear' (LFCC) or 'mel' (MFCC, HTK mel). frame_length / hop_length / n_fft in samples at
    sample_rate. n_coeffs: DCT coefficients kept, c0 included. high_hz None = sample_rate / 2.
    delta_half_width N: d[t] = sum_k k (x[t+k] - x[t-k]), k = 1..N, edge frames repeated; divided by
    2 sum_k k^2 when delta_normalise (HTK), not divided when False (the 2019 baseline's `deltas`).
    delta_order: 0 (static only), 1 (+ deltas), 2 (+ delta-deltas, the deltas of the deltas).
    """

    kind: str = "lfcc"
    scale: str = "linear"
    sample_rate: int = 16000
    frame_length: int = 320
    hop_length: int = 160
    n_fft: int = 512
    n_filters: int = 20
    n_coeffs: int = 20
    low_hz: float = 0.0
    high_hz: float | None = None
    preemphasis: float = 0.97
    window: str = "hamming"
    delta_half_width: int = 1
    delta_normalise: bool = False
    delta_order: int = 2

    def __post_init__(self):
        if self.scale not in ("linear", "mel"):
            raise FeatureError(f"{self.kind}: scale must be 'linear' or 'mel', got {self.scale!r}.")
        if self.window not in ("hamming", "hann", "rectangular"):
            raise FeatureError(f"{self.kind}: window must be 'hamming', 'hann' or 'rectangular', got {self.window!r}.")
        if not 0 < self.hop_length <= self.frame_length:
            raise FeatureError(f"{self.kind}: hop_length {self.hop_length} must be in 1..frame_length "
                               f"({self.frame_length}).")
        if self.n_fft < self.frame_length:
            raise FeatureError(f"{self.kind}: n_fft {self.n_fft} is shorter than frame_length {self.frame_length}; "
                               "raise n_fft to at least the frame length.")
        high = self.sample_rate / 2 if self.high_hz is None else self.high_hz
        if not 0 <= self.low_hz < high <= self.sample_rate / 2:
            raise FeatureError(f"{self.kind}: need 0 <= low_hz < high_hz <= sample_rate / 2, got {self.low_hz}, "
                               f"{high}, {self.sample_rate / 2}.")
        if not 1 <= self.n_coeffs <= self.n_filters:
            raise FeatureError(f"{self.kind}: n_coeffs {self.n_coeffs} must be in 1..n_filters ({self.n_filters}).")
        _check_deltas(self)

    @property
    def dim(self) -> int:
        """Values per frame: n_coeffs * (1 + delta_order)."""
        return self.n_coeffs * (1 + self.delta_order)

    def num_frames(self, num_samples) -> np.ndarray:
        """Frames of clips of `num_samples` samples (MATLAB buffer 'nodelay'): max(1, ceil((n - overlap) / hop))."""
        n = np.asarray(num_samples, np.int64)
        overlap = self.frame_length - self.hop_length
        return np.maximum(1, -(-(n - overlap) // self.hop_length))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CqccConfig:
    """CQCC: CQT -> log power -> uniform resampling -> DCT-II -> deltas (cqcc.m's parameters).

    bins_per_octave B, fmin_hz, fmax_hz (None = sample_rate / 2): the CQT's bins fmin 2^(k/B) for
    k = 0..floor(B log2(fmax / fmin)), less those whose band reaches past sample_rate / 2.
    bandwidth_offset_hz: bandwidths proportional to f + offset (228.7 Hz = ERB-shaped; 0 = constant Q).
    uniform_samples_first_octave d: the linear grid's spacing is fmin / d. n_coeffs: c0..c(n-1) kept.
    hop_length: CQT frame step in samples. Deltas as in CepstralConfig.
    """

    kind: str = "cqcc"
    sample_rate: int = 16000
    bins_per_octave: int = 96
    fmin_hz: float = 15.625
    fmax_hz: float | None = None
    bandwidth_offset_hz: float = ERB_OFFSET_HZ
    uniform_samples_first_octave: int = 16
    n_coeffs: int = 20
    hop_length: int = 128
    delta_half_width: int = 3
    delta_normalise: bool = True
    delta_order: int = 2

    def __post_init__(self):
        fmax = self.sample_rate / 2 if self.fmax_hz is None else self.fmax_hz
        if not 0 < self.fmin_hz < fmax <= self.sample_rate / 2:
            raise FeatureError(f"{self.kind}: need 0 < fmin_hz < fmax_hz <= sample_rate / 2, got {self.fmin_hz}, "
                               f"{fmax}, {self.sample_rate / 2}.")
        if self.bins_per_octave < 1 or self.uniform_samples_first_octave < 1 or self.hop_length < 1:
            raise FeatureError(f"{self.kind}: bins_per_octave, uniform_samples_first_octave and hop_length must be "
                               ">= 1.")
        if len(self.bin_frequencies()) < 2:
            raise FeatureError(f"{self.kind}: fmin_hz..fmax_hz holds fewer than 2 CQT bins; widen the range.")
        if not 1 <= self.n_coeffs <= len(self.uniform_grid()):
            raise FeatureError(f"{self.kind}: n_coeffs {self.n_coeffs} must be in 1..{len(self.uniform_grid())} "
                               "(the uniform grid's length).")
        _check_deltas(self)

    @property
    def dim(self) -> int:
        return self.n_coeffs * (1 + self.delta_order)

    def bin_frequencies(self) -> np.ndarray:
        """f64[K]: the CQT bins' centre frequencies (nsgcqwin's, less the bins whose band passes Nyquist)."""
        fmax = self.sample_rate / 2 if self.fmax_hz is None else self.fmax_hz
        b = math.floor(self.bins_per_octave * math.log2(fmax / self.fmin_hz) + 1e-9)
        f = self.fmin_hz * 2.0 ** (np.arange(b + 1) / self.bins_per_octave)
        q = 2.0 ** (1 / self.bins_per_octave) - 2.0 ** (-1 / self.bins_per_octave)
        bw = q * f + q * self.bandwidth_offset_hz
        over = np.flatnonzero(f + bw / 2 > self.sample_rate / 2)
        return f[: over[0]] if over.size else f

    def uniform_grid(self) -> np.ndarray:
        """f64[N]: the linear frequency grid of the uniform resampling, spacing fmin / d from the first bin."""
        f = self.bin_frequencies()
        step = self.fmin_hz / self.uniform_samples_first_octave
        return f[0] + step * np.arange(math.floor((f[-1] - f[0]) / step + 1e-9) + 1)

    @property
    def relative_bandwidth(self) -> float:
        """librosa's alpha = (r^2 - 1) / (r^2 + 1), r = 2^(1/B): bandwidths are alpha (f + offset)."""
        r2 = 2.0 ** (2.0 / self.bins_per_octave)
        return (r2 - 1) / (r2 + 1)

    @property
    def pad_samples(self) -> int:
        """Zeros kept after every clip: the longest CQT atom (the lowest bin's, sr / (alpha (fmin + offset))),
        so the CQT's resampling and framing edge effects stay past the clip's last frame, and a clip's
        frames do not depend on the batch it is computed in."""
        longest = self.sample_rate / (self.relative_bandwidth * (self.fmin_hz + self.bandwidth_offset_hz))
        return int(math.ceil(longest / self.hop_length)) * self.hop_length

    def num_frames(self, num_samples) -> np.ndarray:
        """Frames of clips of `num_samples` samples (centred CQT frames): 1 + n // hop."""
        return 1 + np.asarray(num_samples, np.int64) // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_deltas(cfg) -> None:
    if cfg.delta_order not in (0, 1, 2) or cfg.delta_half_width < 1:
        raise FeatureError(f"{cfg.kind}: delta_order must be 0, 1 or 2 and delta_half_width >= 1, got "
                           f"{cfg.delta_order}, {cfg.delta_half_width}.")


PRESETS: dict[str, CepstralConfig | CqccConfig] = {
    "lfcc": CepstralConfig(),
    "lfcc-asvspoof2021": CepstralConfig(kind="lfcc-asvspoof2021", frame_length=480, hop_length=240, n_fft=1024,
                                        n_filters=70, n_coeffs=19, high_hz=4000.0, preemphasis=0.0,
                                        delta_normalise=True),
    "mfcc": CepstralConfig(kind="mfcc", scale="mel"),
    "cqcc": CqccConfig(),
    "cqcc-asvspoof2021": CqccConfig(kind="cqcc-asvspoof2021", bins_per_octave=12, fmin_hz=62.5, fmax_hz=4000.0),
}


def get_config(name: str) -> CepstralConfig | CqccConfig:
    """A preset by name ('lfcc', 'lfcc-asvspoof2021', 'mfcc', 'cqcc', 'cqcc-asvspoof2021')."""
    if name not in PRESETS:
        raise FeatureError(f"no hand-crafted feature {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]


# ------------------------------------------------------------------------------------ building blocks
def hz_to_mel(f):
    """HTK mel: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def filterbank(cfg: CepstralConfig) -> np.ndarray:
    """f32[n_fft // 2 + 1, n_filters]: triangles (MATLAB trimf) on the FFT bin frequencies, unit peak, edges
    evenly spaced on the linear (LFCC) or mel (MFCC) scale from low_hz to high_hz."""
    high = cfg.sample_rate / 2 if cfg.high_hz is None else cfg.high_hz
    freqs = np.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
    if cfg.scale == "linear":
        edges = np.linspace(cfg.low_hz, high, cfg.n_filters + 2)
    else:
        edges = mel_to_hz(np.linspace(hz_to_mel(cfg.low_hz), hz_to_mel(high), cfg.n_filters + 2))
    a, b, c = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs[None] - a) / (b - a)
    fall = (c - freqs[None]) / (c - b)
    return np.maximum(0.0, np.minimum(rise, fall)).T.astype(np.float32)


@functools.lru_cache(maxsize=16)
def dct_matrix(length: int, n_coeffs: int) -> np.ndarray:
    """f64[length, n_coeffs]: x @ M = the first n_coeffs of the orthonormal DCT-II of x (MATLAB `dct`):
    M[n, k] = w_k cos(pi k (2n + 1) / (2 length)), w_0 = sqrt(1 / length), w_k = sqrt(2 / length)."""
    n, k = np.arange(length)[:, None], np.arange(n_coeffs)[None, :]
    w = np.where(k == 0, math.sqrt(1 / length), math.sqrt(2 / length))
    return w * np.cos(np.pi * k * (2 * n + 1) / (2 * length))


def window_function(name: str, length: int) -> np.ndarray:
    """f32[length]: MATLAB's symmetric hamming(N) / hann(N), or ones."""
    if name == "hamming":
        return np.hamming(length).astype(np.float32)
    if name == "hann":
        return np.hanning(length).astype(np.float32)
    return np.ones(length, np.float32)


def deltas(x: np.ndarray, lengths: np.ndarray, half_width: int = 1, normalise: bool = False) -> np.ndarray:
    """Regression deltas over time of each clip's own frames, edge frames repeated.

    d[t] = sum_{k=1..N} k (x[min(t+k, n-1)] - x[max(t-k, 0)]), divided by 2 sum k^2 when `normalise`.
    x: f32[B, T, D] (frames past a clip's length n are ignored and give garbage); lengths: i[B] frames per
    clip. Returns f32[B, T, D]. Loops over k (at most a few), never over frames.
    """
    t = np.arange(x.shape[1])[None, :]
    last = np.maximum(np.asarray(lengths, np.int64) - 1, 0)[:, None]
    out = np.zeros_like(x)
    for k in range(1, half_width + 1):
        fwd = np.minimum(t + k, last)[..., None]
        bwd = np.minimum(np.maximum(t - k, 0), last)[..., None]
        out += k * (np.take_along_axis(x, fwd, axis=1) - np.take_along_axis(x, bwd, axis=1))
    if normalise:
        out /= 2 * sum(k * k for k in range(1, half_width + 1))
    return out


def _apply(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """x @ matrix over the last axis, as one 2-D matmul (numpy's stacked 3-D matmul is ~15x slower here).
    f32[..., n] @ [n, m] -> f32[..., m]."""
    return (x.reshape(-1, x.shape[-1]) @ matrix.astype(np.float32)).reshape(*x.shape[:-1], matrix.shape[1])


def _with_deltas(static: np.ndarray, frames: np.ndarray, cfg) -> np.ndarray:
    parts = [static]
    for _ in range(cfg.delta_order):
        parts.append(deltas(parts[-1], frames, cfg.delta_half_width, cfg.delta_normalise))
    return np.concatenate(parts, axis=-1)


def _check_batch(waves, lengths) -> tuple[np.ndarray, np.ndarray]:
    waves = np.asarray(waves, np.float32)
    if waves.ndim != 2:
        raise FeatureError(f"features take a batch f32[B, samples], got shape {waves.shape}.")
    lengths = np.full(len(waves), waves.shape[1], np.int64) if lengths is None else np.asarray(lengths, np.int64)
    if lengths.shape != (len(waves),):
        raise FeatureError(f"lengths {lengths.shape} must hold one length per clip ({len(waves)}).")
    if (lengths < 1).any() or (lengths > waves.shape[1]).any():
        bad = int(np.flatnonzero((lengths < 1) | (lengths > waves.shape[1]))[0])
        raise FeatureError(f"clip {bad} has length {lengths[bad]}, outside 1..{waves.shape[1]} (the batch width); "
                           "empty clips have no features: drop them or fix their start/end.")
    if not np.isfinite(waves).all():
        raise FeatureError("the waveforms hold NaN or inf samples; fix or drop those clips.")
    return waves, lengths


# ------------------------------------------------------------------------------------------ LFCC / MFCC
def cepstral(waves, lengths=None, cfg: CepstralConfig = PRESETS["lfcc"]) -> tuple[np.ndarray, np.ndarray]:
    """LFCC or MFCC of a batch.  f32[B, samples] (+ i[B] lengths) -> (f32[B, T, cfg.dim], i[B] frames).

    Samples past a clip's length are ignored (its last frame is zero-padded, as MATLAB's buffer does);
    frames past a clip's frame count are padding. T = cfg.num_frames(samples).
    """
    waves, lengths = _check_batch(waves, lengths)
    frames = cfg.num_frames(lengths)
    t_max = int(cfg.num_frames(waves.shape[1]))
    width = (t_max - 1) * cfg.hop_length + cfg.frame_length
    x = np.zeros((len(waves), max(width, waves.shape[1])), np.float32)
    x[:, : waves.shape[1]] = waves
    if cfg.preemphasis:  # y[n] = x[n] - a x[n-1], zero initial state (MATLAB filter([1 -a], 1, x))
        x[:, 1: waves.shape[1]] -= np.float32(cfg.preemphasis) * waves[:, :-1]
    x[np.arange(x.shape[1])[None, :] >= lengths[:, None]] = 0.0  # the filter's tail past each clip's end
    view = np.lib.stride_tricks.sliding_window_view(x, cfg.frame_length, axis=1)[:, :: cfg.hop_length][:, :t_max]
    framed = np.zeros((len(waves), t_max, cfg.n_fft), np.float32)  # zero-padded to n_fft (MATLAB fft(x, NFFT))
    np.multiply(view, window_function(cfg.window, cfg.frame_length), out=framed[..., : cfg.frame_length])
    power = np.abs(scipy.fft.rfft(framed, axis=-1)) ** 2  # f32[B, T, n_fft / 2 + 1]
    logb = np.log10(_apply(power, filterbank(cfg)) + np.float32(MATLAB_EPS))
    static = _apply(logb, dct_matrix(cfg.n_filters, cfg.n_coeffs))
    return _with_deltas(static, frames, cfg), frames


def lfcc(waves, lengths=None, cfg: CepstralConfig = PRESETS["lfcc"]) -> tuple[np.ndarray, np.ndarray]:
    """LFCC (ASVspoof 2019 baseline settings by default). f32[B, samples] -> (f32[B, T, 60], i[B])."""
    return cepstral(waves, lengths, cfg)


def mfcc(waves, lengths=None, cfg: CepstralConfig = PRESETS["mfcc"]) -> tuple[np.ndarray, np.ndarray]:
    """MFCC (the LFCC pipeline on the HTK mel scale by default). f32[B, samples] -> (f32[B, T, 60], i[B])."""
    return cepstral(waves, lengths, cfg)


# ------------------------------------------------------------------------------------------ CQCC
def _librosa():
    try:
        import librosa  # optional dependency (the [features] extra): only CQCC needs it
    except ImportError as e:
        raise FeatureError("cqcc needs librosa for its constant-Q transform: pip install 'audiorep[features]' "
                           "(or pip install librosa).") from e
    return librosa


def librosa_version() -> str:
    """The installed librosa's version (part of a CQCC cache key: its CQT decides the values)."""
    return str(_librosa().__version__)


def cqt_log_power(waves: np.ndarray, cfg: CqccConfig) -> np.ndarray:
    """log(|CQT|^2 + eps) of a batch.  f32[B, samples] -> f32[B, T, K] with T = 1 + samples // hop.

    librosa.vqt over the whole batch at once (centred frames, zero padding outside the clip); bins and
    bandwidth offset as `cfg.bin_frequencies()`; gamma = alpha * offset keeps librosa's bandwidths
    alpha f + gamma proportional to f + offset.
    """
    librosa = _librosa()
    freqs = cfg.bin_frequencies()
    gamma = cfg.relative_bandwidth * cfg.bandwidth_offset_hz
    with warnings.catch_warnings():  # the low octaves of a short clip, downsampled, are shorter than their
        # filters; librosa pads them with zeros (centred frames) and says so: expected here, not a problem
        warnings.filterwarnings("ignore", message="n_fft=.* is too large for input signal", category=UserWarning)
        c = librosa.vqt(np.asarray(waves, np.float32), sr=cfg.sample_rate, hop_length=cfg.hop_length,
                        fmin=float(freqs[0]), n_bins=len(freqs), bins_per_octave=cfg.bins_per_octave, gamma=gamma,
                        tuning=0.0)  # complex64[B, K, T]
    return np.log(np.abs(c) ** 2 + np.float32(MATLAB_EPS)).transpose(0, 2, 1).astype(np.float32)


@functools.lru_cache(maxsize=8)
def cqcc_matrix(cfg: CqccConfig) -> np.ndarray:
    """f32[K, n_coeffs]: uniform resampling (not-a-knot cubic spline from the bin frequencies onto the linear
    grid) followed by the first n_coeffs of the orthonormal DCT-II over that grid, as one linear map."""
    freqs, grid = cfg.bin_frequencies(), cfg.uniform_grid()
    interp = scipy.interpolate.CubicSpline(freqs, np.eye(len(freqs)), axis=0, bc_type="not-a-knot")(grid)  # [N, K]
    return (interp.T @ dct_matrix(len(grid), cfg.n_coeffs)).astype(np.float32)


def cqcc(waves, lengths=None, cfg: CqccConfig = PRESETS["cqcc"]) -> tuple[np.ndarray, np.ndarray]:
    """CQCC of a batch.  f32[B, samples] (+ i[B] lengths) -> (f32[B, T, cfg.dim], i[B] frames).

    Samples past a clip's length are zeroed and `cfg.pad_samples` zeros follow the widest clip, so a
    clip's frames match those of the clip alone (to float32 rounding); T = cfg.num_frames(samples). Needs
    librosa (the [features] extra).
    """
    waves, lengths = _check_batch(waves, lengths)
    x = np.zeros((len(waves), waves.shape[1] + cfg.pad_samples), np.float32)
    x[:, : waves.shape[1]] = np.where(np.arange(waves.shape[1])[None, :] < lengths[:, None], waves, 0.0)
    t_max = int(cfg.num_frames(waves.shape[1]))
    static = _apply(np.ascontiguousarray(cqt_log_power(x, cfg)[:, :t_max]), cqcc_matrix(cfg))
    frames = cfg.num_frames(lengths)
    return _with_deltas(static, frames, cfg), frames


def extract(waves, lengths, cfg: CepstralConfig | CqccConfig) -> tuple[np.ndarray, np.ndarray]:
    """The features `cfg` names (LFCC / MFCC / CQCC).  f32[B, samples] -> (f32[B, T, cfg.dim], i[B] frames)."""
    return cqcc(waves, lengths, cfg) if isinstance(cfg, CqccConfig) else cepstral(waves, lengths, cfg)
