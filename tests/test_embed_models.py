"""The Embedder and model directories with the real tiny encoders (BEATs, SSAST patch/frame, PaSST)."""

import importlib.util

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import audiorep
from audiorep.audio.frontends import get_frontend
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


def _rel(a, b):
    """Largest deviation relative to the reference's largest value."""
    b = np.asarray(b, np.float64)
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def _encode(embedder, feats):
    """The model's encoder run once on features f32[1, frames, mels], unpadded, as the official code runs a clip:
    (per-patch embeddings f32[T, D] (frequency rows averaged), special tokens f32[C, D] or None). AST/SSAST
    positions are those of the start of the embedder's window."""
    kw = {"window_frames": embedder.window_frames} if embedder.family == "ast" else {}
    out = embedder.bundle.encoder(jnp.asarray(feats), **kw)
    per_patch = np.asarray(out.tokens_by_time().mean(axis=2))[0]
    return per_patch, None if out.cls is None else np.asarray(out.cls)[0]


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


@pytest.mark.slow
def test_a_clip_embeds_as_its_unpadded_self_in_every_bucket_and_beside_any_neighbour(tiny):
    """5 s for BEATs (31 patches, which load()'s default pads to a 32-patch bucket), 0.77 of the window for the
    others: unpadded, padded by the default bucket, padded to the whole window, or batched with a clip three
    windows long, the clip's timestamps and scene embedding are those of the encoder run on its own features."""
    rate, window = tiny.sample_rate, tiny.bundle.window_samples
    n = 5 * rate if tiny.family == "beats" else int(0.77 * window)
    clip = _noise(n, 3)
    per_patch, special = _encode(tiny, tiny.bundle.frontend(jnp.asarray(clip)[None]))
    fine = Embedder(tiny.bundle, pooling="mean", bucket_patches=1, batch_size=2)
    coarse = Embedder(tiny.bundle, pooling="mean", bucket_patches=tiny.window_patches, batch_size=2)
    default = Embedder(tiny.bundle, pooling="mean", batch_size=2)
    plans = [e.plan([n]) for e in (fine, default, coarse)]
    assert [len(pl.valid) for pl in plans] == [1, 1, 1] and plans[0].valid[0] == len(per_patch)
    assert plans[0].bucket[0] == plans[0].valid[0] < plans[2].bucket[0]
    assert tiny.family != "beats" or plans[1].bucket[0] == 32 > plans[1].valid[0] == 31
    for e in (fine, default, coarse):
        assert _rel(e.timestamps(clip)[0], per_patch) <= 1e-5
        assert _rel(e.scene(clip), per_patch.mean(0)) <= 1e-5
    seqs, _ = default.timestamps([_noise(3 * window, 4), clip])
    assert _rel(seqs[1], per_patch) <= 1e-5
    if special is not None:  # the cls pooling of AST/PaSST: the special tokens attend to real patches only
        assert _rel(Embedder(tiny.bundle, pooling="cls", batch_size=2).scene([_noise(3 * window, 4), clip])[1],
                    special.mean(0)) <= 1e-5


@pytest.mark.slow
def test_long_clips_are_chunked_on_the_whole_clips_frames(tiny):
    """A clip of 2.4 windows is three chunks; each chunk's timestamps are the encoder's on that chunk's frames cut
    from the features of the whole clip (PaSST's centred STFT reflects only at the clip's ends, SSAST removes the
    whole clip's mean), with one-patch or default buckets alike."""
    n = int(2.4 * tiny.bundle.window_samples)
    clip = _noise(n, 5)
    feats = np.asarray(tiny.bundle.frontend(jnp.asarray(clip)[None]))
    plan = tiny.plan([n])
    assert len(plan.valid) == 3
    hop = tiny.frontend.hop_samples
    manual = []
    for start, valid in zip(plan.start, plan.valid):
        first = int(start) // hop
        manual.append(_encode(tiny, feats[:, first: first + (valid - 1) * tiny.stride + tiny.kernel])[0])
    manual = np.concatenate(manual)
    for e in (tiny, Embedder(tiny.bundle, bucket_patches=1, batch_size=2)):
        seq, _ = e.timestamps(clip)
        assert _rel(seq, manual) <= 1e-5


@pytest.mark.slow
def test_a_ten_second_clip_at_32khz_is_one_passt_window_and_matches_the_encoder_on_its_features(tmp_path):
    """PaSST-S's window is 10 s at 32 kHz (1000 frames, 99 patches): such a clip is embedded in one pass and its
    cls embedding is the encoder's on the whole clip's features (a tiny PaSST with PaSST-S's window)."""
    from audiorep.models.passt import PaSSTConfig, PaSSTEncoder

    cfg = PaSSTConfig(dim=32, depth=2, num_heads=4, num_frames=1000, pos_grid=(12, 99), num_classes=0)
    model_dir.save_model_dir(tmp_path / "m", family="passt", encoder=PaSSTEncoder(cfg, rngs=nnx.Rngs(0)),
                             encoder_config=cfg, frontend=get_frontend("passt"), pooling="cls")
    e = audiorep.load(str(tmp_path / "m"))
    clip = _noise(320_000, 6)
    plan = e.plan([len(clip)])
    assert e.window_patches == 99 and plan.valid.tolist() == [99] and len(e.timestamp_times(len(clip))) == 99
    feats = e.bundle.frontend(jnp.asarray(clip)[None])
    assert feats.shape[1] == 1000
    per_patch, special = _encode(e, feats)
    assert _rel(e.scene(clip), special.mean(0)) <= 1e-6
    assert _rel(e.timestamps(clip)[0], per_patch) <= 1e-6
