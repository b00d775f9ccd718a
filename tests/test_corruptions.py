"""audio/corruptions.py: every corruption is seeded, keeps the documented length and rate, is the identity at
severity 0, survives silence and 10-sample clips, and gets monotonically worse in a measured quantity."""

import numpy as np
import pytest
import soundfile as sf

from audiorep.audio import corruptions as C
from audiorep.errors import AudiorepError

RATE = 16000
LENGTH_CHANGING = {"time_stretch", "speed"}


def _tone_plus_noise(n=RATE // 2, seed=0):
    t = np.arange(n) / RATE
    noise = np.random.default_rng(seed).standard_normal(n)
    return (0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 2500 * t) + 0.05 * noise).astype(np.float32)


def _snr_db(clean, corrupted):
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((corrupted - clean).astype(np.float64) ** 2))


def _centroid_hz(x):
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.shape[0], 1 / RATE)
    return float((power * freqs).sum() / power.sum())


def _rolloff_hz(x, fraction=0.99):
    power = np.abs(np.fft.rfft(x)) ** 2
    return float(np.fft.rfftfreq(x.shape[0], 1 / RATE)[np.searchsorted(np.cumsum(power) / power.sum(), fraction)])


def _peak_hz(x):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.shape[0]), n=1 << 19))
    return float(np.argmax(spectrum) * RATE / (1 << 19))


def _strictly_decreasing(values):
    return all(a > b for a, b in zip(values, values[1:]))


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    folder = tmp_path_factory.mktemp("background")
    t = np.arange(RATE) / RATE
    sf.write(folder / "hum.wav", (0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), RATE)
    pool = [(0.3 * np.sin(2 * np.pi * f * t[: RATE // 3])).astype(np.float32) for f in (300, 600)]
    return C.CorruptionContext(background_dir=folder, babble_pool=pool)


def test_there_are_at_least_16_corruptions_in_three_families_with_5_levels_each():
    assert set(C.FAMILIES) == {"noise", "modification", "compression"}
    assert len(C.names()) == len(set(C.names())) >= 16
    for family, members in C.FAMILIES.items():
        for name in members:
            spec = C.corruption(name)
            assert spec.family == family and len(spec.levels) == 5 and spec.unit and spec.doc


@pytest.mark.parametrize("name", C.names())
def test_corruption_is_deterministic_for_a_seed_and_keeps_rate_dtype_and_documented_length(name, context):
    x = _tone_plus_noise()
    first = C.corrupt(x, RATE, name, 3, seed=5, context=context)
    again = C.corrupt(x, RATE, name, 3, seed=5, context=context)
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.float32 and first.ndim == 1
    factor = C.corruption(name).level(3)
    assert first.shape[0] == (round(x.shape[0] / factor) if name in LENGTH_CHANGING else x.shape[0])
    assert not np.array_equal(first, x)


@pytest.mark.parametrize("name", C.names())
def test_severity_zero_is_the_identity(name, context):
    x = _tone_plus_noise()
    np.testing.assert_array_equal(C.corrupt(x, RATE, name, 0, seed=1, context=context), x)


@pytest.mark.parametrize("name", C.names())
def test_silence_and_a_10_sample_clip_give_finite_audio(name, context):
    # reverb at severity 5 spends 4 s simulating its room once, whatever the clip; 2 shows the convolution is finite
    for clip in (np.zeros(RATE // 4, np.float32), _tone_plus_noise()[:10]):
        for severity in (1, 2 if name == "reverb" else 5):
            out = C.corrupt(clip, RATE, name, severity, context=context)
            assert np.isfinite(out).all() and out.dtype == np.float32
            n = clip.shape[0]
            assert out.shape[0] == (round(n / C.corruption(name).level(severity)) if name in LENGTH_CHANGING else n)


def test_noise_seeds_give_different_draws():
    x = _tone_plus_noise()
    draws = [C.corrupt(x, RATE, "white_noise", 2, seed=seed) for seed in (0, 1)]
    assert not np.array_equal(*draws)


@pytest.mark.parametrize("name", ["white_noise", "pink_noise", "brown_noise", "background_noise", "babble"])
def test_noise_is_mixed_at_the_level_snr(name, context):
    x = _tone_plus_noise()
    measured = [_snr_db(x, C.corrupt(x, RATE, name, s, seed=2, context=context)) for s in C.SEVERITIES]
    np.testing.assert_allclose(measured, C.corruption(name).levels, atol=0.01)


def test_coloured_noise_gets_darker_from_white_to_pink_to_brown():
    x = np.zeros(RATE, np.float32)
    x[0] = 1.0  # power > 0 so noise is added; the residual is then the noise itself
    colours = ("white_noise", "pink_noise", "brown_noise")
    centroids = [_centroid_hz(C.corrupt(x, RATE, n, 1, seed=3) - x) for n in colours]
    assert _strictly_decreasing(centroids)


def test_background_noise_comes_from_the_folder(context):
    x = _tone_plus_noise()
    residual = C.corrupt(x, RATE, "background_noise", 3, context=context) - x
    assert abs(_peak_hz(residual) - 1000) < 2


def test_babble_is_made_of_the_pool_clips(context):
    x = _tone_plus_noise()
    residual = C.corrupt(x, RATE, "babble", 3, context=context) - x
    spectrum = np.abs(np.fft.rfft(residual))
    freqs = np.fft.rfftfreq(residual.shape[0], 1 / RATE)
    top_two = sorted(freqs[np.argsort(spectrum)[-2:]])
    np.testing.assert_allclose(top_two, [300, 600], atol=3)


def test_babble_reads_pool_paths_and_skips_the_clip_itself(tmp_path):
    t = np.arange(RATE // 2) / RATE
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tmp_path / "talker.wav", (0.3 * np.sin(2 * np.pi * 700 * t)).astype(np.float32), RATE)
    y = C.corrupt(x, RATE, "babble", 3, context={"babble_pool": [x, str(tmp_path / "talker.wav")]})
    assert abs(_peak_hz(y - x) - 700) < 2
    assert _snr_db(x, y) == pytest.approx(C.corruption("babble").level(3), abs=0.01)


@pytest.mark.parametrize("name", ["background_noise", "babble"])
def test_missing_context_is_a_clear_error(name):
    with pytest.raises(C.CorruptionError, match="CorruptionContext"):
        C.corrupt(_tone_plus_noise(), RATE, name, 1)


def test_background_folder_without_audio_is_a_clear_error(tmp_path):
    with pytest.raises(C.CorruptionError, match="no audio files"):
        C.corrupt(_tone_plus_noise(), RATE, "background_noise", 1, context={"background_dir": tmp_path})


def test_gain_changes_the_level_by_the_given_decibels():
    x = _tone_plus_noise()
    for severity, db in zip(C.SEVERITIES, C.corruption("gain").levels):
        y = C.corrupt(x, RATE, "gain", severity)
        assert 10 * np.log10(np.mean(y**2) / np.mean(x**2)) == pytest.approx(db, abs=1e-3)


def test_pitch_shift_measured_ratio_follows_the_semitones():
    t = np.arange(RATE) / RATE
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    ratios = [_peak_hz(C.corrupt(x, RATE, "pitch_shift", s)[RATE // 4:]) / 440 for s in C.SEVERITIES]
    np.testing.assert_allclose(ratios, 2 ** (np.array(C.corruption("pitch_shift").levels) / 12), rtol=0.005)


def test_time_stretch_shortens_by_the_rate_and_keeps_the_pitch():
    t = np.arange(RATE) / RATE
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for severity in (1, 5):
        y = C.corrupt(x, RATE, "time_stretch", severity)
        assert y.shape[0] == round(RATE / C.corruption("time_stretch").level(severity))
        assert _peak_hz(y[RATE // 8: -RATE // 8]) == pytest.approx(440, rel=0.005)


def test_speed_raises_the_pitch_by_the_factor():
    t = np.arange(RATE) / RATE
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    ratios = [_peak_hz(C.corrupt(x, RATE, "speed", s)) / 440 for s in C.SEVERITIES]
    np.testing.assert_allclose(ratios, C.corruption("speed").levels, rtol=0.002)


def test_low_pass_and_smoothing_lower_the_centroid_and_high_pass_raises_it():
    noise = np.random.default_rng(0).standard_normal(RATE // 2).astype(np.float32) * 0.1
    for name, sign in (("low_pass", 1), ("smoothing", 1), ("high_pass", -1)):
        centroids = [_centroid_hz(C.corrupt(noise, RATE, name, s)) for s in (0, *C.SEVERITIES)]
        assert _strictly_decreasing([sign * c for c in centroids]), (name, centroids)


def test_echo_correlation_at_the_delay_grows_with_the_volume():
    noise = np.random.default_rng(0).standard_normal(RATE // 2).astype(np.float32) * 0.1
    delay = round(C.ECHO_DELAY_S * RATE)
    corr = [np.corrcoef(y[delay:], y[:-delay])[0, 1] for y in (C.corrupt(noise, RATE, "echo", s) for s in C.SEVERITIES)]
    assert _strictly_decreasing([-c for c in corr]) and corr[0] > 0.05


def _t20_rt60(response):
    """RT60 from the Schroeder backward-integrated decay between -5 and -25 dB, times 3."""
    energy = np.cumsum(response[::-1].astype(np.float64) ** 2)[::-1]
    decay_db = 10 * np.log10(energy / energy[0] + 1e-30)
    start, stop = np.argmax(decay_db <= -5), np.argmax(decay_db <= -25)
    return 3 * (stop - start) / RATE


def test_reverb_measured_rt60_follows_the_level():
    impulse = np.zeros(2 * RATE, np.float32)
    impulse[0] = 1.0
    levels = C.corruption("reverb").levels
    for severity in (1, 2, 3):
        response = C.corrupt(impulse, RATE, "reverb", severity)
        assert response[0] == pytest.approx(1.0)  # the direct path stays at t=0 with gain 1
        assert _t20_rt60(response) == pytest.approx(levels[severity - 1], rel=0.3)


def test_clipping_caps_at_the_threshold_below_the_peak():
    x = _tone_plus_noise()
    peak = np.abs(x).max()
    for severity, db in zip(C.SEVERITIES, C.corruption("clipping").levels):
        assert np.abs(C.corrupt(x, RATE, "clipping", severity)).max() == pytest.approx(peak * 10 ** (db / 20), rel=1e-5)


def test_quantization_uses_2_to_the_bits_levels():
    x = np.linspace(-1, 1, RATE, dtype=np.float32)
    for severity, bits in zip(C.SEVERITIES, C.corruption("quantization").levels):
        assert len(np.unique(C.corrupt(x, RATE, "quantization", severity))) == 2 ** int(bits) + 1


@pytest.mark.parametrize("name", ["mp3", "opus", "gsm", "clipping", "quantization", "white_noise"])
def test_measured_snr_falls_with_severity(name, context):
    x = _tone_plus_noise()
    assert _strictly_decreasing([_snr_db(x, C.corrupt(x, RATE, name, s, context=context)) for s in C.SEVERITIES])


def test_mu_law_snr_in_the_telephone_band_falls_with_the_bits():
    x = _tone_plus_noise()
    band = C.corrupt(x, RATE, "resample", 2)  # 8 kHz: the telephone band without quantisation
    assert C.corruption("resample").level(2) == C.TELEPHONE_RATE
    assert _strictly_decreasing([_snr_db(band, C.corrupt(x, RATE, "mu_law", s)) for s in C.SEVERITIES])


def test_resample_bandwidth_falls_with_the_lower_rate():
    noise = np.random.default_rng(0).standard_normal(RATE // 2).astype(np.float32) * 0.1
    rolloffs = [_rolloff_hz(C.corrupt(noise, RATE, "resample", s)) for s in C.SEVERITIES]
    for rolloff, low in zip(rolloffs, C.corruption("resample").levels):
        assert rolloff <= low / 2
    assert _strictly_decreasing(rolloffs)


def test_mp3_keeps_the_timing_of_an_impulse():
    x = np.zeros(RATE // 2, np.float32)
    x[4000] = 0.9
    for severity in (1, 5):
        assert abs(int(np.argmax(np.abs(C.corrupt(x, RATE, "mp3", severity)))) - 4000) <= 8


def test_corruptions_work_at_other_rates():
    for rate in (8000, 22050, 44100):
        x = np.random.default_rng(0).standard_normal(rate // 4).astype(np.float32) * 0.1
        for name in ("mp3", "opus", "gsm", "mu_law", "low_pass", "high_pass", "resample"):
            y = C.corrupt(x, rate, name, 3)
            assert y.shape == x.shape and np.isfinite(y).all()


def test_select_takes_all_families_and_names_mixed_without_duplicates():
    assert C.select("all") == list(C.names())
    assert C.select("compression") == list(C.FAMILIES["compression"])
    assert C.select("mp3, noise,mp3") == ["mp3", *C.FAMILIES["noise"]]


@pytest.mark.parametrize("spec", ["mp4", "", "noise,loud"])
def test_select_rejects_unknown_names_listing_the_known_ones(spec):
    with pytest.raises(AudiorepError, match="white_noise|no corruptions"):
        C.select(spec)


@pytest.mark.parametrize("severity", [-1, 6, 2.5, True])
def test_severity_outside_0_to_5_is_refused(severity):
    with pytest.raises(C.CorruptionError, match="0..5"):
        C.corrupt(_tone_plus_noise(), RATE, "gain", severity)


def test_stereo_or_integer_audio_is_refused():
    with pytest.raises(C.CorruptionError, match="mono"):
        C.corrupt(np.zeros((2, 100), np.float32), RATE, "gain", 1)
    with pytest.raises(C.CorruptionError, match="float"):
        C.corrupt(np.zeros(100, np.int16), RATE, "gain", 1)


def test_corruption_key_is_stable_and_changes_with_name_severity_seed_and_version(monkeypatch):
    key = C.corruption_key("mp3", 3, 0)
    assert key == C.corruption_key("mp3", 3, 0) and key.startswith("mp3-s3-seed0-")
    others = {C.corruption_key("opus", 3, 0), C.corruption_key("mp3", 4, 0), C.corruption_key("mp3", 3, 1)}
    assert key not in others and len(others) == 3
    monkeypatch.setattr(C, "CORRUPTIONS_VERSION", C.CORRUPTIONS_VERSION + 1)
    assert C.corruption_key("mp3", 3, 0) != key
