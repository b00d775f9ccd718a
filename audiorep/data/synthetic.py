"""A procedural corpus of labelled sound events: the demo's and the tests' default data.

Twelve classes that a spectrogram model has to tell apart by *structure*, not by average colour:
up- vs down-chirps sweep the same band (same mean spectrum), AM tones, FM tones and tone pips share
carriers, slow and fast click trains are equally broadband, the three noise bands overlap, and harmonic
stacks differ only by vibrato. Every clip draws its pitch / band / rate, duration, onset and loudness at
random and sits in coloured background noise at a random SNR (a fraction at very low SNR), so a linear
probe on time-averaged log-mel features stays well below 100 % while a model that sees time-frequency
patterns can do much better.

Clips come in groups ("sources"): `clips_per_group` clips of one class share their main parameter (with
a little jitter) and their background-noise colour, like several recordings of the same animal. The
group id goes into `Record.group`, so group-disjoint protocols are meaningful on this corpus too.

    batch = generate(per_class=8, seed=0)                  # in memory: f32[96, 32000] + labels
    index = write_corpus("/tmp/syn", per_class=20, seed=0)  # out/<class>/<class>_<i>.wav + meta.csv

Generation is vectorised over clips in numpy and deterministic for a `SynthSpec` (per_class, seed,
seconds, sample_rate, classes, clips_per_group, low_snr_fraction). Sits beside `data/sources/`; the folder reader reads
what `write_corpus` writes, groups included (from meta.csv).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiorep.audio.io import check_sample_rate, save_audio
from audiorep.data.sources import read_dataset
from audiorep.paths import write_atomically

CLASSES = (
    "harmonic_vibrato", "harmonic_steady", "chirp_up", "chirp_down", "am_tone", "fm_tone", "tone_pips",
    "noise_low", "noise_mid", "noise_high", "clicks_slow", "clicks_fast",
)
DESCRIPTIONS = {
    "harmonic_vibrato": "harmonic stack, f0 110-440 Hz, 6-12 harmonics, vibrato 4.5-7 Hz of 2-5 % depth",
    "harmonic_steady": "the same harmonic stack with a steady pitch",
    "chirp_up": "exponential sweep upwards over 1.2-3 octaves starting at 300-1200 Hz",
    "chirp_down": "the same sweep downwards (same band and mean spectrum as chirp_up)",
    "am_tone": "sine carrier 400-2500 Hz, amplitude-modulated at 6-20 Hz, depth 0.5-1",
    "fm_tone": "sine carrier 400-2500 Hz, frequency-modulated at 6-20 Hz, deviation 2-6 % of the carrier",
    "tone_pips": "sine carrier 400-2500 Hz switched on and off at 2-5 Hz (beeps)",
    "noise_low": "band-pass noise burst, centre 200-900 Hz, 0.5-1.2 octaves wide",
    "noise_mid": "band-pass noise burst, centre 600-2500 Hz, 0.5-1.2 octaves wide",
    "noise_high": "band-pass noise burst, centre 1800-6500 Hz, 0.5-1.2 octaves wide",
    "clicks_slow": "click train at 3-8 clicks/s, each click a 1-4 ms decaying noise burst",
    "clicks_fast": "click train at 12-30 clicks/s, each click a 1-4 ms decaying noise burst",
}
CHUNK = 32  # clips generated at once (bounds memory: CHUNK x harmonics x samples float64)


@dataclass
class SynthBatch:
    """Generated clips in memory.

    Attributes:
      waves: f32[N, seconds * sample_rate], peak <= 0.99.
      labels: i32[N], indices into `classes`.
      groups: N group ids ('<class>-g<k>').
      params: N dicts of generation parameters (class-specific keys plus onset_s, event_s, level_db,
        snr_db, noise_alpha).
      classes: class names.
      sample_rate: Hz.
    """

    waves: np.ndarray
    labels: np.ndarray
    groups: list[str]
    params: list[dict]
    classes: tuple[str, ...]
    sample_rate: int


# ------------------------------------------------------------------------------------------ signal parts
def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _grouped(rng: np.random.Generator, draw: Callable[[int], np.ndarray], n: int, per_group: int,
             jitter: float) -> np.ndarray:
    """A value per group, repeated for its clips and jittered by +-jitter (relative). f64[n, 1]."""
    n_groups = -(-n // per_group)
    base = np.repeat(draw(n_groups), per_group)[:n]
    return (base * (1.0 + rng.uniform(-jitter, jitter, n)))[:, None]


def _envelope(tau: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Smoothstep attack/release event envelope. tau f64[n, T] (time since onset), length f64[n, 1]. f32[n, T]."""
    ramp = np.minimum(0.02, length / 4)
    x = np.clip(np.minimum(tau, length - tau) / ramp, 0.0, 1.0).astype(np.float32)
    return x * x * (3 - 2 * x)


def _shaped_noise(rng: np.random.Generator, n: int, samples: int, gain: Callable[[np.ndarray], np.ndarray],
                  rate: int) -> np.ndarray:
    """White noise shaped in the frequency domain by gain(freqs f64[F]) -> f64[n, F]; unit RMS. f32[n, T]."""
    spec = np.fft.rfft(rng.standard_normal((n, samples), dtype=np.float32), axis=-1)
    freqs = np.fft.rfftfreq(samples, 1.0 / rate)
    out = np.fft.irfft(spec * gain(freqs).astype(np.float32), n=samples, axis=-1)
    return out / (np.sqrt(np.mean(out**2, axis=-1, keepdims=True)) + 1e-12)


def _harmonic(rng, n, t, tau, length, per_group, rate, vibrato: bool):
    f0 = _grouped(rng, lambda g: _log_uniform(rng, 110, 440, g), n, per_group, 0.03)
    n_harm = rng.integers(6, 13, n)[:, None]
    tilt = rng.uniform(0.6, 1.4, n)[:, None]
    vib_hz = rng.uniform(4.5, 7.0, n)[:, None] if vibrato else np.zeros((n, 1))
    depth = rng.uniform(0.02, 0.05, n)[:, None] if vibrato else np.zeros((n, 1))
    ph0 = rng.uniform(0, 2 * np.pi, (n, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        wobble = np.where(vib_hz > 0, (np.cos(ph0) - np.cos(2 * np.pi * vib_hz * t + ph0)) / (2 * np.pi * vib_hz), 0)
    phase = 2 * np.pi * f0 * (t + depth * wobble) + ph0  # f64[n, T]: integral of f0 (1 + depth sin(...))
    # sum_k a_k sin(k phase) by the Chebyshev recurrence sin(k p) = 2 cos(p) sin((k-1) p) - sin((k-2) p):
    # two transcendental calls instead of one per harmonic.
    k = np.arange(1, 13)[None, :]
    amp = np.where((k <= n_harm) & (k * f0 * (1 + depth) < rate * 0.45), k ** -tilt, 0.0).astype(np.float32)
    two_cos = (2 * np.cos(phase)).astype(np.float32)
    prev, cur = np.zeros_like(two_cos), np.sin(phase).astype(np.float32)
    wave = amp[:, :1] * cur
    for h in range(1, 12):
        prev, cur = cur, two_cos * cur - prev
        wave += amp[:, h : h + 1] * cur
    params = dict(f0_hz=f0[:, 0], harmonics=n_harm[:, 0], tilt=tilt[:, 0], vibrato_hz=vib_hz[:, 0],
                  vibrato_depth=depth[:, 0])
    return wave, params


def _chirp(rng, n, t, tau, length, per_group, rate, up: bool):
    f_lo = _grouped(rng, lambda g: _log_uniform(rng, 300, 1200, g), n, per_group, 0.03)
    octaves = rng.uniform(1.2, 3.0, n)[:, None]
    octaves = np.minimum(octaves, np.log2(rate * 0.45 / f_lo))
    ratio = 2.0**octaves
    x = np.clip(tau / length, 0.0, 1.0)  # progress through the event
    # exponential sweep f(x) = f_lo * ratio**x (up) or f_lo * ratio**(1 - x) (down); phase = 2 pi integral f dt
    scale = 2 * np.pi * f_lo * length / np.log(ratio)
    phase = scale * (ratio**x - 1.0) if up else scale * ratio * (1.0 - ratio ** (-x))
    return np.sin(phase), dict(f_lo_hz=f_lo[:, 0], f_hi_hz=(f_lo * ratio)[:, 0])


def _carrier(rng, n, per_group):
    return _grouped(rng, lambda g: _log_uniform(rng, 400, 2500, g), n, per_group, 0.03)


def _am(rng, n, t, tau, length, per_group, rate):
    fc, fm = _carrier(rng, n, per_group), rng.uniform(6, 20, n)[:, None]
    m = rng.uniform(0.5, 1.0, n)[:, None]
    ph = rng.uniform(0, 2 * np.pi, (n, 2))
    wave = (1 + m * np.sin(2 * np.pi * fm * t + ph[:, :1])) * np.sin(2 * np.pi * fc * t + ph[:, 1:])
    return wave, dict(carrier_hz=fc[:, 0], mod_hz=fm[:, 0], mod_depth=m[:, 0])


def _fm(rng, n, t, tau, length, per_group, rate):
    fc, fm = _carrier(rng, n, per_group), rng.uniform(6, 20, n)[:, None]
    dev = fc * rng.uniform(0.02, 0.06, n)[:, None]
    ph = rng.uniform(0, 2 * np.pi, (n, 2))
    wave = np.sin(2 * np.pi * fc * t + (dev / fm) * np.sin(2 * np.pi * fm * t + ph[:, :1]) + ph[:, 1:])
    return wave, dict(carrier_hz=fc[:, 0], mod_hz=fm[:, 0], deviation_hz=dev[:, 0])


def _pips(rng, n, t, tau, length, per_group, rate):
    fc, pr = _carrier(rng, n, per_group), rng.uniform(2, 5, n)[:, None]
    gate = 0.5 * (1 + np.tanh(8 * np.sin(2 * np.pi * pr * tau)))
    wave = gate * np.sin(2 * np.pi * fc * t + rng.uniform(0, 2 * np.pi, (n, 1)))
    return wave, dict(carrier_hz=fc[:, 0], pip_hz=pr[:, 0])


def _band_noise(rng, n, t, tau, length, per_group, rate, lo: float, hi: float):
    centre = _grouped(rng, lambda g: _log_uniform(rng, lo, hi, g), n, per_group, 0.05)
    width = rng.uniform(0.5, 1.2, n)[:, None]  # octaves (Gaussian in log-frequency, +-width/2 at -6 dB)

    def gain(freqs):
        octs = np.log2(np.maximum(freqs, 1.0)[None, :] / centre)
        return np.exp(-0.5 * (octs / (width / 2.355)) ** 2)

    return _shaped_noise(rng, n, t.shape[-1], gain, rate), dict(centre_hz=centre[:, 0], width_oct=width[:, 0])


def _clicks(rng, n, t, tau, length, per_group, rate, lo: float, hi: float):
    per_s = _grouped(rng, lambda g: rng.uniform(lo, hi, g), n, per_group, 0.05)
    decay = rng.uniform(0.001, 0.004, n)[:, None]
    # a short event (under two click periods) gets its first click well inside, not on the silent onset ramp
    period = 1.0 / per_s
    start = np.where(length < period, length / 2, np.where(length < 2 * period, period / 2, 0.0))
    since = np.where(tau >= start, np.mod(tau - start, period), np.inf)
    wave = np.exp(-since / decay) * rng.standard_normal(tau.shape)
    return wave, dict(clicks_per_s=per_s[:, 0], click_decay_ms=1000 * decay[:, 0])


GENERATORS = {
    "harmonic_vibrato": lambda *a: _harmonic(*a, vibrato=True),
    "harmonic_steady": lambda *a: _harmonic(*a, vibrato=False),
    "chirp_up": lambda *a: _chirp(*a, up=True),
    "chirp_down": lambda *a: _chirp(*a, up=False),
    "am_tone": _am,
    "fm_tone": _fm,
    "tone_pips": _pips,
    "noise_low": lambda *a: _band_noise(*a, lo=200, hi=900),
    "noise_mid": lambda *a: _band_noise(*a, lo=600, hi=2500),
    "noise_high": lambda *a: _band_noise(*a, lo=1800, hi=6500),
    "clicks_slow": lambda *a: _clicks(*a, lo=3, hi=8),
    "clicks_fast": lambda *a: _clicks(*a, lo=12, hi=30),
}


def _generate_chunk(rng: np.random.Generator, cls: str, n: int, seconds: float, rate: int, per_group: int,
                    low_snr_fraction: float) -> tuple[np.ndarray, list[dict]]:
    """n clips of one class. -> (f32[n, T], params)."""
    samples = int(round(seconds * rate))
    t = (np.arange(samples) / rate)[None, :]
    length = seconds * rng.uniform(0.25, 0.8, n)[:, None]
    onset = rng.uniform(0, 1, n)[:, None] * (seconds - length)
    tau = t - onset
    raw, params = GENERATORS[cls](rng, n, t, tau, length, per_group, rate)
    env = _envelope(tau, length)
    event = raw * env
    inside = env > 0.5
    rms = np.sqrt(np.sum(event**2 * inside, -1, keepdims=True) / np.maximum(inside.sum(-1, keepdims=True), 1))
    level_db = rng.uniform(-32, -12, n)[:, None]
    event = event / (rms + 1e-12) * 10 ** (level_db / 20)
    alpha = _grouped(rng, lambda g: rng.uniform(0.0, 2.0, g), n, per_group, 0.0)
    noise = _shaped_noise(rng, n, samples, lambda f: np.maximum(f, 20.0)[None, :] ** (-alpha / 2), rate)
    low = rng.uniform(0, 1, n) < low_snr_fraction
    snr_db = np.where(low, rng.uniform(-6, 3, n), rng.uniform(3, 30, n))[:, None]
    wave = event + noise * 10 ** ((level_db - snr_db) / 20)
    peak = np.max(np.abs(wave), -1, keepdims=True)
    gain = np.minimum(1.0, 0.99 / np.maximum(peak, 1e-12))
    wave = (wave * gain).astype(np.float32)
    common = dict(onset_s=onset[:, 0], event_s=length[:, 0], level_db=(level_db + 20 * np.log10(gain))[:, 0],
                  snr_db=snr_db[:, 0], noise_alpha=alpha[:, 0])
    rows = []
    for i in range(n):
        rows.append({k: round(float(np.asarray(v)[i]), 4) for k, v in {**params, **common}.items()})
    return wave, rows


# ------------------------------------------------------------------------------------------ public API
@dataclass(frozen=True)
class SynthSpec:
    """What a corpus is a function of: `generate` and `write_corpus` take these fields as arguments.

    Attributes:
      per_class: clips per class.
      seed: the whole corpus is a function of the spec.
      seconds: clip length (events last 25-80 % of it).
      sample_rate: Hz (>= 8000 keeps every class below Nyquist).
      classes: a subset of `CLASSES` (default all twelve).
      clips_per_group: clips that share a source (main parameter and noise colour).
      low_snr_fraction: share of clips whose SNR is drawn from -6..3 dB instead of 3..30 dB.
    """

    per_class: int
    seed: int = 0
    seconds: float = 2.0
    sample_rate: int = 16000
    classes: tuple[str, ...] | None = None
    clips_per_group: int = 4
    low_snr_fraction: float = 0.15

    def __post_init__(self):
        rate = check_sample_rate(self.sample_rate)
        if rate < 8000:
            raise ValueError(f"sample_rate {rate} Hz is too low for the synthetic classes; use >= 8000 Hz.")
        if int(self.per_class) < 1:
            raise ValueError(f"per_class must be >= 1, got {self.per_class}.")
        if not 0.1 <= self.seconds <= 60:
            raise ValueError(f"seconds must be within 0.1..60, got {self.seconds}.")
        if int(self.clips_per_group) < 1 or not 0.0 <= self.low_snr_fraction <= 1.0:
            raise ValueError("clips_per_group must be >= 1 and low_snr_fraction within 0..1.")
        classes = tuple(CLASSES if self.classes is None else self.classes)
        unknown = [c for c in classes if c not in GENERATORS]
        if unknown:
            raise ValueError(f"unknown synthetic class(es) {unknown}; classes are {list(CLASSES)}.")
        for name, value in (("sample_rate", rate), ("per_class", int(self.per_class)), ("classes", classes),
                            ("clips_per_group", int(self.clips_per_group))):
            object.__setattr__(self, name, value)


def _chunks(spec: SynthSpec) -> Iterator[tuple[int, int, np.ndarray, list[str], list[dict]]]:
    """The corpus in chunks of whole groups, class after class.  -> (class index in spec.classes, index of
    the chunk's first clip in its class, f32[n, round(seconds * sample_rate)], n group ids, n parameter dicts)."""
    per_group = spec.clips_per_group
    chunk = max(per_group, CHUNK // per_group * per_group)  # chunks hold whole groups
    for ci, cls in enumerate(spec.classes):
        ci_global = CLASSES.index(cls)
        for start in range(0, spec.per_class, chunk):
            n = min(chunk, spec.per_class - start)
            rng = np.random.default_rng([int(spec.seed), ci_global, start])
            waves, params = _generate_chunk(rng, cls, n, spec.seconds, spec.sample_rate, per_group,
                                            spec.low_snr_fraction)
            yield ci, start, waves, [f"{cls}-g{(start + i) // per_group:04d}" for i in range(n)], params


def _progress_bar(enabled: bool, total: int, desc: str):
    from tqdm.auto import tqdm  # ~40 ms; imported on use, `audiorep --help` stays fast

    return tqdm(total=total, desc=desc, unit="clip", disable=not enabled)


def generate(per_class: int, seed: int = 0, *, progress: bool = False, **options) -> SynthBatch:
    """Generate the corpus in memory, class after class (clip order: class-major).

    Args:
      per_class, seed, **options: the `SynthSpec` (options: seconds, sample_rate, classes, clips_per_group,
        low_snr_fraction).
      progress: show a progress bar.

    Returns:
      SynthBatch with waves f32[len(classes) * per_class, round(seconds * sample_rate)].
    """
    spec = SynthSpec(per_class, seed, **options)
    waves, labels, groups, params = [], [], [], []
    with _progress_bar(progress, spec.per_class * len(spec.classes), "generating") as bar:
        for ci, _, w, g, p in _chunks(spec):
            waves.append(w)
            labels.extend([ci] * len(w))
            groups.extend(g)
            params.extend(p)
            bar.update(len(w))
    return SynthBatch(np.concatenate(waves), np.asarray(labels, np.int32), groups, params, spec.classes,
                      spec.sample_rate)


def write_corpus(out_dir: str | os.PathLike, per_class: int, seed: int = 0, *, overwrite: bool = False,
                 progress: bool = False, **options):
    """Write the corpus as 16-bit wav files in the folder layout and return its `DatasetIndex`.

    Writes out_dir/<class>/<class>_<i>.wav, out_dir/meta.csv (path, label, class_index, group, seed and
    every generation parameter) and out_dir/README.md (what each class is). Every file is written
    atomically; meta.csv last, so a folder with meta.csv is complete. `per_class`, `seed` and `**options`
    are the `SynthSpec`, as for `generate`; the spec is checked before anything in out_dir changes.

    Raises:
      ValueError: the spec is invalid (nothing is written).
      FileExistsError: out_dir is not empty and overwrite is False.
    """
    spec = SynthSpec(per_class, seed, **options)
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (CLI: --overwrite) or another folder.")
        if not (out / "meta.csv").is_file():
            raise FileExistsError(f"{out} is not empty and was not written by write_corpus (no meta.csv); "
                                  "refusing to delete it. Choose another folder.")
        shutil.rmtree(out)
    (out / "meta.csv").parent.mkdir(parents=True, exist_ok=True)
    width = len(str(spec.per_class - 1))
    rows = []
    with _progress_bar(progress, spec.per_class * len(spec.classes), "synth corpus") as bar:
        for ci, start, waves, groups, params in _chunks(spec):  # one chunk at a time bounds memory
            cls = spec.classes[ci]
            for i, (wave, group, p) in enumerate(zip(waves, groups, params), start):
                rel = f"{cls}/{cls}_{i:0{width}d}.wav"
                save_audio(out / rel, wave, spec.sample_rate, subtype="PCM_16")
                rows.append({"path": rel, "label": cls, "class_index": CLASSES.index(cls), "group": group,
                             "seed": seed, "params": json.dumps(p, sort_keys=True)})
                bar.update(1)
    _write_readme(out / "README.md", spec)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["path", "label", "class_index", "group", "seed", "params"])
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(out / "meta.csv", lambda fh: fh.write(table.getvalue().encode()))
    return read_dataset("folder", out)


def _write_readme(path: Path, spec: SynthSpec) -> None:
    lines = [
        "# audiorep synthetic sound-event corpus",
        "",
        f"{len(spec.classes)} classes x {spec.per_class} clips, {spec.seconds:g} s at {spec.sample_rate} Hz "
        f"(16-bit wav), seed {spec.seed}.",
        f"Groups of {spec.clips_per_group} clips share a source (main parameter +-3-5 %, background-noise colour).",
        f"Background noise 1/f^alpha (alpha 0-2) at SNR 3-30 dB; {spec.low_snr_fraction:.0%} of clips at -6-3 dB.",
        "Events last 25-80 % of the clip at a random onset, RMS level -32..-12 dBFS.",
        "Regenerate with: audiorep datasets synth --out DIR "
        f"--per-class {spec.per_class} --seed {spec.seed} --seconds {spec.seconds:g}",
        "",
        "| class | what it is |",
        "|---|---|",
        *[f"| {c} | {DESCRIPTIONS[c]} |" for c in spec.classes],
        "",
        "meta.csv: path, label, class_index, group, seed, params (JSON with every drawn parameter).",
        "",
    ]
    write_atomically(path, lambda fh: fh.write("\n".join(lines).encode()))
