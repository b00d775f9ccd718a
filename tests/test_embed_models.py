"""The Embedder and model directories with the real tiny encoders (BEATs, SSAST patch/frame, PaSST)."""

import importlib.util

import numpy as np
import pytest

import audiorep
from audiorep.downstream.embed import Embedder
from audiorep.models import families, model_dir, registry

TINY = ["beats-tiny", "ssast-patch-tiny", "ssast-frame-tiny", "passt-s-tiny"]
PATCH_MS = {"beats-tiny": 160.0, "ssast-patch-tiny": 160.0, "ssast-frame-tiny": 20.0, "passt-s-tiny": 100.0}


def _needs(name):
    module = families.FAMILIES[registry.MODELS[name].family].module
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not in this checkout")


@pytest.fixture(scope="module", params=TINY)
def tiny(request):
    _needs(request.param)
    return audiorep.load(request.param, batch_size=2)


def _noise(n, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.mark.slow
def test_tiny_models_embed_a_batch_like_one_by_one(tiny):
    batch = np.stack([_noise(tiny.sample_rate, s) for s in range(3)])
    together = tiny.scene(batch)
    assert together.shape == (3, tiny.scene_embedding_size) and np.isfinite(together).all()
    alone = np.stack([tiny.scene(c) for c in batch])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_tiny_models_chunk_long_audio_on_a_regular_grid(tiny):
    n = tiny.chunk_samples(tiny.window_patches) + 3 * tiny.patch_hop * tiny.window_patches // 2
    seq, times = tiny.timestamps(_noise(n, 1))
    assert len(seq) > tiny.window_patches  # more than one chunk
    np.testing.assert_allclose(np.diff(times), PATCH_MS[tiny.name], atol=1e-3)
    assert times[-1] <= 1000 * n / tiny.sample_rate
    if tiny.pooling == "mean":
        np.testing.assert_allclose(tiny.scene(_noise(n, 1)), seq.mean(0), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_tiny_model_dir_round_trip_gives_identical_embeddings(tiny, tmp_path):
    b = tiny.bundle
    model_dir.save_model_dir(tmp_path / "m", family=b.family, encoder=b.encoder, encoder_config=b.encoder_config,
                            frontend=b.frontend, pooling=b.pooling)
    loaded = audiorep.load(str(tmp_path / "m"), batch_size=2)
    clip = _noise(tiny.sample_rate // 2, 2)
    np.testing.assert_array_equal(loaded.scene(clip), tiny.scene(clip))
    assert loaded.bundle.checkpoint_hash == b.checkpoint_hash and loaded.bundle.window_frames == b.window_frames


@pytest.mark.slow
def test_every_hidden_layer_can_be_chosen(tiny):
    every = Embedder(tiny.bundle, layer="all")
    depth = tiny.bundle.encoder_config.depth if hasattr(tiny.bundle.encoder_config, "depth") else \
        tiny.bundle.encoder_config.encoder_layers
    assert every.timestamp_embedding_size == (depth + 1) * tiny.timestamp_embedding_size
