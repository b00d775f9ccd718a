"""Per-clip level normalisation in the Kaldi frontend (FbankConfig.level_db)."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiorep.audio.frontends import BEATS_FBANK, SSAST_FBANK, KaldiFbank, frontend_from_dict, normalise_level

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(gain_db=st.floats(-50, 20), level=st.floats(-40, -10), seed=st.integers(0, 2**31 - 1),
       pad=st.integers(0, 4000))
def test_normalised_clips_have_the_target_rms_whatever_their_gain_and_padding(gain_db, level, seed, pad):
    x = np.random.default_rng(seed).normal(size=(2, 3000)).astype(np.float32) * np.float32(10 ** (gain_db / 20))
    padded = np.pad(x, ((0, 0), (0, pad)))
    y = np.asarray(normalise_level(padded, level))
    rms_db = 20 * np.log10(np.sqrt(np.mean(y[:, :3000].astype(np.float64) ** 2, axis=1)))
    np.testing.assert_allclose(rms_db, level, atol=1e-3)
    assert not y[:, 3000:].any()  # padding stays silent


def test_level_db_makes_the_features_gain_free_and_round_trips_through_the_model_directory_form():
    plain = KaldiFbank(SSAST_FBANK, name="ssast")
    levelled = KaldiFbank(dataclasses.replace(SSAST_FBANK, level_db=-25.0), name="ssast@-25dB")
    x = np.random.default_rng(0).normal(size=(2, 16000)).astype(np.float32) * 0.05
    np.testing.assert_allclose(np.asarray(levelled(x * 0.01)), np.asarray(levelled(x)), atol=1e-4)
    assert np.abs(np.asarray(plain(x * 0.01)) - np.asarray(plain(x))).max() > 0.5
    again = frontend_from_dict(levelled.to_dict())
    assert again.cfg.level_db == -25.0
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(levelled(x)))
    np.testing.assert_array_equal(np.asarray(normalise_level(np.zeros((1, 100), np.float32), -25.0)), 0.0)
    # full scale means +-1 also for a model that scales the waveform (BEATs: x 2**15)
    beats = KaldiFbank(dataclasses.replace(BEATS_FBANK, level_db=-25.0))
    by_hand = KaldiFbank(BEATS_FBANK)(np.asarray(normalise_level(x, -25.0)))
    np.testing.assert_allclose(np.asarray(beats(x * 7.0)), np.asarray(by_hand), atol=1e-4)
    # off (every preset): the description is the one saved before the field existed, so caches stay valid
    assert "level_db" not in plain.to_dict()["config"]
    assert frontend_from_dict(plain.to_dict()).cfg == SSAST_FBANK
