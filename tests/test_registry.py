"""The registry of named models (fixed-seed random inits), name resolution, and the bundles it builds."""

import pytest
import toy_encoder  # noqa: F401  (registers the 'toy' family and model)

from audiorep.models import registry
from audiorep.models.families import ModelDirError, UnknownModelError
from audiorep.models.registry import get_bundle


def test_named_model_is_a_fixed_seed_random_init():
    a, b = get_bundle("toy"), get_bundle("toy")
    assert a.checkpoint_hash == b.checkpoint_hash and a.source == "registry"
    assert "random initialisation" in a.meta["weights"]


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownModelError, match="Did you mean beats-tiny"):
        get_bundle("beats-tyni")


def test_path_like_name_that_does_not_exist_is_a_missing_dir(tmp_path):
    with pytest.raises(ModelDirError, match="no such directory"):
        get_bundle(str(tmp_path / "nope"))


def test_every_required_name_is_registered():
    assert {"beats", "ssast-patch", "ssast-frame", "passt-s", "beats-tiny", "ssast-patch-tiny", "ssast-frame-tiny",
            "passt-s-tiny"} <= set(registry.list_models())


def test_window_samples_is_the_fewest_samples_that_fill_the_window():
    bundle = get_bundle("toy")
    fe = bundle.frontend
    assert fe.num_frames(bundle.window_samples) == bundle.window_frames
    assert fe.num_frames(bundle.window_samples - 1) < bundle.window_frames


def test_time_resolution_is_the_patch_stride():
    bundle = get_bundle("toy")
    assert bundle.time_patch == (4, 4) and bundle.time_resolution_ms == pytest.approx(40.0)


def test_cli_pooling_choices_are_the_registry_poolings():
    from audiorep.cli import common
    from audiorep.models.bundle import FREQUENCY_MODES, POOLINGS

    assert common.POOLINGS_CHOICES == POOLINGS and common.FREQUENCY_CHOICES == FREQUENCY_MODES
