import warnings

import numpy as np
import pytest
import soundfile as sf
from conftest import tone
from hypothesis import given, settings
from hypothesis import strategies as st

from audiorep.audio.io import (
    AudioError,
    TruncatedAudioWarning,
    check_sample_rate,
    load_audio,
    pad_batch,
    resample,
    save_audio,
    wav_declared_frames,
)


@pytest.mark.parametrize("fmt,subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"),
                                          ("opus", "OPUS"), ("mp3", "MPEG_LAYER_III")])
def test_every_soundfile_format_reads_as_mono_float32(tmp_path, fmt, subtype):
    rate = 48000 if fmt == "opus" else 16000
    path = tmp_path / f"a.{fmt}"
    container = "OGG" if fmt == "opus" else fmt.upper()
    sf.write(path, np.stack([tone(440, 1.0, rate), tone(440, 1.0, rate)], 1), rate, subtype=subtype, format=container)
    x, sr = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1 and sr == rate
    assert abs(len(x) - rate) < 0.1 * rate
    assert np.abs(x).max() <= 1.0 and np.abs(x).max() > 0.2


def test_stereo_is_downmixed_by_averaging(tmp_path):
    left, right = tone(300), tone(500)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    x, _ = load_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(x, (left + right) / 2, atol=1e-6)
    both, _ = load_audio(tmp_path / "s.wav", mono=False)
    assert both.shape == (2, 16000)


def test_resampling_on_load_changes_length_and_keeps_pitch(tmp_path):
    sf.write(tmp_path / "t.wav", tone(1000, 1.0, 44100), 44100)
    x, sr = load_audio(tmp_path / "t.wav", sample_rate=16000)
    assert sr == 16000 and len(x) == 16000
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) - 1000) <= 1  # 1 Hz bins


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: no such file"):
        load_audio(tmp_path / "nope.wav")


def test_not_audio_error_names_the_file_and_fix(tmp_path):
    (tmp_path / "fake.wav").write_text("this is not audio")
    with pytest.raises(AudioError, match=r"fake\.wav: cannot decode audio .*truncated or not audio"):
        load_audio(tmp_path / "fake.wav")


def test_truncated_file_is_an_audio_error(tmp_path):
    sf.write(tmp_path / "t.flac", tone(), 16000)
    data = (tmp_path / "t.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[:40])
    with pytest.raises(AudioError, match=r"cut\.flac"):
        load_audio(tmp_path / "cut.flac")


@pytest.mark.parametrize("subtype,channels", [("PCM_16", 1), ("FLOAT", 2), ("PCM_24", 2)])
def test_wav_cut_mid_data_warns_with_declared_and_found_duration(tmp_path, subtype, channels):
    audio = np.stack([tone(440, 1.0), tone(660, 1.0)], 1)[:, :channels]
    sf.write(tmp_path / "full.wav", audio, 16000, subtype=subtype)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) * 4 // 10])
    with pytest.warns(TruncatedAudioWarning) as caught:
        x, _ = load_audio(tmp_path / "cut.wav", mono=False)
    found = x.shape[-1]
    assert 0.3 * 16000 < found < 0.4 * 16000
    msg = str(caught[0].message)
    assert "cut.wav is truncated" in msg and "declares 16000 frames (1.000 s)" in msg
    assert f"holds {found} ({found / 16000:.3f} s)" in msg
    full, _ = load_audio(tmp_path / "full.wav", mono=False)
    np.testing.assert_array_equal(x, full[:, :found])  # the frames present are read unchanged


def test_a_complete_wav_reads_without_a_truncation_warning(tmp_path):
    sf.write(tmp_path / "ok.wav", tone(440, 1.0), 16000, subtype="PCM_16")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedAudioWarning)
        x, _ = load_audio(tmp_path / "ok.wav")
    assert x.shape == (16000,) and wav_declared_frames(tmp_path / "ok.wav") == 16000


def test_a_wav_streamed_with_unknown_data_size_is_not_called_truncated(tmp_path):
    sf.write(tmp_path / "s.wav", tone(440, 0.5), 16000, subtype="PCM_16")
    raw = bytearray((tmp_path / "s.wav").read_bytes())
    at = raw.index(b"data")
    raw[at + 4:at + 8] = b"\xff\xff\xff\xff"  # what a writer piping to stdout leaves in the size field
    (tmp_path / "s.wav").write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedAudioWarning)
        x, _ = load_audio(tmp_path / "s.wav")
    assert x.shape == (8000,) and wav_declared_frames(tmp_path / "s.wav") is None


def test_truncation_warning_can_be_made_an_error(tmp_path):
    sf.write(tmp_path / "full.wav", tone(440, 1.0), 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:-2000])
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedAudioWarning)
        with pytest.raises(TruncatedAudioWarning, match="cut.wav is truncated"):
            load_audio(tmp_path / "cut.wav")


def test_empty_clip_error_names_the_file(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros((0,), np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav has 0 samples"):
        load_audio(tmp_path / "empty.wav")


def test_nan_samples_are_rejected(tmp_path):
    x = tone()
    x[100] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav contains 1 NaN/Inf"):
        load_audio(tmp_path / "nan.wav")


@pytest.mark.parametrize("rate", [0, 16, 10_000_000, float("nan"), "16k", True])
def test_absurd_rates_are_rejected(rate):
    with pytest.raises(AudioError, match="sample rate"):
        check_sample_rate(rate)


def test_requested_absurd_rate_is_rejected_on_load(tmp_path):
    sf.write(tmp_path / "t.wav", tone(), 16000)
    with pytest.raises(AudioError, match="16 Hz is outside"):
        load_audio(tmp_path / "t.wav", sample_rate=16)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)


def test_save_audio_is_atomic_and_roundtrips(tmp_path):
    save_audio(tmp_path / "x.wav", tone(), 16000, subtype="FLOAT")
    x, _ = load_audio(tmp_path / "x.wav")
    np.testing.assert_allclose(x, tone(), atol=1e-7)
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]


def test_real_recording_from_shared_data(fsdd_dir):
    x, sr = load_audio(fsdd_dir / "0_george_0.wav", sample_rate=16000)
    assert sr == 16000 and x.dtype == np.float32 and len(x) > 1000


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=6), st.sampled_from([1, 4, 16]))
def test_pad_batch_keeps_samples_and_marks_them(lengths, multiple):
    clips = [np.arange(n, dtype=np.float32) + 1 for n in lengths]
    batch, mask = pad_batch(clips, pad_to_multiple=multiple)
    assert batch.shape[1] % multiple == 0 and batch.shape[1] >= max(lengths)
    for i, n in enumerate(lengths):
        assert mask[i].sum() == n and mask[i, :n].all()
        np.testing.assert_array_equal(batch[i, :n], clips[i])
        assert not batch[i, n:].any()


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=4), st.integers(1, 200))
def test_pad_batch_crops_to_length(lengths, length):
    batch, mask = pad_batch([np.ones(n, np.float32) for n in lengths], length=length)
    assert batch.shape == (len(lengths), length)
    np.testing.assert_array_equal(mask.sum(1), np.minimum(lengths, length))


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([8000, 16000, 22050, 32000, 44100]), st.sampled_from([16000, 32000, 48000]),
       st.floats(100, 1500))
def test_resample_round_trip_preserves_a_band_limited_tone(orig, target, freq):
    x = tone(freq, 0.5, orig)
    y = resample(resample(x, orig, target), target, orig)
    assert abs(len(y) - len(x)) <= 1
    n = min(len(x), len(y))
    core = slice(n // 8, n - n // 8)  # resampler edge effects
    np.testing.assert_allclose(y[core], x[core], atol=2e-3)


def test_resample_batch_equals_per_row():
    x = np.stack([tone(300, 0.3, 22050), tone(700, 0.3, 22050)])
    batched = resample(x, 22050, 16000)
    for i in range(2):
        np.testing.assert_allclose(batched[i], resample(x[i], 22050, 16000), atol=1e-6)


def test_pad_batch_rejects_empty_list_and_2d_clips():
    with pytest.raises(AudioError, match="empty list"):
        pad_batch([])
    with pytest.raises(AudioError, match="mono"):
        pad_batch([np.zeros((2, 10))])
