"""Model directories: save/load round trips, atomic writes, and a clear failure for every kind of damage."""

import json
import shutil

import jax
import numpy as np
import pytest
import toy_encoder  # (registers the 'toy' family)
from flax import nnx

from audiorep.audio.frontends import get_frontend
from audiorep.models import model_dir
from audiorep.models.families import ModelDirError, saved_state
from audiorep.models.model_dir import load_model_dir, params_sha256, save_model_dir
from audiorep.models.registry import get_bundle


def _toy(seed=0, cfg=None):
    cfg = cfg or toy_encoder.PRESETS["toy"]
    return cfg, toy_encoder.ToyEncoder(cfg, rngs=nnx.Rngs(seed))


def _save(path, seed=0, **kw):
    cfg, enc = _toy(seed)
    save_model_dir(path, family="toy", encoder=enc, encoder_config=cfg, frontend=get_frontend("beats"), **kw)
    return enc


def _edit_model_json(path, edit) -> None:
    """Rewrite `path`'s audiorep_model.json after `edit(doc)` changed it in place (a hand-edited directory)."""
    file = path / model_dir.MODEL_JSON
    doc = json.loads(file.read_text())
    edit(doc)
    file.write_text(json.dumps(doc))


def _features(bundle, n=16000):
    return bundle.frontend(np.random.default_rng(0).standard_normal((2, n)).astype(np.float32) * 0.1)


def test_saved_model_dir_reloads_with_identical_outputs(tmp_path):
    enc = _save(tmp_path / "m", seed=3, meta={"source": "unit test"})
    bundle = load_model_dir(tmp_path / "m")
    feats = _features(bundle)
    np.testing.assert_array_equal(np.asarray(bundle.encoder(feats).tokens), np.asarray(enc(feats).tokens))
    assert bundle.family == "toy" and bundle.meta == {"source": "unit test"}
    assert bundle.checkpoint_hash == params_sha256(saved_state(enc))


def test_model_json_records_format_family_config_and_hash(tmp_path):
    _save(tmp_path / "m", pooling="max", window_frames=48)
    doc = json.loads((tmp_path / "m" / model_dir.MODEL_JSON).read_text())
    assert doc["format"] == model_dir.FORMAT_NAME and doc["format_version"] == model_dir.FORMAT_VERSION
    assert doc["family"] == "toy" and doc["pooling"] == "max" and doc["window_frames"] == 48
    assert doc["encoder_config"] == toy_encoder.PRESETS["toy"].to_dict()
    assert doc["frontend"]["name"] == "beats" and len(doc["params_sha256"]) == 64
    bundle = load_model_dir(tmp_path / "m")
    assert bundle.pooling == "max" and bundle.window_frames == 48


def test_existing_dir_is_not_overwritten_unless_asked(tmp_path):
    _save(tmp_path / "m", seed=0)
    with pytest.raises(ModelDirError, match="already exists.*overwrite=True"):
        _save(tmp_path / "m", seed=1)
    enc = _save(tmp_path / "m", seed=1, overwrite=True)
    assert load_model_dir(tmp_path / "m").checkpoint_hash == params_sha256(saved_state(enc))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp or old copies left behind


def test_overwrite_refuses_a_dir_that_is_not_a_model_dir(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("x")
    with pytest.raises(ModelDirError, match="not an audiorep model directory"):
        _save(tmp_path / "data", overwrite=True)
    assert (tmp_path / "data" / "precious.txt").exists()


def test_failed_save_leaves_nothing_behind(tmp_path):
    cfg, enc = _toy()
    with pytest.raises(ModelDirError, match="not JSON-serialisable"):
        save_model_dir(tmp_path / "m", family="toy", encoder=enc, encoder_config=cfg, frontend=get_frontend("beats"),
                       meta={"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_config_that_does_not_describe_the_encoder_is_refused_at_save(tmp_path):
    _, enc = _toy()
    with pytest.raises(ModelDirError, match="do not match encoder_config"):
        save_model_dir(tmp_path / "m", family="toy", encoder=enc, encoder_config=toy_encoder.PRESETS["toy-wide"],
                       frontend=get_frontend("beats"))


def test_folder_without_model_json_is_not_a_model_dir(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ModelDirError, match="not an audiorep model directory"):
        load_model_dir(tmp_path / "run")


def test_error_points_at_model_dirs_inside_the_folder(tmp_path):
    _save(tmp_path / "models" / "beats_iter3")
    with pytest.raises(ModelDirError, match="contains model directories: beats_iter3"):
        load_model_dir(tmp_path / "models")


def test_foreign_json_is_refused(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / model_dir.MODEL_JSON).write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelDirError, match="not an audiorep model description"):
        load_model_dir(tmp_path / "m")


def test_other_format_version_is_refused_with_the_fix(tmp_path):
    _save(tmp_path / "m")
    _edit_model_json(tmp_path / "m", lambda d: d.update({"format_version": model_dir.FORMAT_VERSION + 1}))
    with pytest.raises(ModelDirError, match="format version 2.*Upgrade audiorep"):
        load_model_dir(tmp_path / "m")


def test_params_that_do_not_fit_the_config_list_the_differences(tmp_path):
    _save(tmp_path / "m")
    _edit_model_json(tmp_path / "m", lambda d: d["encoder_config"].update({"dim": 12}))
    with pytest.raises(ModelDirError, match=r"do not fit(.|\n)*wrong shape/dtype.*embed\.kernel"):
        load_model_dir(tmp_path / "m")


def test_missing_arrays_are_listed(tmp_path):
    _save(tmp_path / "m")
    _edit_model_json(tmp_path / "m", lambda d: d["encoder_config"].update({"depth": 3}))
    with pytest.raises(ModelDirError, match=r"missing \(2\): blocks\.2\.bias; blocks\.2\.kernel"):
        load_model_dir(tmp_path / "m")


def test_changed_weights_fail_the_checksum(tmp_path):
    _save(tmp_path / "m", seed=0)
    _save(tmp_path / "other", seed=1)
    shutil.rmtree(tmp_path / "m" / model_dir.PARAMS_DIR)
    shutil.copytree(tmp_path / "other" / model_dir.PARAMS_DIR, tmp_path / "m" / model_dir.PARAMS_DIR)
    with pytest.raises(ModelDirError, match="sha256"):
        load_model_dir(tmp_path / "m")


def test_missing_checkpoint_is_reported(tmp_path):
    _save(tmp_path / "m")
    shutil.rmtree(tmp_path / "m" / model_dir.PARAMS_DIR)
    with pytest.raises(ModelDirError, match="incomplete"):
        load_model_dir(tmp_path / "m")


def test_extra_state_round_trips(tmp_path):
    head = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
    _save(tmp_path / "m", extra_state=head)
    extra = load_model_dir(tmp_path / "m").extra_state
    np.testing.assert_array_equal(np.asarray(extra["w"]), head["w"])
    np.testing.assert_array_equal(np.asarray(extra["b"]), head["b"])


def test_unknown_family_is_refused(tmp_path):
    cfg, enc = _toy()
    with pytest.raises(ModelDirError, match="unknown model family 'wav2vec'"):
        save_model_dir(tmp_path / "m", family="wav2vec", encoder=enc, encoder_config=cfg, frontend={})


def test_loaded_encoder_reseeds_dropout_state(tmp_path):
    _save(tmp_path / "m")
    enc = load_model_dir(tmp_path / "m").encoder
    feats = _features(get_bundle("toy"))
    a = enc(feats, deterministic=False).tokens
    b = enc(feats, deterministic=False).tokens
    assert not np.allclose(np.asarray(a), np.asarray(b))  # the dropout stream advances: real RNG state
    assert jax.tree.leaves(nnx.state(enc, nnx.RngState))


def test_training_workdir_loads_its_export(tmp_path):
    enc = _save(tmp_path / "run" / model_dir.TRAINING_EXPORT, seed=2)
    (tmp_path / "run" / "checkpoints").mkdir()
    bundle = get_bundle(str(tmp_path / "run"))
    assert bundle.checkpoint_hash == params_sha256(saved_state(enc))


def test_model_dir_frequency_default_is_saved_and_old_dirs_average(tmp_path):
    from audiorep.downstream.cache import source_spec
    from audiorep.downstream.embed import Embedder

    _save(tmp_path / "m", frequency="stack")
    bundle = load_model_dir(tmp_path / "m")
    assert bundle.frequency == "stack" and Embedder(bundle).frequency == "stack"
    assert Embedder(bundle, frequency="mean").frequency == "mean"
    assert source_spec(Embedder(bundle))["frequency"] != source_spec(Embedder(bundle, frequency="mean"))["frequency"]
    _edit_model_json(tmp_path / "m", lambda d: d.pop("frequency"))  # a directory written before the field existed
    assert load_model_dir(tmp_path / "m").frequency == "mean"
    with pytest.raises(ModelDirError, match="frequency"):
        _save(tmp_path / "bad", frequency="sum")
