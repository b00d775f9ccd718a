"""Locally made spoofing attacks: turn a folder of bona fide speech into a `deepfake_folder` dataset.

Each source clip is analysed and resynthesised by real signal-processing attacks:

  world       WORLD vocoder analysis-resynthesis (Morise et al., 2016; pyworld): Harvest or DIO+StoneMask F0,
              CheapTrick spectral envelope, D4C aperiodicity, then WORLD synthesis.
  griffinlim  Griffin-Lim phase reconstruction (Griffin & Lim, 1984) from a mel spectrogram, with librosa's
              mel inversion (NNLS) and its fast Griffin-Lim (Perraudin et al., 2013).
  lpc         LPC analysis-resynthesis: frame-wise all-pole filters (autocorrelation method), excited by a pulse
              train at the estimated pitch in voiced frames and by white noise elsewhere (the residual is
              thrown away, as in an LPC-10 style vocoder).
  tts         espeak-ng text-to-speech of the clip's word (for FSDD, the digit's name), its speaking rate set so
              the utterance lasts as long as the spoken part of the source clip.

A clip and its spoofs form a group that gets one treatment, so no trivial cue separates the classes: every
spoof is cut or padded to the source's length and scaled to its RMS; then every member (bona fide included)
gets independent white noise that lifts its quietest 20 ms frame to a common floor just above the loudest
quietest frame of the group (which also removes runs of exact zeros); the group shares one peak-safety gain
and every file is written at the source's sample rate as 16-bit PCM. A probe on [duration, RMS, quietest-frame
level] (`trivial_cues`) therefore sits at chance; tests/test_spoof.py checks it.

    report = make_spoofs("fsdd/recordings", "/tmp/df", ("world", "griffinlim", "lpc"), workers=2)

Output (read by the `deepfake_folder` reader in either of its layouts):

    DIR/bonafide/<name>.wav            the source clips after the group treatment
    DIR/spoof/<attack>/<name>.wav      one spoof per attack and source clip (same file name as its source)
    DIR/labels.csv                     path,label,attack_id,speaker,word,source_clip[,gender,language]
    DIR/spoof.json                     the arguments, package versions, counts and clips/s per attack

`source_clip` is the bona fide row's path, so a protocol can keep a source clip's spoofs and the clip itself in
one fold. Everything is a function of the arguments and the seed (each clip draws from its own seed, so the
output does not depend on the number of workers). Sits beside `data/sources/`; needs the `spoof` extra (pyworld,
librosa) for world / griffinlim / lpc and the espeak-ng program for tts.
"""

from __future__ import annotations

import concurrent.futures
import csv
import importlib.util
import io
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.signal
import soundfile as sf

from audiorep.audio.io import AudioError, load_audio, resample, save_audio
from audiorep.data.sources.common import read_csv_rows
from audiorep.errors import AudiorepError
from audiorep.paths import nearest_existing

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")
# FSDD file names: <digit>_<speaker>_<take>.wav
FSDD_NAME = re.compile(r"^(?P<word>\d)_(?P<speaker>[A-Za-z]+)_(?P<take>\d+)$")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPEAKER_META_NAME = "SPEAKERS.csv"  # looked for in --from and its parent (FSDD keeps it next to recordings/)
SPEAKER_META_COLUMNS = ("gender", "language")  # copied into labels.csv (the deepfake_folder group columns)
LABEL_COLUMNS = ("path", "label", "attack_id", "speaker", "word", "source_clip")
BONAFIDE_ATTACK_ID = "-"  # the ASVspoof protocols' system id of bona fide trials
MANIFEST = "spoof.json"
MIN_SECONDS = 0.1  # shorter clips have too few analysis frames for the vocoders

# background treatment
CUE_FRAME_S = 0.02  # the frame of the quietest-frame level
FLOOR_MARGIN_DB = 1.0  # the common floor sits this far above the loudest quietest frame of a group
MIN_FLOOR_DBFS = -80.0  # and never below this (about 3 LSB of 16-bit PCM: no exact-zero runs survive)
PEAK_LIMIT = 0.99
WORLD_MIN_RATE = 16000  # WORLD's D4C assumes at least this (world_attack)
SUBTYPE = "PCM_16"


class SpoofError(AudiorepError, ValueError):
    """Arguments or inputs `make_spoofs` cannot use (an unknown attack, a missing program, a clash in --out...)."""


# ------------------------------------------------------------------------------------------- cues and levels
def frame_levels(x: np.ndarray, sample_rate: int, frame_s: float = CUE_FRAME_S) -> np.ndarray:
    """RMS level of each frame in dBFS (half-overlapping frames of `frame_s`; one frame when the clip is shorter).

    f32[n] -> f64[frames]; an all-zero frame is -200 dB.
    """
    x = np.asarray(x, dtype=np.float64)
    length = max(1, min(len(x), int(round(frame_s * sample_rate))))
    frames = np.lib.stride_tricks.sliding_window_view(x, length)[:: max(1, length // 2)]
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-20)


def rms_db(x: np.ndarray) -> float:
    """RMS level of a whole clip in dBFS (-200 for silence)."""
    return float(10.0 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-20))


def trivial_cues(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """The cues a detector must not be able to use: [duration s, RMS dBFS, quietest-frame dBFS]. f64[3]."""
    return np.array([len(x) / sample_rate, rms_db(x), float(frame_levels(x, sample_rate).min())])


def match_length(y: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad `y` at the end to `n` samples (zeros are covered by the noise floor later). f32[n]."""
    y = np.asarray(y, dtype=np.float32)
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def match_rms(y: np.ndarray, target_db: float) -> np.ndarray:
    """Scale `y` to an RMS of `target_db` dBFS (silence stays silence). f32[n]."""
    level = rms_db(y)
    if level <= -199.0:
        return np.asarray(y, dtype=np.float32)
    return (np.asarray(y, dtype=np.float64) * 10.0 ** ((target_db - level) / 20.0)).astype(np.float32)


def match_background(group: Sequence[np.ndarray], sample_rate: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The treatment every member of a group (a bona fide clip first, then its spoofs) gets.

    Every member has the bona fide clip's length and RMS already. Each gets independent white noise whose power
    lifts its quietest frame to a common floor (FLOOR_MARGIN_DB above the loudest quietest frame of the group, at
    least MIN_FLOOR_DBFS): the quietest-frame level no longer tells members apart, and no member keeps runs of
    exact zeros. Then each is scaled back to the bona fide clip's RMS after its noise, and all share one gain that
    keeps the loudest peak of the group at PEAK_LIMIT. list of f32[n] -> list of f32[n].
    """
    quietest = [float(frame_levels(y, sample_rate).min()) for y in group]
    floor_db = max(max(quietest) + FLOOR_MARGIN_DB, MIN_FLOOR_DBFS)
    noisy = []
    for y, q in zip(group, quietest):
        power = 10.0 ** (floor_db / 10.0) - 10.0 ** (q / 10.0)  # > 0: the floor is above every quietest frame
        noise = rng.standard_normal(len(y)) * np.sqrt(power)
        noisy.append(np.asarray(y, dtype=np.float64) + noise)
    target = rms_db(noisy[0])
    noisy = [match_rms(y, target).astype(np.float64) for y in noisy]
    peak = max(float(np.max(np.abs(y))) for y in noisy)
    gain = min(1.0, PEAK_LIMIT / peak) if peak > 0 else 1.0
    return [(y * gain).astype(np.float32) for y in noisy]


# ----------------------------------------------------------------------------------------------- attacks
def world_attack(x: np.ndarray, sample_rate: int, rng: np.random.Generator, word: str | None = None, *,
                 f0_method: str = "harvest", frame_period_ms: float = 5.0) -> np.ndarray:
    """WORLD analysis-resynthesis (pyworld). f32[n] -> f32[n].

    Runs at WORLD_MIN_RATE or above (a clip at a lower rate is resampled up and back): D4C's voicing test sums power
    up to 7.9 kHz and, below 15.8 kHz sampling, reads past the end of its spectrum buffer, so its output changed
    from call to call. The input also gets a -100 dBFS dither from `rng`: D4C adds 1e-12 noise from WORLD's own
    generator to every window, which would otherwise decide the windows of digital silence.
    """
    import pyworld  # optional dependency (the spoof extra); imported where used

    rate = max(sample_rate, WORLD_MIN_RATE)
    x64 = np.asarray(x, dtype=np.float64) + rng.standard_normal(len(x)) * 1e-5
    if rate != sample_rate:
        x64 = resample(x64.astype(np.float32), sample_rate, rate).astype(np.float64)
    if f0_method == "harvest":
        f0, times = pyworld.harvest(x64, rate, frame_period=frame_period_ms)
    elif f0_method == "dio":
        f0, times = pyworld.dio(x64, rate, frame_period=frame_period_ms)
        f0 = pyworld.stonemask(x64, f0, times, rate)
    else:
        raise SpoofError(f"WORLD F0 method {f0_method!r} is not harvest or dio (--world-f0).")
    envelope = pyworld.cheaptrick(x64, f0, times, rate)
    aperiodicity = pyworld.d4c(x64, f0, times, rate)
    y = pyworld.synthesize(f0, envelope, aperiodicity, rate, frame_period_ms).astype(np.float32)
    if rate != sample_rate:
        y = resample(y, rate, sample_rate)
    return match_length(y, len(x))


def griffinlim_settings(sample_rate: int) -> tuple[int, int, int]:
    """(n_fft, hop, n_mels) for a rate: a ~32 ms window (a power of two), 75 % overlap, 40 mels up to 8 kHz
    sampling and 80 above (more mels than FFT bins per band would leave empty filters)."""
    n_fft = 1 << int(np.ceil(np.log2(0.032 * sample_rate)))
    return n_fft, n_fft // 4, 80 if sample_rate > 8000 else 40


def griffinlim_attack(x: np.ndarray, sample_rate: int, rng: np.random.Generator, word: str | None = None, *,
                      n_iter: int = 32) -> np.ndarray:
    """Mel power spectrogram -> NNLS magnitude -> fast Griffin-Lim (librosa), random initial phase from `rng`.

    f32[n] -> f32[n].
    """
    import librosa  # optional dependency (the spoof extra); imported where used (and slow to import)

    n_fft, hop, n_mels = griffinlim_settings(sample_rate)
    mel = librosa.feature.melspectrogram(y=np.asarray(x, dtype=np.float32), sr=sample_rate, n_fft=n_fft,
                                         hop_length=hop, n_mels=n_mels, power=2.0)
    magnitude = librosa.feature.inverse.mel_to_stft(mel, sr=sample_rate, n_fft=n_fft, power=2.0)
    return librosa.griffinlim(magnitude, n_iter=n_iter, hop_length=hop, n_fft=n_fft, length=len(x),
                              rng=np.random.default_rng(rng.integers(2**32))).astype(np.float32)


def pitch_track(x: np.ndarray, sample_rate: int, centers: np.ndarray, *, fmin: float = 60.0, fmax: float = 400.0,
                voicing_threshold: float = 0.45, octave_cost: float = 0.02) -> np.ndarray:
    """F0 per frame centre by the normalised autocorrelation of a 40 ms Hann frame, corrected for the window's own
    autocorrelation and with a small octave cost (Boersma, 1993), with parabolic peak interpolation; 0 marks an
    unvoiced frame.

    f32[n], i64[frames] -> f64[frames] in Hz.
    """
    length = int(round(0.04 * sample_rate))
    lo, hi = max(2, int(sample_rate / fmax)), min(length // 2, int(np.ceil(sample_rate / fmin)))
    window = np.hanning(length)
    padded = np.pad(np.asarray(x, dtype=np.float64), (length // 2, length + max(centers[-1] - len(x), 0)))
    frames = np.stack([padded[c:c + length] for c in centers]) * window
    frames -= frames.mean(axis=1, keepdims=True) * window  # remove DC under the window
    nfft = 1 << int(np.ceil(np.log2(2 * length)))
    r = np.fft.irfft(np.abs(np.fft.rfft(frames, nfft)) ** 2, nfft)[:, : hi + 2]
    rw = np.fft.irfft(np.abs(np.fft.rfft(window, nfft)) ** 2, nfft)[: hi + 2]
    energy = r[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = (r / np.maximum(energy[:, None], 1e-20)) / (rw / rw[0])
    lags = np.arange(lo, hi + 1)
    # Boersma's octave cost: a small bonus for shorter lags, so a periodic frame picks T over 2T
    best = np.argmax(norm[:, lo:hi + 1] - octave_cost * np.log2(lags / lo), axis=1) + lo
    peak = norm[np.arange(len(best)), best]
    # parabolic interpolation of the lag
    left, right = norm[np.arange(len(best)), best - 1], norm[np.arange(len(best)), best + 1]
    denom = left - 2 * peak + right
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0)
    lag = best + np.clip(shift, -0.5, 0.5)
    loud = 10 * np.log10(energy + 1e-20) > 10 * np.log10(energy.max() + 1e-20) - 35.0
    voiced = (peak > voicing_threshold) & loud
    f0 = np.where(voiced, sample_rate / lag, 0.0)
    if len(f0) >= 3:  # a 3-point median over voiced runs removes single-frame octave jumps
        med = scipy.signal.medfilt(f0, 3)
        f0 = np.where(voiced & (med > 0), med, f0)
    return f0


def lpc_attack(x: np.ndarray, sample_rate: int, rng: np.random.Generator, word: str | None = None, *,
               order: int | None = None, hop_s: float = 0.01, window_s: float = 0.03) -> np.ndarray:
    """LPC analysis-resynthesis with a synthetic excitation. f32[n] -> f32[n].

    Analysis: every `hop_s`, a Hann window of `window_s`, autocorrelation, Levinson (scipy's Toeplitz solver) to an
    all-pole filter of `order` (default 4 + kHz) and the gain of its prediction error. Synthesis: a pulse train of
    unit power at the frame's F0 (`pitch_track`, phase continuous across frames) in voiced frames, white noise
    from `rng` in unvoiced ones, each frame's filter run over its stretch of excitation (with a warm-up) and
    overlap-added under a periodic Hann of twice the hop (the frames sum to one).
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    order = order or 4 + sample_rate // 1000
    hop = max(1, int(round(hop_s * sample_rate)))
    win = int(round(window_s * sample_rate))
    centers = np.arange(0, n + hop, hop)
    window = np.hanning(win)
    padded = np.pad(x, (win // 2, win + hop))
    frames = np.stack([padded[c:c + win] for c in centers]) * window
    nfft = 1 << int(np.ceil(np.log2(2 * win)))
    r = np.fft.irfft(np.abs(np.fft.rfft(frames, nfft)) ** 2, nfft)[:, : order + 1]
    f0 = pitch_track(x, sample_rate, centers)

    # excitation: per-sample F0 (nearest frame), a pulse of height sqrt(period) at each period (unit power)
    total = (len(centers) + 1) * hop + 2 * win
    origin = hop + win  # sample index of x[0] in the excitation
    frame_of = np.clip((np.arange(total) - origin + hop // 2) // hop, 0, len(centers) - 1)
    f0_s = f0[frame_of]
    phase = np.cumsum(np.where(f0_s > 0, f0_s / sample_rate, 0.0))
    pulses = np.diff(np.floor(phase), prepend=0.0) > 0
    excitation = np.where(f0_s > 0, pulses * np.sqrt(sample_rate / np.maximum(f0_s, 1.0)), rng.standard_normal(total))

    out = np.zeros(total)
    synth = np.hanning(2 * hop + 1)[:-1]  # periodic Hann: shifted copies at `hop` sum to one
    norm = np.sum(window**2)
    for k, c in enumerate(centers):
        energy = r[k, 0]
        if energy <= 1e-12:
            continue
        rk = r[k].copy()
        rk[0] *= 1.0 + 1e-6  # white-noise correction keeps the Toeplitz system well conditioned
        a = scipy.linalg.solve_toeplitz(rk[:order], -rk[1:order + 1])
        error = max(rk[0] + float(np.dot(a, rk[1:order + 1])), 0.0)
        gain = np.sqrt(error / norm)
        start = origin + c - hop
        segment = excitation[start - win:start + 2 * hop]
        y = scipy.signal.lfilter([gain], np.concatenate([[1.0], a]), segment)[win:]
        out[start:start + 2 * hop] += y * synth
    return out[origin:origin + n].astype(np.float32)


def espeak_program() -> str | None:
    """The espeak-ng executable on PATH, or None."""
    return shutil.which("espeak-ng")


TTS_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+f1", "+f2", "+f3", "+f4")


def espeak(word: str, voice: str, words_per_minute: int) -> tuple[np.ndarray, int]:
    """Run espeak-ng on one word -> (f32[n], rate)."""
    program = espeak_program()
    if program is None:
        raise SpoofError("the tts attack needs the espeak-ng program: install the apt package espeak-ng "
                         "(`apt-get install espeak-ng`), or drop tts from --attacks.")
    done = subprocess.run([program, "-v", voice, "-s", str(words_per_minute), "--stdout", "--", word],
                          capture_output=True, check=False, timeout=60)
    if done.returncode != 0 or not done.stdout:
        raise SpoofError(f"espeak-ng -v {voice} failed on {word!r}: {done.stderr.decode(errors='replace').strip()} "
                         "(check the voice with `espeak-ng --voices`; set it with --tts-voice).")
    samples, rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
    return (samples if samples.ndim == 1 else samples.mean(axis=1)), rate


def active_span(x: np.ndarray, sample_rate: int, below_peak_db: float = 35.0) -> tuple[int, int]:
    """(start, stop) samples of the part of a clip whose 20 ms frames lie within `below_peak_db` of its loudest."""
    levels = frame_levels(x, sample_rate)
    hop = max(1, int(round(CUE_FRAME_S * sample_rate)) // 2)
    on = np.flatnonzero(levels > levels.max() - below_peak_db)
    return int(on[0] * hop), min(len(x), int(on[-1] * hop + 2 * hop))


def tts_attack(x: np.ndarray, sample_rate: int, rng: np.random.Generator, word: str | None = None, *,
               voice: str = "en-us", words_per_minute: int = 160) -> np.ndarray:
    """espeak-ng says `word` with a voice variant drawn from `rng`, at a rate that makes the utterance as long as
    the spoken part of `x`, placed where that part starts. f32[n] -> f32[n]."""
    if not word:
        raise SpoofError("the tts attack needs a word per clip: FSDD file names give it, else pass --words CSV.")
    variant = voice + TTS_VARIANTS[int(rng.integers(len(TTS_VARIANTS)))]
    start, stop = active_span(x, sample_rate)
    speech, rate = espeak(word, variant, words_per_minute)
    s0, s1 = active_span(speech, rate)
    wanted = (stop - start) / sample_rate
    if s1 > s0 and wanted > 0:  # espeak's rate is in words per minute: scale it by the duration ratio once
        wpm = int(np.clip(words_per_minute * ((s1 - s0) / rate) / wanted, 80, 450))
        if wpm != words_per_minute:
            speech, rate = espeak(word, variant, wpm)
            s0, s1 = active_span(speech, rate)
    speech = resample(speech[s0:s1], rate, sample_rate) if rate != sample_rate else speech[s0:s1]
    out = np.zeros(len(x), dtype=np.float32)
    piece = speech[: len(x) - start]
    out[start:start + len(piece)] = piece
    return out


@dataclass(frozen=True)
class Attack:
    """A named attack: `run(x f32[n], rate, rng, word) -> f32[about n]`; `needs` says what to install."""

    name: str
    description: str
    run: Callable[..., np.ndarray]
    needs: str


ATTACKS: dict[str, Attack] = {a.name: a for a in (
    Attack("world", "WORLD vocoder analysis-resynthesis (Harvest/DIO F0, CheapTrick, D4C; pyworld)", world_attack,
           "pyworld (pip install 'audiorep[spoof]')"),
    Attack("griffinlim", "Griffin-Lim phase reconstruction from a mel spectrogram (librosa)", griffinlim_attack,
           "librosa (pip install 'audiorep[spoof]')"),
    Attack("lpc", "LPC analysis-resynthesis, pulse-train / noise excitation at the estimated pitch", lpc_attack,
           "scipy"),
    Attack("tts", "espeak-ng text-to-speech of the clip's word, timed to the source's spoken part", tts_attack,
           "the espeak-ng program (apt package espeak-ng)"),
)}


def check_attacks(names: Sequence[str]) -> tuple[str, ...]:
    """Validate attack names and that what each needs is installed; SpoofError naming the fix otherwise."""
    names = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not names:
        raise SpoofError(f"no attack given; choose from {', '.join(ATTACKS)} (--attacks world,griffinlim,lpc).")
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise SpoofError(f"unknown attack(s) {unknown}; --attacks takes a comma-separated list of {list(ATTACKS)}.")
    for name, module in (("world", "pyworld"), ("griffinlim", "librosa")):
        if name in names and importlib.util.find_spec(module) is None:
            raise SpoofError(f"the {name} attack needs {module}: pip install 'audiorep[spoof]' "
                             f"(or drop {name} from --attacks).")
    if "tts" in names and espeak_program() is None:
        raise SpoofError("the tts attack needs the espeak-ng program: install the apt package espeak-ng "
                         "(`apt-get install espeak-ng`), or drop tts from --attacks.")
    return names


def clip_seed(seed: int, name: str) -> np.random.SeedSequence:
    """The seed of one source clip: a function of the run's seed and the clip's output name only."""
    return np.random.SeedSequence([seed & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (espeak-ng runs as one)."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


def spoof_clip(x: np.ndarray, sample_rate: int, attacks: Sequence[str], seed: np.random.SeedSequence,
               word: str | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """A source clip -> its treated bona fide copy and one spoof per attack, and the CPU seconds each attack took.

    Returns ({'bonafide': f32[n], attack: f32[n], ...}, {attack: seconds}).
    """
    options = options or {}
    children = seed.spawn(len(attacks) + 1)
    target = rms_db(x)
    group, seconds = [np.asarray(x, dtype=np.float32)], {}
    for name, child in zip(attacks, children):
        tic = cpu_seconds()
        y = ATTACKS[name].run(x, sample_rate, np.random.default_rng(child), word, **options.get(name, {}))
        group.append(match_rms(match_length(y, len(x)), target))
        seconds[name] = cpu_seconds() - tic
    treated = match_background(group, sample_rate, np.random.default_rng(children[-1]))
    return dict(zip(("bonafide", *attacks), treated)), seconds


# --------------------------------------------------------------------------------------------- the folder job
@dataclass(frozen=True)
class SourceClip:
    """One bona fide input: its path, output file name (relative path with '/' -> '__', suffix .wav), speaker
    and word ('' when unknown)."""

    path: str
    name: str
    speaker: str
    word: str


@dataclass
class SpoofReport:
    """What `make_spoofs` wrote: the folder, the rows of labels.csv, clips per CPU second per attack (one process),
    and the inputs skipped as unreadable (path: reason)."""

    out: Path
    rows: list[dict[str, str]]
    attacks: tuple[str, ...]
    clips_per_second: dict[str, float]
    skipped: list[str] = field(default_factory=list)

    @property
    def sources(self) -> int:
        return sum(r["label"] == "bonafide" for r in self.rows)


def read_words(path: str | os.PathLike) -> dict[str, str]:
    """A `--words` CSV (columns file,word; file = the path relative to --from, or the bare file name) -> dict."""
    rows = read_csv_rows(Path(path), ("file", "word"))
    return {row["file"]: row["word"] for _, row in rows}


def read_speaker_meta(path: Path) -> dict[str, dict[str, str]]:
    """A speaker CSV (speaker plus any of gender, language) -> {speaker: {column: value}}."""
    rows = read_csv_rows(path, ("speaker",))
    return {row["speaker"]: {c: row[c] for c in SPEAKER_META_COLUMNS if row.get(c)} for _, row in rows}


def find_speaker_meta(bonafide_dir: Path) -> Path | None:
    """SPEAKERS.csv in the bona fide folder or its parent (FSDD's place), else None."""
    for folder in (bonafide_dir, bonafide_dir.parent):
        if (folder / SPEAKER_META_NAME).is_file():
            return folder / SPEAKER_META_NAME
    return None


def find_sources(bonafide_dir: str | os.PathLike, *, speaker_regex: str | None = None,
                 words: dict[str, str] | None = None, limit: int | None = None) -> list[SourceClip]:
    """The audio files under `bonafide_dir` (recursive, sorted), with speaker and word.

    speaker: the named group `speaker` (else group 1) of `speaker_regex` searched in the relative path, else
    FSDD's `<digit>_<speaker>_<take>` file name, else ''. word: `words[relative path]` or `words[file name]`,
    else the FSDD digit's name, else ''. `limit` keeps that many files evenly spread over the sorted list.
    """
    root = Path(bonafide_dir)
    if not root.is_dir():
        raise SpoofError(f"--from {root}: no such folder; pass the folder of bona fide speech files.")
    try:
        pattern = re.compile(speaker_regex) if speaker_regex else None
    except re.error as err:
        raise SpoofError(f"--speaker-regex {speaker_regex!r} is not a regular expression: {err}.") from None
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise SpoofError(f"--from {root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in it or below it.")
    if limit is not None and limit < len(files):
        files = [files[i] for i in np.unique(np.linspace(0, len(files) - 1, limit).round().astype(int))]
    words = words or {}
    clips, names = [], {}
    for path in files:
        rel = path.relative_to(root).as_posix()
        name = rel.rsplit(".", 1)[0].replace("/", "__") + ".wav"
        if name in names:
            raise SpoofError(f"--from {root}: {rel} and {names[name]} would both be written as {name}; "
                             "rename one of them.")
        names[name] = rel
        fsdd = FSDD_NAME.match(path.stem)
        speaker = ""
        if pattern is not None:
            found = pattern.search(rel)
            if found:
                speaker = found.groupdict().get("speaker") or (found.group(1) if pattern.groups else found.group(0))
        elif fsdd:
            speaker = fsdd["speaker"]
        word = words.get(rel) or words.get(path.name) or (DIGIT_WORDS[int(fsdd["word"])] if fsdd else "")
        clips.append(SourceClip(str(path), name, speaker, word))
    return clips


def out_problem(out: Path, bonafide_dir: Path, force: bool) -> str | None:
    """Why `out` cannot be (re)written, or None. A non-empty folder is replaced only with force and only when an
    earlier run wrote it (its spoof.json is there): --force never deletes a folder of other files."""
    out_r, src_r = out.resolve(), bonafide_dir.resolve()
    if out_r == src_r or src_r in out_r.parents or out_r in src_r.parents:
        return f"--out {out} overlaps --from {bonafide_dir}; write the spoofed dataset to a separate folder"
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file; pass the folder to write the dataset into"
    existing = nearest_existing(out.parent)
    if not existing.is_dir():
        return f"--out {out} lies under the file {existing}; choose a path under a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"--out {out}: the folder {existing} is not writable; choose a path you can write"
    if out.is_dir() and any(out.iterdir()):
        if not force:
            return f"--out {out} is not empty; pass --force to replace an earlier `datasets spoof` output there"
        if not (out / MANIFEST).is_file():
            return (f"--out {out} is not empty and holds no {MANIFEST} (it was not written by `datasets spoof`); "
                    "--force only replaces such an output: choose a new or empty folder")
    return None


def process_clip(clip: SourceClip, attacks: tuple[str, ...], seed: int, sample_rate: int | None, staging: str,
                 options: dict) -> tuple[SourceClip, int, dict[str, float]]:
    """Worker: read one source clip, make its spoofs, write them under `staging`. -> (clip, rate, seconds)."""
    x, rate = load_audio(clip.path, sample_rate)
    if len(x) < MIN_SECONDS * rate:
        raise AudioError(f"{clip.path}: {len(x) / rate:.3f} s is shorter than the {MIN_SECONDS} s the vocoders "
                         "need; remove the file")
    outputs, seconds = spoof_clip(x, rate, attacks, clip_seed(seed, clip.name), clip.word, options)
    for name, y in outputs.items():
        folder = Path(staging) / ("bonafide" if name == "bonafide" else f"spoof/{name}")
        save_audio(folder / clip.name, y, rate, subtype=SUBTYPE)
    return clip, rate, seconds


def write_labels(path: Path, rows: list[dict[str, str]], columns: Sequence[str]) -> None:
    """labels.csv, atomically."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def make_spoofs(
    bonafide_dir: str | os.PathLike,
    out: str | os.PathLike,
    attacks: Sequence[str] = ("world", "griffinlim", "lpc"),
    *,
    seed: int = 0,
    words: str | os.PathLike | None = None,
    speaker_regex: str | None = None,
    speaker_meta: str | os.PathLike | None = "auto",
    sample_rate: int | None = None,
    limit: int | None = None,
    workers: int = 1,
    force: bool = False,
    skip_unreadable: bool = False,
    world_f0: str = "harvest",
    tts_voice: str = "en-us",
    progress: bool = False,
) -> SpoofReport:
    """Write a `deepfake_folder` dataset of `bonafide_dir`'s clips and their spoofs to `out` (layout: module doc).

    Args:
      bonafide_dir: folder of bona fide speech (searched recursively).
      out: the dataset folder; built in a hidden sibling folder and moved in place when complete, so an
        interrupted run never leaves a half-written dataset there.
      attacks: names from ATTACKS.
      seed: every random draw (noise floor, Griffin-Lim phases, LPC noise, TTS voices) follows from it.
      words: CSV of file,word (the tts attack's text and labels.csv's word column).
      speaker_regex: where the speaker id is in the relative path (named group `speaker` or group 1).
      speaker_meta: CSV of speaker plus gender / language, copied into labels.csv; 'auto' = SPEAKERS.csv in
        `bonafide_dir` or its parent when present; None = none.
      sample_rate: resample everything to this rate (default: keep each file's rate).
      limit: use this many source files, evenly spread over the sorted list.
      workers: processes (each source clip is one job). They are spawned (a forked child could inherit locks
        held by the caller's threads), so a script that calls this with workers > 1 needs the usual
        `if __name__ == "__main__":` guard.
      force: replace an earlier output at `out` (only one with a spoof.json).
      skip_unreadable: skip (and list) unreadable or too-short inputs instead of stopping at the first.
      world_f0: 'harvest' (slower, more robust) or 'dio' (+ StoneMask).
      tts_voice: espeak-ng voice; a variant (+m1, +f2, ...) is drawn per clip.
      progress: a progress bar on stderr.

    Raises:
      SpoofError: bad arguments, a missing dependency, or an --out that cannot be written (all before any work).
      AudioError: an unreadable input, unless skip_unreadable.
    """
    bonafide_dir, out = Path(bonafide_dir).expanduser(), Path(out).expanduser()
    attacks = check_attacks(attacks)
    if world_f0 not in ("harvest", "dio"):
        raise SpoofError(f"--world-f0 {world_f0!r}: use harvest or dio.")
    if workers < 1:
        raise SpoofError(f"--workers {workers}: use 1 or more.")
    if not bonafide_dir.is_dir():
        raise SpoofError(f"--from {bonafide_dir}: no such folder; pass the folder of bona fide speech files.")
    problem = out_problem(out, bonafide_dir, force)
    if problem:
        raise SpoofError(problem + ".")
    for flag, given in (("--words", words), ("--speaker-meta", None if speaker_meta == "auto" else speaker_meta)):
        if given is not None and not Path(given).is_file():
            raise SpoofError(f"{flag} {given}: no such file; pass a CSV file (or leave {flag} out).")
    clips = find_sources(bonafide_dir, speaker_regex=speaker_regex, words=read_words(words) if words else None,
                         limit=limit)
    clips, skipped = check_headers(clips, skip_unreadable)
    if "tts" in attacks:
        wordless = [c.path for c in clips if not c.word]
        if wordless:
            raise SpoofError(f"the tts attack needs a word for every clip, and {len(wordless)} have none (e.g. "
                             f"{wordless[0]}); pass --words CSV with columns file,word.")
    meta_path = find_speaker_meta(bonafide_dir) if speaker_meta == "auto" else speaker_meta
    meta = read_speaker_meta(Path(meta_path)) if meta_path else {}
    meta_columns = [c for c in SPEAKER_META_COLUMNS if any(c in m for m in meta.values())]
    options = {"world": {"f0_method": world_f0}, "tts": {"voice": tts_voice}}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        results, failed = run_jobs(clips, attacks, seed, sample_rate, staging, options, workers, skip_unreadable,
                                    progress)
        skipped += failed
        if not results:
            raise SpoofError(f"--from {bonafide_dir}: no readable clip (skipped {len(skipped)}: {skipped[:1]}).")
        rows: list[dict[str, str]] = []
        for clip, _rate, _seconds in results:
            extra = {c: meta.get(clip.speaker, {}).get(c, "") for c in meta_columns}
            bona = f"bonafide/{clip.name}"
            shared = {"speaker": clip.speaker, "word": clip.word, "source_clip": bona, **extra}
            rows.append({"path": bona, "label": "bonafide", "attack_id": BONAFIDE_ATTACK_ID, **shared})
            rows += [{"path": f"spoof/{a}/{clip.name}", "label": "spoof", "attack_id": a, **shared} for a in attacks]
        write_labels(staging / "labels.csv", rows, (*LABEL_COLUMNS, *meta_columns))
        totals = {a: sum(s[a] for _, _, s in results) for a in attacks}
        speed = {a: (len(results) / t if t > 0 else float("inf")) for a, t in totals.items()}
        manifest = {
            "written_by": "audiorep datasets spoof", "from": str(bonafide_dir.resolve()), "attacks": list(attacks),
            "seed": seed, "sample_rate": sample_rate, "limit": limit, "world_f0": world_f0, "tts_voice": tts_voice,
            "speaker_meta": str(meta_path) if meta_path else None, "sources": len(results), "skipped": skipped,
            "clips_per_second": {a: round(v, 2) for a, v in speed.items()},
            "treatment": {"length": "cut/zero-padded to the source", "level": "RMS of the bona fide clip",
                          "noise_floor": f"white noise lifting every quietest {CUE_FRAME_S * 1000:g} ms frame to "
                                         f"{FLOOR_MARGIN_DB:g} dB above the group's loudest quietest frame "
                                         f"(>= {MIN_FLOOR_DBFS:g} dBFS)", "format": f"wav {SUBTYPE}"},
            "versions": {p: package_version(p) for p in ("audiorep", "pyworld-prebuilt", "librosa", "numpy", "scipy")},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        replace_folder(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return SpoofReport(out, rows, attacks, speed, skipped)


def check_headers(clips: list[SourceClip], skip_unreadable: bool) -> tuple[list[SourceClip], list[str]]:
    """Open every input's header before any work, so a file that is not audio stops the run in seconds (or is
    skipped and listed with skip_unreadable). -> (readable clips, 'path: reason' of the skipped ones)."""
    kept, skipped = [], []
    for clip in clips:
        try:
            sf.info(clip.path)
        except (sf.LibsndfileError, RuntimeError) as err:
            if not skip_unreadable:
                raise AudioError(f"{clip.path}: cannot read it as audio (libsndfile says: {err}). Remove or "
                                 "re-encode it, or pass --skip-unreadable to skip such inputs.") from None
            skipped.append(f"{clip.path}: not readable audio ({err})")
        else:
            kept.append(clip)
    return kept, skipped


def run_jobs(clips, attacks, seed, sample_rate, staging, options, workers, skip_unreadable, progress):
    """Run `process_clip` over the clips (in a process pool when workers > 1), in input order."""
    from tqdm import tqdm  # only the long-running path needs it

    results, skipped = [], []
    bar = tqdm(total=len(clips), desc="spoofing", unit="clip", disable=not progress)
    job = (attacks, seed, sample_rate, str(staging), options)
    try:
        if workers == 1:
            outcomes = ((clip, run_one(clip, *job)) for clip in clips)
            for clip, outcome in outcomes:
                collect(clip, outcome, results, skipped, skip_unreadable)
                bar.update()
        else:
            # spawn: the caller may hold threads (JAX, BLAS) that a forked child would inherit locked
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = {pool.submit(run_one, clip, *job): clip for clip in clips}
                try:
                    for future in concurrent.futures.as_completed(futures):
                        collect(futures[future], future.result(), results, skipped, skip_unreadable)
                        bar.update()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    finally:
        bar.close()
    order = {c.name: i for i, c in enumerate(clips)}
    results.sort(key=lambda r: order[r[0].name])
    return results, skipped


def run_one(clip: SourceClip, *job) -> tuple[SourceClip, int, dict[str, float]] | AudioError:
    """`process_clip`, with an AudioError returned instead of raised (so the parent decides to skip or stop)."""
    try:
        return process_clip(clip, *job)
    except AudioError as err:
        return err


def collect(clip: SourceClip, outcome, results: list, skipped: list[str], skip_unreadable: bool) -> None:
    """Keep a finished clip's result, or skip (and list) an unreadable one, or stop the run with its error."""
    if isinstance(outcome, AudioError):
        if not skip_unreadable:
            raise AudioError(f"{outcome} (or pass --skip-unreadable to skip such inputs)")
        skipped.append(f"{clip.path}: {str(outcome).splitlines()[0]}")
    else:
        results.append(outcome)


def replace_folder(staging: Path, out: Path) -> None:
    """Move the finished `staging` folder to `out`, replacing an (empty, or earlier spoof) folder there."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
