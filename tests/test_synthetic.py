"""The synthetic sound-event corpus: determinism, layout, class structure, and hardness for a linear probe."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from audiorep.data.sources import read_dataset
from audiorep.data.synthetic import CLASSES, generate, write_corpus


def stft_power(waves: np.ndarray, n_fft: int = 512, hop: int = 160) -> np.ndarray:
    """f32[B, n] -> f64[B, frames, n_fft // 2 + 1] power spectrogram (Hann window)."""
    frames = 1 + (waves.shape[1] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    return np.abs(np.fft.rfft(waves[:, idx] * np.hanning(n_fft), axis=-1)) ** 2


def mel_filterbank(n_mels: int, n_fft: int, rate: int) -> np.ndarray:
    """Triangular HTK-mel filters, f64[n_mels, n_fft // 2 + 1]."""
    to_mel = lambda f: 2595 * np.log10(1 + f / 700)
    edges = 700 * (10 ** (np.linspace(0, to_mel(rate / 2), n_mels + 2) / 2595) - 1)
    freqs = np.fft.rfftfreq(n_fft, 1 / rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))


def test_generation_is_deterministic_for_a_seed():
    a = generate(3, seed=7, seconds=0.5, classes=("chirp_up", "noise_low"))
    b = generate(3, seed=7, seconds=0.5, classes=("chirp_up", "noise_low"))
    c = generate(3, seed=8, seconds=0.5, classes=("chirp_up", "noise_low"))
    np.testing.assert_array_equal(a.waves, b.waves)
    assert a.params == b.params
    assert not np.allclose(a.waves, c.waves)


def test_batch_shapes_labels_and_groups():
    batch = generate(5, seed=0, seconds=0.5, sample_rate=16000, clips_per_group=2)
    assert batch.waves.shape == (5 * len(CLASSES), 8000) and batch.waves.dtype == np.float32
    assert len(CLASSES) >= 10 and batch.classes == CLASSES
    np.testing.assert_array_equal(batch.labels, np.repeat(np.arange(len(CLASSES)), 5))
    assert np.abs(batch.waves).max() <= 0.99 + 1e-6 and np.isfinite(batch.waves).all()
    assert batch.groups[:5] == ["harmonic_vibrato-g0000"] * 2 + ["harmonic_vibrato-g0001"] * 2 + \
        ["harmonic_vibrato-g0002"]
    assert {"onset_s", "event_s", "level_db", "snr_db", "noise_alpha"} <= set(batch.params[0])


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), cls=st.sampled_from(CLASSES), per_class=st.integers(1, 5),
       seconds=st.floats(0.1, 0.6), rate=st.sampled_from([8000, 16000, 22050]), per_group=st.integers(1, 3))
def test_any_draw_is_finite_in_range_and_the_right_shape(seed, cls, per_class, seconds, rate, per_group):
    batch = generate(per_class, seed, seconds=seconds, sample_rate=rate, classes=(cls,), clips_per_group=per_group)
    assert batch.waves.shape == (per_class, int(round(seconds * rate)))
    assert np.isfinite(batch.waves).all() and np.abs(batch.waves).max() <= 0.99 + 1e-6
    assert (np.abs(batch.waves).max(axis=1) > 1e-4).all()  # never silent
    assert all(-60 < p["level_db"] <= -12 + 1e-3 for p in batch.params)


def test_clips_of_a_group_share_their_source_parameter():
    batch = generate(8, seed=3, seconds=0.5, classes=("harmonic_steady",), clips_per_group=4)
    f0 = np.array([p["f0_hz"] for p in batch.params]).reshape(2, 4)
    assert (f0.max(1) / f0.min(1) < 1.07).all()  # +-3 % jitter within a group


def test_up_and_down_chirps_sweep_the_same_band_in_opposite_directions():
    batch = generate(6, seed=1, seconds=1.0, classes=("chirp_up", "chirp_down"), low_snr_fraction=0.0)
    power = stft_power(batch.waves)
    freqs = np.fft.rfftfreq(512, 1 / 16000)
    for i, p in enumerate(batch.params):
        frames = np.arange(power.shape[1]) * 160 / 16000
        inside = (frames > p["onset_s"] + 0.1 * p["event_s"]) & (frames + 0.032 < p["onset_s"] + 0.9 * p["event_s"])
        peak = freqs[1:][power[i, inside, 1:].argmax(-1)]
        slope = np.polyfit(frames[inside], np.log2(peak), 1)[0]
        assert (slope > 0) == (batch.labels[i] == 0), (i, slope)
    up, down = batch.params[:6], batch.params[6:]
    assert [p["f_lo_hz"] for p in up] != [p["f_lo_hz"] for p in down]  # independent draws, same ranges


def test_vibrato_moves_the_pitch_and_steady_does_not():
    batch = generate(4, seed=2, seconds=1.0, classes=("harmonic_vibrato", "harmonic_steady"), low_snr_fraction=0.0)
    n_fft = 4096
    power = stft_power(batch.waves, n_fft=n_fft, hop=400)
    freqs = np.fft.rfftfreq(n_fft, 1 / 16000)
    spread = []
    for i, p in enumerate(batch.params):
        frames = (np.arange(power.shape[1]) * 400 + n_fft / 2) / 16000
        inside = np.abs(frames - (p["onset_s"] + p["event_s"] / 2)) < p["event_s"] / 2 - n_fft / 32000
        band = (freqs > 3.7 * p["f0_hz"]) & (freqs < 4.3 * p["f0_hz"])  # the 4th harmonic
        track = freqs[band][power[i][inside][:, band].argmax(-1)]
        spread.append(np.std(track) / p["f0_hz"])
    assert min(spread[:4]) > max(spread[4:])


def test_write_corpus_layout_meta_and_folder_reader(tmp_path):
    out = tmp_path / "syn"
    index = write_corpus(out, per_class=3, seed=5, seconds=0.5, classes=("am_tone", "fm_tone"), clips_per_group=2)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == [
        f"{c}/{c}_{i}.wav" for c in ("am_tone", "fm_tone") for i in range(3)]
    info = sf.info(str(out / "am_tone" / "am_tone_0.wav"))
    assert (info.samplerate, info.frames, info.subtype) == (16000, 8000, "PCM_16")
    with open(out / "meta.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and rows[0]["group"] == "am_tone-g0000" and rows[2]["group"] == "am_tone-g0001"
    assert "carrier_hz" in json.loads(rows[0]["params"])
    assert "am_tone" in (out / "README.md").read_text()
    assert index.classes == ("am_tone", "fm_tone") and len(index) == 6
    assert {r.group for r in index.records} == {r["group"] for r in rows}
    again = read_dataset("folder", out)
    assert [(r.path, r.labels, r.group) for r in again.records] == [(r.path, r.labels, r.group) for r in index.records]


def test_written_audio_matches_the_in_memory_generation(tmp_path):
    write_corpus(tmp_path, per_class=2, seed=11, seconds=0.3, classes=("noise_high",))
    batch = generate(2, seed=11, seconds=0.3, classes=("noise_high",))
    wave, _ = sf.read(str(tmp_path / "noise_high" / "noise_high_1.wav"), dtype="float32")
    np.testing.assert_allclose(wave, batch.waves[1], atol=1 / 32768 + 1e-6)  # 16-bit quantisation


def test_write_corpus_refuses_to_overwrite_unless_asked(tmp_path):
    write_corpus(tmp_path, per_class=1, seconds=0.2, classes=("clicks_fast",))
    with pytest.raises(FileExistsError, match="overwrite"):
        write_corpus(tmp_path, per_class=1, seconds=0.2, classes=("clicks_fast",))
    index = write_corpus(tmp_path, per_class=2, seconds=0.2, classes=("clicks_slow",), overwrite=True)
    assert index.classes == ("clicks_slow",) and len(index) == 2


def test_write_corpus_never_deletes_a_foreign_folder(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="refusing"):
        write_corpus(tmp_path, per_class=1, seconds=0.2, overwrite=True)
    assert (tmp_path / "thesis.tex").exists()


def test_write_corpus_with_bad_arguments_keeps_the_corpus_it_would_replace(tmp_path):
    write_corpus(tmp_path, per_class=1, seconds=0.2, classes=("clicks_fast",))
    before = (tmp_path / "meta.csv").read_text()
    with pytest.raises(ValueError, match="per_class"):
        write_corpus(tmp_path, per_class=0, seconds=0.2, overwrite=True)
    assert (tmp_path / "meta.csv").read_text() == before and (tmp_path / "clicks_fast" / "clicks_fast_0.wav").is_file()


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="unknown synthetic class"):
        generate(1, classes=("dubstep",))
    with pytest.raises(ValueError, match="per_class"):
        generate(0)
    with pytest.raises(ValueError, match="8000"):
        generate(1, sample_rate=4000)


@pytest.mark.slow
def test_log_mel_linear_probe_is_above_chance_but_far_from_perfect():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    batch = generate(24, seed=0, seconds=1.0)
    logmel = np.log(stft_power(batch.waves, hop=320) @ mel_filterbank(48, 512, 16000).T + 1e-10)
    features = logmel.mean(axis=1)  # time-averaged log-mel, f64[N, 48]
    group_id = np.array([int(g.rsplit("-g", 1)[1]) for g in batch.groups])
    train = group_id % 4 != 0  # group-disjoint split: 6 groups to train, 2 to test per class
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(features[train], batch.labels[train])
    acc = probe.score(features[~train], batch.labels[~train])
    chance = 1 / len(CLASSES)
    assert acc > 3 * chance, acc
    assert acc < 0.85, acc
