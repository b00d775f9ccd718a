"""Audio corruptions for robustness evaluation: noise, modification and compression at 5 severities.

The families and most levels follow "Measuring the Robustness of Audio Deepfake Detectors" (Li, Chen, Wei,
arXiv 2503.17577; official code Jessegator/Audio_robustness_evaluation, `perturber.py` and the levels in
`main_fm.py`): noise (SNR 40 .. 5 dB), modification (smoothing windows 6 .. 22 samples, echo volume 0.1 .. 0.9,
Butterworth order-5 low/high-pass at 0.1 .. 0.5 of 8 kHz, pitch shift, time stretch, quantisation) and compression
(MP3 8 .. 40 kbit/s with LAME, Opus). The rest (coloured noise, babble, gain, speed, reverberation, clipping,
mu-law, GSM, resampling) widen the same three families with levels in a physical unit.

    clip = corrupt(audio, 16000, "pink_noise", severity=3, seed=7)   # f32[n] -> f32[n], 20 dB SNR
    for name in select("compression"): ...

Every corruption takes float32 mono at `rate` and returns float32 mono at the same rate; it is deterministic
for a seed (the random draws come from `np.random.default_rng((seed, crc32(name)))`, so two corruptions with the
same seed are independent), and severity 0 returns the clip unchanged. The length is kept except by
`time_stretch` and `speed` (round(n / factor)), as in the paper's code. Which library does each corruption is
in `Corruption.doc` and in docs/robustness.md. pedalboard, pyroomacoustics and lameenc are the optional
`audiorep[corrupt]` extra; they are imported only by the corruptions that need them.
Used by the `audiorep robustness` sweep (downstream) and benchmarks/corruptions.py.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import scipy.ndimage
import scipy.signal
import soundfile as sf

from audiorep.audio.io import load_audio, resample
from audiorep.errors import AudiorepError

# Bump when a corruption's algorithm changes, so cached corrupted embeddings are recomputed.
CORRUPTIONS_VERSION = 1
SEVERITIES = (1, 2, 3, 4, 5)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")
BABBLE_TALKERS = 5  # clips summed into one babble track (fewer when the pool is smaller)
ECHO_DELAY_S = 0.1
ROOM_DIM_M = (6.0, 5.0, 3.0)  # the simulated room; source and microphone 2.45 m apart
ROOM_SOURCE_M = (2.0, 3.0, 1.5)
ROOM_MIC_M = (4.0, 1.8, 1.2)
LAME_DELAY_SAMPLES = 1105  # LAME encoder delay (576) + mpg123 decoder delay (529), at the MP3 stream's rate
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
TELEPHONE_RATE = 8000


class CorruptionError(AudiorepError, ValueError):
    """An unknown corruption, a bad severity, a missing context folder/pool or a missing optional library."""


@dataclass(frozen=True)
class Corruption:
    """One corruption: `levels[s - 1]` is the physical value (in `unit`) of severity s = 1..5."""

    name: str
    family: str
    unit: str
    levels: tuple[float, ...]
    doc: str

    def level(self, severity: int) -> float:
        return self.levels[severity - 1]


@dataclass(frozen=True)
class CorruptionContext:
    """What some corruptions need besides the clip.

    background_dir: a folder of noise recordings (e.g. Speech Commands' `_background_noise_`), for
      `background_noise`; read once per (folder, rate) and kept in memory.
    babble_pool: other clips of the same set, for `babble`: f32[n] arrays at the clip's rate or audio file paths.
    """

    background_dir: str | Path | None = None
    babble_pool: Sequence[np.ndarray | str | Path] | None = None


@dataclass(frozen=True)
class _Entry:
    spec: Corruption
    fn: Callable[..., np.ndarray]  # (x f32[n], rate, level, rng, context) -> f32[n']
    libs: tuple[str, ...]  # distributions whose versions enter corruption_key


_REGISTRY: dict[str, _Entry] = {}


def _register(name: str, family: str, unit: str, levels: Sequence[float], libs: Sequence[str], doc: str):
    def wrap(fn):
        _REGISTRY[name] = _Entry(Corruption(name, family, unit, tuple(float(v) for v in levels), doc), fn, tuple(libs))
        return fn

    return wrap


# ------------------------------------------------------------------------------------------------ helpers


def _optional(module: str, name: str):
    """Import an optional heavy dependency of one corruption (kept out of `import audiorep`)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise CorruptionError(
            f"corruption {name!r} needs the {module.split('.')[0]} package; install it with "
            "`pip install 'audiorep[corrupt]'` (or pick other corruptions with --corruptions)."
        ) from err


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def _mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """x + noise scaled so that 10 log10(P_x / P_noise) = snr_db. A silent clip (or silent noise) stays as it is."""
    px, pn = _power(x), _power(noise)
    if px == 0.0 or pn == 0.0:
        return x.copy()
    scale = np.sqrt(px / (pn * 10.0 ** (snr_db / 10.0)))
    return (x + scale * noise).astype(np.float32)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad f32[m] to f32[n]."""
    if x.shape[0] >= n:
        return x[:n]
    return np.concatenate([x, np.zeros(n - x.shape[0], np.float32)])


def _loop_crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random n-sample window of x, looping x when it is shorter than n."""
    start = int(rng.integers(x.shape[0]))
    return np.take(x, np.arange(start, start + n), mode="wrap")


def _coloured(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectral density ~ 1/f**exponent (0 white, 1 pink, 2 brown), f32[n].

    Hand-written: an FFT shaping of white noise is three lines, and audiomentations' AddColorNoise draws from
    numpy's global RNG (seeding it per clip would change the caller's global state).
    """
    white = rng.standard_normal(n)
    if exponent == 0.0 or n < 2:
        return white.astype(np.float32)
    spec = np.fft.rfft(white)
    f = np.arange(spec.shape[0], dtype=np.float64)
    f[0] = 1.0  # keep DC at the lowest bin's gain instead of dividing by zero
    spec *= f ** (-exponent / 2.0)
    return np.fft.irfft(spec, n).astype(np.float32)


def _nearest_rate(rate: int, allowed: Sequence[int]) -> int:
    """The smallest allowed codec rate >= rate (else the largest), so the codec never band-limits by itself."""
    higher = [r for r in allowed if r >= rate]
    return higher[0] if higher else allowed[-1]


def _butter(x: np.ndarray, rate: int, cutoff: float, btype: str) -> np.ndarray:
    nyquist = rate / 2.0
    if btype == "lowpass" and cutoff >= nyquist:
        return x.copy()
    cutoff = min(cutoff, 0.99 * nyquist)
    sos = scipy.signal.butter(5, cutoff, btype=btype, fs=rate, output="sos")
    return scipy.signal.sosfilt(sos, x).astype(np.float32)


# ------------------------------------------------------------------------------------------------ noise

_SNR_LEVELS = (40, 30, 20, 10, 5)


def _noise_colour(name: str, exponent: float, doc: str) -> None:
    @_register(name, "noise", "dB SNR", _SNR_LEVELS, ("numpy",), doc)
    def fn(x, rate, snr, rng, context):
        return _mix_at_snr(x, _coloured(x.shape[0], exponent, rng), snr)


_noise_colour("white_noise", 0.0, "Gaussian white noise at an SNR (the paper's gaussian_noise; numpy).")
_noise_colour("pink_noise", 1.0, "Pink (1/f) Gaussian noise at an SNR (FFT-shaped white noise; numpy).")
_noise_colour("brown_noise", 2.0, "Brown (1/f^2) Gaussian noise at an SNR (FFT-shaped white noise; numpy).")


@functools.lru_cache(maxsize=8)
def _background_tracks(folder: str, rate: int) -> tuple[np.ndarray, ...]:
    path = Path(folder)
    if not path.is_dir():
        raise CorruptionError(
            f"background_noise: {path} is not a folder; pass a folder of noise recordings as the background "
            "directory (e.g. speech_commands/_background_noise_)."
        )
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise CorruptionError(
            f"background_noise: no audio files ({', '.join(AUDIO_SUFFIXES)}) in {path}; point the background "
            "directory at a folder of noise recordings."
        )
    return tuple(load_audio(f, sample_rate=rate)[0] for f in files)


def _context_field(context, field: str):
    if context is None:
        return None
    if isinstance(context, Mapping):
        return context.get(field)
    return getattr(context, field, None)


@_register("background_noise", "noise", "dB SNR", _SNR_LEVELS, ("numpy", "soxr", "soundfile"),
           "A random window of a random recording from a folder (context.background_dir, e.g. Speech Commands' "
           "_background_noise_), looped when short, at an SNR (the paper's background_noise; soundfile + soxr).")
def _background_noise(x, rate, snr, rng, context):
    folder = _context_field(context, "background_dir")
    if folder is None:
        raise CorruptionError(
            "background_noise needs a folder of noise recordings: pass context=CorruptionContext(background_dir=...)"
            " (e.g. speech_commands/_background_noise_), or leave background_noise out of --corruptions."
        )
    tracks = _background_tracks(str(Path(folder).resolve()), rate)
    track = tracks[int(rng.integers(len(tracks)))]
    return _mix_at_snr(x, _loop_crop(track, x.shape[0], rng), snr)


@functools.lru_cache(maxsize=256)
def _pool_clip(path: str, rate: int) -> np.ndarray:
    """A babble talker read from disk once per process (the sweep draws the same pool for every clip)."""
    return load_audio(path, sample_rate=rate)[0]


@_register("babble", "noise", "dB SNR", _SNR_LEVELS, ("numpy", "soxr", "soundfile"),
           f"Babble: up to {BABBLE_TALKERS} random clips of context.babble_pool (other clips of the same set; arrays "
           "at the clip's rate or file paths; the clip itself is skipped if drawn), each at equal power, "
           "looped/cropped to the clip, summed, at an SNR.")
def _babble(x, rate, snr, rng, context):
    pool = _context_field(context, "babble_pool")
    if not pool:
        raise CorruptionError(
            "babble needs other clips of the same set: pass context=CorruptionContext(babble_pool=[...]) (arrays "
            "at the clip's rate or audio paths), or leave babble out of --corruptions."
        )
    picks = rng.choice(len(pool), size=min(BABBLE_TALKERS, len(pool)), replace=False)
    mix = np.zeros(x.shape[0], np.float64)
    for i in picks:
        item = pool[int(i)]
        talker = _pool_clip(str(item), rate) if isinstance(item, (str, Path)) else np.asarray(item, np.float32)
        if talker.size == 0 or _power(talker) == 0.0 or np.array_equal(talker, x):  # silent, or the clip itself
            continue
        mix += _loop_crop(talker, x.shape[0], rng) / np.sqrt(_power(talker))
    return _mix_at_snr(x, mix.astype(np.float32), snr)


# ------------------------------------------------------------------------------------------------ modification


@_register("gain", "modification", "dB", (-6, -12, -18, -24, -30), ("numpy",),
           "Volume change: the clip times 10^(dB/20) (numpy).")
def _gain(x, rate, db, rng, context):
    return (x * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


@_register("time_stretch", "modification", "rate", (1.1, 1.2, 1.3, 1.4, 1.5), ("pedalboard",),
           "Faster tempo at the same pitch (Rubber Band via pedalboard.time_stretch; the paper used librosa at "
           "0.7 .. 1.5). CHANGES THE LENGTH to round(n / rate).")
def _time_stretch(x, rate, factor, rng, context):
    pedalboard = _optional("pedalboard", "time_stretch")
    n_out = int(round(x.shape[0] / factor))
    y = pedalboard.time_stretch(x[None, :], float(rate), stretch_factor=float(factor))[0]
    return _fit(np.asarray(y, np.float32), n_out)


@_register("pitch_shift", "modification", "semitones", (0.5, 1, 2, 3, 4), ("pedalboard",),
           "Higher pitch at the same tempo (Rubber Band's offline mode via pedalboard.time_stretch with "
           "pitch_shift_in_semitones, accurate to 0.1 % where the real-time PitchShift plugin is off by 1.5 %; the "
           "paper used librosa at +-0.5 .. 2). Length kept.")
def _pitch_shift(x, rate, semitones, rng, context):
    pedalboard = _optional("pedalboard", "pitch_shift")
    y = pedalboard.time_stretch(x[None, :], float(rate), stretch_factor=1.0, pitch_shift_in_semitones=float(semitones))
    return _fit(np.asarray(y[0], np.float32), x.shape[0])


@_register("speed", "modification", "factor", (1.1, 1.2, 1.3, 1.4, 1.5), ("soxr",),
           "Faster playback, pitch and tempo together (soxr resampling from rate * factor to rate). CHANGES THE "
           "LENGTH to round(n / factor).")
def _speed(x, rate, factor, rng, context):
    n_out = int(round(x.shape[0] / factor))
    return _fit(resample(x, int(round(rate * factor)), rate), n_out)


@_register("low_pass", "modification", "Hz", (4000, 3200, 2400, 1600, 800), ("scipy",),
           "Butterworth order-5 low-pass (scipy.signal; the paper's cut-offs 0.5 .. 0.1 of the 8 kHz Nyquist). "
           "A cut-off at or above the clip's Nyquist leaves it unchanged.")
def _low_pass(x, rate, cutoff, rng, context):
    return _butter(x, rate, cutoff, "lowpass")


@_register("high_pass", "modification", "Hz", (800, 1600, 2400, 3200, 4000), ("scipy",),
           "Butterworth order-5 high-pass (scipy.signal; the paper's cut-offs 0.1 .. 0.5 of the 8 kHz Nyquist, "
           "clamped to 0.99 of the clip's Nyquist).")
def _high_pass(x, rate, cutoff, rng, context):
    return _butter(x, rate, cutoff, "highpass")


@_register("smoothing", "modification", "samples", (6, 10, 14, 18, 22), ("scipy",),
           "Moving average over a window of samples (scipy.ndimage.uniform_filter1d; the paper's smooth, 6 .. 26).")
def _smoothing(x, rate, window, rng, context):
    return scipy.ndimage.uniform_filter1d(x, int(window), mode="reflect").astype(np.float32)


@_register("echo", "modification", "volume", (0.1, 0.3, 0.5, 0.7, 0.9), ("numpy",),
           f"One echo {ECHO_DELAY_S * 1000:.0f} ms later at a volume relative to the clip (the paper's echo, "
           "x + v x(t - d); numpy). Length kept: the echo's tail past the end is cut.")
def _echo(x, rate, volume, rng, context):
    delay = int(round(ECHO_DELAY_S * rate))
    y = x.copy()
    if delay < x.shape[0]:
        y[delay:] += np.float32(volume) * x[: x.shape[0] - delay]
    return y


@functools.lru_cache(maxsize=32)
def _room_impulse(rate: int, rt60: float) -> np.ndarray:
    pra = _optional("pyroomacoustics", "reverb")
    absorption, max_order = pra.inverse_sabine(rt60, ROOM_DIM_M)
    room = pra.ShoeBox(ROOM_DIM_M, fs=rate, materials=pra.Material(absorption), max_order=max_order)
    room.add_source(list(ROOM_SOURCE_M))
    room.add_microphone(list(ROOM_MIC_M))
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], np.float64)
    peak = int(np.argmax(np.abs(rir)))
    rir = rir[peak:] / rir[peak]  # start at the direct path with gain 1: no time shift, no attenuation
    return rir.astype(np.float32)


@_register("reverb", "modification", "s RT60", (0.2, 0.4, 0.6, 0.8, 1.0), ("pyroomacoustics", "scipy"),
           "Reverberation of a simulated 6 x 5 x 3 m shoebox room with the given RT60 (pyroomacoustics image source "
           "model, absorption from Sabine's formula), direct path aligned to t=0 at gain 1; scipy fftconvolve. "
           "Length kept: the tail past the end is cut. The room is fixed, so the seed is unused.")
def _reverb(x, rate, rt60, rng, context):
    rir = _room_impulse(rate, rt60)
    return scipy.signal.fftconvolve(x, rir)[: x.shape[0]].astype(np.float32)


@_register("clipping", "modification", "dB below peak", (-3, -6, -10, -15, -20), ("numpy",),
           "Hard clipping at a threshold relative to the clip's own peak (numpy.clip), so the severity does not "
           "depend on the recording level.")
def _clipping(x, rate, db, rng, context):
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    threshold = np.float32(peak * 10.0 ** (db / 20.0))
    return np.clip(x, -threshold, threshold).astype(np.float32)


@_register("quantization", "modification", "bits", (10, 8, 6, 4, 2), ("numpy",),
           "Uniform quantisation of full scale [-1, 1] to 2^bits levels (the paper's quantization, 2^10 .. 2^2 "
           "levels; numpy round).")
def _quantization(x, rate, bits, rng, context):
    step = 2.0 / (2.0 ** bits)
    return (np.round(x / step) * step).astype(np.float32)


# ------------------------------------------------------------------------------------------------ compression


def _decoded(stream: bytes, rate: int, n: int, *, skip: int = 0) -> np.ndarray:
    """An encoded stream (a format libsndfile reads) decoded, its first `skip` samples (codec delay) dropped, back at
    `rate` Hz (soxr) and cropped or padded to `n` samples.  -> f32[n]."""
    y, stream_rate = sf.read(io.BytesIO(stream), dtype="float32")
    return _fit(resample(y[skip:], stream_rate, rate), n)


@_register("mp3", "compression", "kbit/s", (40, 32, 24, 16, 8), ("lameenc", "soundfile", "soxr"),
           "MP3 at a constant bit rate (the paper's mp3 levels; LAME via lameenc encodes, libsndfile via soundfile "
           "decodes; LAME resamples by itself when a bit rate is below what the rate allows), encoder+decoder delay "
           "removed, back to the clip's rate with soxr.")
def _mp3(x, rate, kbps, rng, context):
    lameenc = _optional("lameenc", "mp3")
    codec_rate = _nearest_rate(rate, MP3_RATES)
    pcm = np.clip(resample(x, rate, codec_rate), -1.0, 1.0)
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(int(kbps))
    encoder.set_in_sample_rate(codec_rate)
    encoder.set_channels(1)
    encoder.set_quality(2)
    stream = encoder.encode(np.round(pcm * 32767.0).astype(np.int16).tobytes()) + encoder.flush()
    return _decoded(bytes(stream), rate, x.shape[0], skip=LAME_DELAY_SAMPLES)


@_register("opus", "compression", "kbit/s", (32, 16, 12, 8, 6), ("soundfile", "soxr"),
           "Opus in Ogg at a target bit rate (libsndfile via soundfile: compression level = 1 - (kbit/s - 6) / 250, "
           "its linear map onto 256 .. 6 kbit/s; 6 kbit/s is libsndfile's lowest, the paper went down to 1). Clips at "
           "a rate Opus does not take are resampled (soxr) to the next Opus rate and back.")
def _opus(x, rate, kbps, rng, context):
    codec_rate = _nearest_rate(rate, OPUS_RATES)
    buf = io.BytesIO()
    level = min(max(1.0 - (kbps - 6.0) / 250.0, 0.0), 1.0)
    sf.write(buf, resample(x, rate, codec_rate), codec_rate, format="OGG", subtype="OPUS", compression_level=level)
    return _decoded(buf.getvalue(), rate, x.shape[0])


@_register("mu_law", "compression", "bits", (8, 7, 6, 5, 4), ("soxr", "numpy"),
           "Telephone line: resampled to 8 kHz (soxr), mu-law (mu = 255) companded and quantised to 2^bits levels "
           "(8 bits = G.711), expanded and resampled back. Hand-written companding: two formulas of G.711, and "
           "audioop (the standard library's) is gone from Python 3.13.")
def _mu_law(x, rate, bits, rng, context):
    mu = 255.0
    narrow = np.clip(resample(x, rate, TELEPHONE_RATE), -1.0, 1.0).astype(np.float64)
    companded = np.sign(narrow) * np.log1p(mu * np.abs(narrow)) / np.log1p(mu)
    step = 2.0 / (2.0 ** bits)
    companded = np.clip(np.round(companded / step) * step, -1.0, 1.0)
    expanded = np.sign(companded) * ((1.0 + mu) ** np.abs(companded) - 1.0) / mu
    return _fit(resample(expanded.astype(np.float32), TELEPHONE_RATE, rate), x.shape[0])


@_register("gsm", "compression", "tandem encodings", (1, 2, 3, 4, 5), ("pedalboard",),
           "GSM 06.10 full-rate telephone codec (13 kbit/s, 8 kHz; pedalboard.GSMFullRateCompressor, which resamples "
           "internally), applied 1 .. 5 times in tandem as on a call crossing several networks. Length kept.")
def _gsm(x, rate, passes, rng, context):
    pedalboard = _optional("pedalboard", "gsm")
    y = x
    for _ in range(int(passes)):
        y = np.asarray(pedalboard.GSMFullRateCompressor()(y, float(rate)), np.float32)
    return _fit(y, x.shape[0])


@_register("resample", "compression", "Hz", (12000, 8000, 6000, 4000, 3000), ("soxr",),
           "Down-sampling to a lower rate and back up (soxr VHQ): everything above half the lower rate is lost. "
           "A rate at or above the clip's own leaves it unchanged.")
def _resample(x, rate, low, rng, context):
    low = int(low)
    if low >= rate:
        return x.copy()
    return _fit(resample(resample(x, rate, low), low, rate), x.shape[0])


# ------------------------------------------------------------------------------------------------ public API

FAMILIES: dict[str, tuple[str, ...]] = {
    family: tuple(name for name, entry in _REGISTRY.items() if entry.spec.family == family)
    for family in ("noise", "modification", "compression")
}


def names() -> tuple[str, ...]:
    """Every corruption, family by family."""
    return tuple(n for family in FAMILIES.values() for n in family)


def corruption(name: str) -> Corruption:
    """The Corruption called `name`; CorruptionError listing the known names otherwise."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise CorruptionError(
            f"unknown corruption {name!r}; known: {', '.join(names())} (or a family: {', '.join(FAMILIES)}, or 'all')."
        )
    return entry.spec


def select(spec: str) -> list[str]:
    """'all', a family name, or comma-separated corruption/family names (mixed allowed) -> names, deduplicated,
    in the given order."""
    out: list[str] = []
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not parts:
        raise CorruptionError(f"no corruptions in {spec!r}; pass 'all', a family ({', '.join(FAMILIES)}) or names.")
    for part in parts:
        chosen = names() if part == "all" else FAMILIES.get(part) or (corruption(part).name,)
        out.extend(n for n in chosen if n not in out)
    return out


def _check_severity(severity) -> int:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
        raise CorruptionError(f"severity must be a whole number 0..5 (0 = clean), got {severity!r}.")
    return int(severity)


def corrupt(audio: np.ndarray, rate: int, name: str, severity: int, *, seed: int = 0, context=None) -> np.ndarray:
    """Corrupt one clip. f32[n] mono at `rate` -> f32[n'] at `rate` (n' = n except `time_stretch` and `speed`).

    severity 0 returns a copy of the clip; 1..5 use `corruption(name).levels`. `context`: a CorruptionContext (or a
    mapping with the same keys) for `background_noise` / `babble`. Deterministic for (name, severity, seed).
    """
    entry = _REGISTRY.get(name) or _REGISTRY[corruption(name).name]
    severity = _check_severity(severity)
    x = np.asarray(audio)
    if x.ndim != 1:
        raise CorruptionError(f"corrupt takes mono f32[samples], got shape {x.shape}; average the channels first.")
    if not np.issubdtype(x.dtype, np.floating):
        raise CorruptionError(f"corrupt takes float audio in [-1, 1], got dtype {x.dtype}; divide int PCM by 32768.")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise CorruptionError("the clip holds NaN/Inf samples; clean it (np.nan_to_num) before corrupting it.")
    rate = int(rate)
    if rate <= 0:
        raise CorruptionError(f"rate must be a positive number of Hz, got {rate}.")
    if severity == 0 or x.shape[0] == 0:
        return x.copy()
    rng = np.random.default_rng((int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())))
    y = entry.fn(x, rate, entry.spec.level(severity), rng, context)
    return np.nan_to_num(np.asarray(y, np.float32), copy=False)


def _version(dist: str) -> str:
    if dist == "soundfile":
        return f"{sf.__version__}+libsndfile{sf.__libsndfile_version__}"
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def corruption_key(name: str, severity: int, seed: int) -> str:
    """A stable, file-name-safe key for caches of corrupted audio or embeddings.

    'NAME-sSEVERITY-seedSEED-HASH', where HASH covers the level, unit, CORRUPTIONS_VERSION and the versions of the
    libraries this corruption uses, so changing any of them gives a new key.
    """
    spec = corruption(name)
    severity = _check_severity(severity)
    level = spec.level(severity) if severity else 0.0
    libs = ",".join(f"{lib}={_version(lib)}" for lib in _REGISTRY[name].libs)
    full = f"{name}|{severity}|{level}|{spec.unit}|{int(seed)}|v{CORRUPTIONS_VERSION}|{libs}"
    return f"{name}-s{severity}-seed{int(seed)}-{hashlib.sha1(full.encode()).hexdigest()[:12]}"
