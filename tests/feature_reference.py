"""Independent references for audiorep/audio/features.py, one clip at a time, in float64.

* `extract_lfcc` and `lfcc_bp`: line-by-line numpy transcriptions of the official MATLAB front ends of the
  ASVspoof 2019 LFCC-GMM baseline (extract_lfcc.m, M. Sahidullah) and the ASVspoof 2021 LA/DF one
  (lfcc_bp.m), with MATLAB's `buffer(..., 'nodelay')`, symmetric `hamming`, `trimf` filters built one by
  one, `filter` for pre-emphasis and deltas, and `dct`; nothing shared with the batched implementation.
* `mfcc_librosa`: librosa's melspectrogram / power_to_db / mfcc / delta with settings matched to the
  `mfcc` preset (symmetric Hamming window, HTK mel without area normalisation, pre-emphasis applied
  first, the window's centring offset inside librosa's n_fft frame undone).
* `cqcc`: cqcc.m's steps after the CQT: nsgcqwin's bin set, log(|X|^2 + eps), MATLAB
  `resample(..., 'spline')` onto the uniform grid as a cubic spline of each frame's log spectrum, a full
  DCT over that grid, c0..cf, and cqcc.m's `Deltas(x, 3)`. The CQT itself is librosa's (the module's
  too): the official NSGT toolbox port is not packaged.

Used by tests/test_features.py and benchmarks/detection.py (as the per-clip reference it times).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.interpolate
import scipy.signal

EPS = 2.220446049250313e-16  # MATLAB eps


# ------------------------------------------------------------------------------------------ MATLAB pieces
def matlab_buffer(x: np.ndarray, n: int, p: int) -> np.ndarray:
    """buffer(x, n, p, 'nodelay')' : frames of n samples overlapping by p, from x(1), the last zero-padded."""
    frames, start = [], 0
    while True:
        frame = np.zeros(n)
        chunk = x[start:start + n]
        frame[: len(chunk)] = chunk
        frames.append(frame)
        if start + n >= len(x):
            return np.array(frames)
        start += n - p


def matlab_hamming(n: int) -> np.ndarray:
    """hamming(n): 0.54 - 0.46 cos(2 pi k / (n - 1)), symmetric."""
    return 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(n) / (n - 1))


def trimf(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """MATLAB's trimf(x, [a b c])."""
    y = np.zeros_like(x)
    if a != b:
        i = (a < x) & (x < b)
        y[i] = (x[i] - a) / (b - a)
    if b != c:
        i = (b < x) & (x < c)
        y[i] = (c - x[i]) / (c - b)
    y[x == b] = 1.0
    return y


def deltas(x: np.ndarray, hlen: int, normalise: bool) -> np.ndarray:
    """MATLAB `filter(hlen:-1:-hlen, 1, xx, [], 2)` over the edge-repeated rows of x (coefficients x frames),
    trimmed; divided by 2 sum(k^2) when `normalise` (HTK, cqcc.m / lfcc_bp.m) or not (extract_lfcc.m's
    `deltas(x, 2 * hlen + 1)`)."""
    win = np.arange(hlen, -hlen - 1, -1, dtype=np.float64)
    xx = np.concatenate([np.repeat(x[:, :1], hlen, 1), x, np.repeat(x[:, -1:], hlen, 1)], axis=1)
    d = scipy.signal.lfilter(win, 1.0, xx, axis=1)[:, 2 * hlen:]
    return d / (2 * np.sum(np.arange(1, hlen + 1) ** 2)) if normalise else d


# ------------------------------------------------------------------------------------------ LFCC
def linear_cepstra(power: np.ndarray, f: np.ndarray, edges: np.ndarray, n_filter: int, n_coeff: int,
                   normalise: bool) -> np.ndarray:
    """The steps extract_lfcc.m and lfcc_bp.m share after the power spectrum f64[frames, len(f)]: triangular
    filters on `edges`, log10, orthonormal DCT-II (first n_coeff), deltas and double deltas (see `deltas`).
    -> [stat delta double_delta], f64[frames, 3 * n_coeff]."""
    filterbank = np.zeros((len(f), n_filter))
    for i in range(n_filter):
        filterbank[:, i] = trimf(f, edges[i], edges[i + 1], edges[i + 2])
    filbanksum = power @ filterbank
    t = scipy.fft.dct(np.log10(filbanksum.T + EPS), type=2, norm="ortho", axis=0)[:n_coeff]
    stat = t.T
    delta = deltas(stat.T, 1, normalise=normalise).T
    double_delta = deltas(delta.T, 1, normalise=normalise).T
    return np.concatenate([stat, delta, double_delta], axis=1)


def extract_lfcc(speech: np.ndarray, fs: int, window_ms: float, nfft: int, n_filter: int) -> np.ndarray:
    """extract_lfcc.m (ASVspoof 2019): -> [stat delta double_delta], f64[frames, 3 * n_filter]."""
    speech = scipy.signal.lfilter([1, -0.97], 1, np.asarray(speech, np.float64))
    n = int(fs / 1000 * window_ms)
    framed = matlab_buffer(speech, n, n // 2)
    y_framed = framed * matlab_hamming(n)[None, :]
    f = (fs / 2) * np.linspace(0, 1, nfft // 2 + 1)
    edges = np.linspace(f.min(), f.max(), n_filter + 2)
    fr_all = np.abs(np.fft.fft(y_framed, nfft, axis=1)) ** 2
    fa_all = fr_all[:, : nfft // 2 + 1]
    return linear_cepstra(fa_all, f, edges, n_filter, n_filter, normalise=False)


def lfcc_bp(speech: np.ndarray, fs: int, window_ms: float, nfft: int, n_filter: int, n_coeff: int,
            low_freq: float, high_freq: float) -> np.ndarray:
    """lfcc_bp.m (ASVspoof 2021 LA/DF): -> [stat delta double_delta], f64[frames, 3 * n_coeff]."""
    n = int(fs / 1000 * window_ms)
    framed = matlab_buffer(np.asarray(speech, np.float64), n, n // 2)
    y_framed = framed * matlab_hamming(n)[None, :]
    f = (fs / 2) * np.linspace(0, 1, nfft // 2 + 1)
    edges = np.linspace(low_freq, high_freq, n_filter + 2)
    fr_all = np.abs(np.fft.fft(y_framed, nfft, axis=1)) ** 2
    lo, hi = int(np.argmin(np.abs(f - low_freq))), int(np.argmin(np.abs(f - high_freq)))
    fa_all = fr_all[:, lo:hi + 1]
    f = f[lo:hi + 1]
    return linear_cepstra(fa_all, f, edges, n_filter, n_coeff, normalise=True)


# ------------------------------------------------------------------------------------------ MFCC
def mfcc_librosa(x: np.ndarray, fs: int = 16000, frame: int = 320, hop: int = 160, nfft: int = 512,
                 n_mels: int = 20, n_mfcc: int = 20) -> np.ndarray:
    """librosa's MFCC with the `mfcc` preset's settings -> f64[frames, 3 * n_mfcc] (log10 units, not dB)."""
    import librosa

    y = scipy.signal.lfilter([1, -0.97], 1, np.asarray(x, np.float64))
    n_frames = max(1, math.ceil((len(x) - (frame - hop)) / hop))
    offset = (nfft - frame) // 2  # librosa centres the frame-long window in its n_fft frame
    y = np.concatenate([np.zeros(offset), y, np.zeros(nfft + n_frames * hop)])
    s = librosa.feature.melspectrogram(y=y, sr=fs, n_fft=nfft, hop_length=hop, win_length=frame,
                                       window=matlab_hamming(frame), center=False, power=2.0, n_mels=n_mels,
                                       fmin=0.0, fmax=fs / 2, htk=True, norm=None)[:, :n_frames]
    db = librosa.power_to_db(s, ref=1.0, amin=1e-20, top_db=None)
    m = librosa.feature.mfcc(S=db, n_mfcc=n_mfcc, dct_type=2, norm="ortho") / 10.0
    d1 = 2 * librosa.feature.delta(m, width=3, order=1, mode="nearest")
    d2 = 2 * librosa.feature.delta(d1, width=3, order=1, mode="nearest")
    return np.concatenate([m, d1, d2]).T


# ------------------------------------------------------------------------------------------ CQCC
def cqt_bins(fs: int, bins: int, fmin: float, fmax: float) -> np.ndarray:
    """nsgcqwin.m's centre frequencies, less those whose band passes fs / 2."""
    b = math.floor(bins * math.log2(fmax / fmin) + 1e-9)
    fbas = fmin * 2.0 ** (np.arange(b + 1) / bins)
    q = 2 ** (1 / bins) - 2 ** (-1 / bins)
    cqtbw = q * fbas + 228.7 * q
    over = np.flatnonzero(fbas + cqtbw / 2 > fs / 2)
    return fbas[: over[0]] if over.size else fbas


def cqcc(x: np.ndarray, fs: int = 16000, bins: int = 96, fmax: float = 8000.0, fmin: float = 15.625, d: int = 16,
         cf: int = 19, hop: int = 128, pad_s: float = 2.0) -> np.ndarray:
    """cqcc(x, fs, B, fmax, fmin, d, cf, 'ZsdD') after a librosa VQT of the clip (followed by pad_s s of
    zeros) -> f64[1 + len(x) // hop, 3 * (cf + 1)]."""
    import librosa

    fbas = cqt_bins(fs, bins, fmin, fmax)
    r2 = 2 ** (2 / bins)
    alpha = (r2 - 1) / (r2 + 1)
    y = np.concatenate([np.asarray(x, np.float64), np.zeros(int(pad_s * fs))])
    xcq = librosa.vqt(y, sr=fs, hop_length=hop, fmin=fbas[0], n_bins=len(fbas), bins_per_octave=bins,
                      gamma=228.7 * alpha, tuning=0.0)
    log_p = np.log(np.abs(xcq) ** 2 + EPS)[:, : 1 + len(x) // hop]
    kl = bins * math.log2(1 + 1 / d)
    step = fmin * (2 ** (kl / bins) - 1)
    grid = fbas[0] + step * np.arange(math.floor((fbas[-1] - fbas[0]) / step + 1e-9) + 1)
    ures = scipy.interpolate.CubicSpline(fbas, log_p, axis=0, bc_type="not-a-knot")(grid)
    ceps = scipy.fft.dct(ures, type=2, norm="ortho", axis=0)[: cf + 1]
    d1 = deltas(ceps, 3, normalise=True)
    d2 = deltas(d1, 3, normalise=True)
    return np.concatenate([ceps, d1, d2]).T
