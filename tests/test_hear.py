"""The HEAR API module: attributes, shapes, float32, regular centred timestamps (hear-validator's rules)."""

import importlib.machinery
import sys
import types

import numpy as np
import pytest
import toy_encoder  # noqa: F401  (registers the 'toy' models)

import audiorep.hear as hear
from audiorep.downstream import hear as hear_impl


@pytest.fixture(scope="module")
def model():
    with pytest.warns(UserWarning, match="random weights"):
        return hear.load_model("toy")


def _white(n_sounds, seconds, rate, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n_sounds, int(seconds * rate))).astype(np.float32)


def test_model_exposes_the_hear_attributes(model):
    assert model.sample_rate in (16000, 22050, 32000, 44100, 48000)
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)


def test_scene_embeddings_are_float32_n_sounds_by_size(model):
    emb = hear.get_scene_embeddings(_white(4, 2.74, model.sample_rate), model)
    assert emb.dtype == np.float32 and emb.shape == (4, model.scene_embedding_size)


def test_scene_embeddings_are_one_row_per_sound_in_the_order_given(model):
    audio = _white(3, 1.5, model.sample_rate, seed=1) * np.asarray([[0.1], [0.5], [1.0]], np.float32)
    emb = hear.get_scene_embeddings(audio, model)
    assert min(np.abs(emb[i] - emb[j]).max() for i in range(3) for j in range(i)) > 1e-3  # three different sounds
    np.testing.assert_allclose(hear.get_scene_embeddings(audio[::-1].copy(), model), emb[::-1], rtol=1e-5, atol=1e-6)
    for i in range(3):  # a sound's row is its own embedding, whatever the other sounds of the batch
        np.testing.assert_allclose(hear.get_scene_embeddings(audio[i:i + 1], model)[0], emb[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seconds", [1.07, 1.98, 4.0])
def test_timestamps_follow_the_validator_rules(model, seconds):
    emb, ts = hear.get_timestamp_embeddings(_white(2, seconds, model.sample_rate), model)
    assert emb.ndim == 3 and ts.ndim == 2 and emb.shape[:2] == ts.shape and emb.shape[0] == 2
    assert emb.shape[2] == model.timestamp_embedding_size and emb.dtype == np.float32
    diff = np.diff(ts)
    assert np.max(np.abs(diff - diff.mean())) <= 1.0  # regular
    assert ts.min() <= diff.mean()  # starts at the first hop, not later
    assert ts.max() <= 1000 * seconds  # never past the end
    assert ts.max() >= 1000 * seconds - 2 * diff.mean()  # the end is covered


def test_timestamps_are_patch_centres(model):
    _, ts = hear.get_timestamp_embeddings(_white(1, 1.0, model.sample_rate), model)
    emb = model.embedder
    np.testing.assert_allclose(ts[0, 0], 1000 * emb.first_centre / emb.sample_rate, rtol=1e-6)


def test_one_clip_without_batch_axis_is_refused(model):
    with pytest.raises(ValueError, match=r"audio\[None\]"):
        hear.get_scene_embeddings(np.zeros(16000, np.float32), model)


def test_empty_path_uses_the_environment_model(monkeypatch):
    monkeypatch.setenv("AUDIOREP_HEAR_MODEL", "toy-passt")
    with pytest.warns(UserWarning):
        m = hear.load_model()
    assert m.sample_rate == 32000 and m.name == "toy-passt"


def test_options_reach_the_embedder():
    with pytest.warns(UserWarning):
        m = hear.load_model("toy", pooling="mean+max", layer="all")
    assert m.scene_embedding_size == 2 * m.timestamp_embedding_size


# ----------------------------------------------------------------------------------- torch in, torch out
class _FakeTensor:
    """The few torch.Tensor methods the HEAR module touches."""

    def __init__(self, array, device="cpu"):
        self.array, self.device = np.asarray(array), device

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)

    def detach(self):
        return self

    def is_floating_point(self):
        return self.array.dtype.kind == "f"

    def float(self):
        return _FakeTensor(self.array.astype(np.float32), self.device)

    def cpu(self):
        return _FakeTensor(self.array, "cpu")

    def numpy(self):
        assert self.device == "cpu", "torch refuses .numpy() on a GPU tensor"
        return self.array

    def to(self, device):
        return _FakeTensor(self.array, device)


@pytest.fixture
def fake_torch(monkeypatch):
    torch = types.ModuleType("torch")
    torch.__spec__ = importlib.machinery.ModuleSpec("torch", None)
    torch.Tensor = _FakeTensor
    torch.from_numpy = lambda a: _FakeTensor(a)
    torch.nn = types.SimpleNamespace(Module=type("Module", (), {"__init__": lambda self: None}))
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setattr(hear_impl, "_TORCH_CLASS", None)
    return torch


def test_with_torch_the_model_is_a_torch_module(fake_torch):
    with pytest.warns(UserWarning):
        m = hear.load_model("toy")
    assert isinstance(m, fake_torch.nn.Module) and m.scene_embedding_size == m.embedder.scene_embedding_size


def test_torch_input_gives_torch_output_on_the_same_device(fake_torch):
    with pytest.warns(UserWarning):
        m = hear.load_model("toy")
    audio = _FakeTensor(_white(2, 1.0, 16000), device="cuda:0")
    emb = hear.get_scene_embeddings(audio, m)
    assert isinstance(emb, _FakeTensor) and emb.device == "cuda:0" and emb.dtype == np.float32
    np.testing.assert_allclose(emb.array, m.embedder.scene(audio.array), rtol=1e-6)
    seq, ts = hear.get_timestamp_embeddings(audio, m)
    assert isinstance(seq, _FakeTensor) and isinstance(ts, _FakeTensor) and ts.device == "cuda:0"
    assert seq.shape[:2] == ts.shape
