"""BEATs iterations: the stage sequence, its checks, the label table; reruns resume and never retrain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiorep import cli
from audiorep.pretrain import config as config_lib
from audiorep.pretrain import iterations, trainer

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, *overrides: str, name: str = "tiny_masked_tokens.py"):
    cfg = trainer.with_defaults(config_lib.load_config(str(ROOT / "configs" / name)))
    config_lib.apply_overrides(cfg, [f"data.root={tmp_path / 'syn'}", "data.synthetic.per_class=4",
                                     "train.progress=false", "train.log_every=1", *overrides])
    return cfg


def test_iteration_fields_are_checked_with_a_clear_error(tmp_path):
    cfg = _config(tmp_path, "iterations.count=2", "iterations.steps=10,20,30")
    with pytest.raises(ValueError, match=r"give 2 positive step counts"):
        iterations.check(cfg)
    cfg.iterations.steps = ()
    assert iterations.check(cfg) == 2
    cfg.objective.name = "mspm"
    with pytest.raises(ValueError, match="only masked token prediction"):
        iterations.check(cfg)
    cfg.iterations.count = 0
    with pytest.raises(ValueError, match="iterations.count=0"):
        iterations.check(cfg)
    second = iterations.iteration_config(_config(tmp_path, "iterations.count=2", "iterations.steps=10,20",
                                                 "iterations.codebook_size=64"), 2, "/runs/iter1/export")
    assert (second.train.steps, second.objective.tokenizer, second.objective.teacher,
            second.objective.codebook_size) == (20, "teacher", "/runs/iter1/export", 64)
    with pytest.raises(ValueError, match="exported nothing"):
        iterations.iteration_config(second, 2, None)
    assert str(iterations.iteration_dir("gs://bucket/run", 2)) == "gs://bucket/run/iter2"  # pods train on gs://


@pytest.mark.parametrize("override, message", [
    ("iterations.tokenizer=vq", "'distilled' .* or 'kmeans'"),
    ("iterations.tokenizer_steps=5,5,5", "one positive step count for every tokenizer"),
    ("iterations.tokenizer_steps=0", "one positive step count for every tokenizer"),
    ("iterations.agreement_clips=0", "at least one clip"),
    ("iterations.encoder_init=/no/such/model", "is not a directory"),
    ("iterations.tokenizer_init=/no/tokenizer", "does not read"),  # the SSAST recipe iterates with k-means
])
def test_each_bad_iteration_field_names_itself_and_the_fix(tmp_path, override, message):
    cfg = _config(tmp_path, "iterations.count=3", override)
    with pytest.raises(config_lib.ConfigError, match=message):
        iterations.check(cfg)


def test_the_distilled_tokenizer_is_refused_for_an_ssast_encoder_naming_kmeans(tmp_path):
    cfg = _config(tmp_path, "iterations.count=2", "iterations.tokenizer=distilled")
    with pytest.raises(config_lib.ConfigError, match="--config.iterations.tokenizer=kmeans"):
        iterations.check(cfg)


def test_distilled_iterations_alternate_tokenizer_and_encoder_stages(tmp_path):
    cfg = _config(tmp_path, "iterations.count=3", "iterations.tokenizer=distilled", "iterations.steps=30,20,10",
                  "iterations.tokenizer_steps=7")
    cfg.model.family = "beats"  # the plan needs no model: the family is what allows a distilled tokenizer
    plan = iterations.stages(cfg, tmp_path / "w")
    assert [(s.kind, s.iteration, s.steps) for s in plan] == [
        ("encoder", 1, 30), ("tokenizer", 2, 7), ("encoder", 2, 20), ("tokenizer", 3, 7), ("encoder", 3, 10)]
    assert plan[1].workdir == str(tmp_path / "w" / "iter2" / "tokenizer")
    assert plan[1].export == str(tmp_path / "w" / "iter2" / "tokenizer" / "export")
    assert plan[2].export == str(tmp_path / "w" / "iter2" / "export")
    encoder = iterations.iteration_config(cfg, 2, teacher=plan[0].export, tokenizer=plan[1].export)
    assert (encoder.objective.tokenizer, encoder.objective.tokenizer_dir, encoder.train.steps) == (
        "distilled", plan[1].export, 20)


def test_with_an_export_dir_each_tokenizer_exports_beside_the_encoders(tmp_path):
    cfg = _config(tmp_path, "iterations.count=2", "iterations.tokenizer=distilled",
                  f"train.export_dir={tmp_path / 'out'}")
    cfg.model.family = "beats"
    assert [s.export for s in iterations.stages(cfg, "gs://bucket/run")] == [
        str(tmp_path / "out" / "iter1"), str(tmp_path / "out" / "tokenizer2"), str(tmp_path / "out" / "iter2")]


def test_a_remote_workdir_without_a_local_export_dir_is_refused_before_training(tmp_path):
    cfg = _config(tmp_path, "iterations.count=2")
    with pytest.raises(config_lib.ConfigError, match="--config.train.export_dir=LOCAL_DIR"):
        iterations.run(cfg, "gs://bucket/run")
    assert not (tmp_path / "syn").exists()  # nothing was generated nor read


def test_given_directories_stand_in_for_their_stages(tmp_path):
    given_encoder, given_tokenizer = tmp_path / "official_encoder", tmp_path / "official_tokenizer"
    given_encoder.mkdir()
    given_tokenizer.mkdir()
    cfg = _config(tmp_path, "iterations.count=3", "iterations.tokenizer=distilled",
                  f"iterations.encoder_init={given_encoder}", f"iterations.tokenizer_init={given_tokenizer}")
    cfg.model.family = "beats"
    plan = iterations.stages(cfg, tmp_path / "w")
    assert [(s.name, iterations.stage_done(s)) for s in plan] == [
        ("encoder 1", True), ("tokenizer 2", True), ("encoder 2", False), ("tokenizer 3", False), ("encoder 3", False)]
    assert iterations.stage_output(plan[0]) == str(given_encoder)
    assert iterations.stage_output(plan[1]) == str(given_tokenizer)
    assert iterations.stage_output(plan[3]) == str(tmp_path / "w" / "iter3" / "tokenizer" / "export")


def test_a_stage_is_done_only_at_its_step_count_with_its_export_written(tmp_path):
    stage = iterations.Stage(2, "tokenizer", str(tmp_path / "t"), str(tmp_path / "t" / "export"), steps=10)
    ckpts = tmp_path / "t" / "checkpoints"
    (ckpts / "5").mkdir(parents=True)
    (ckpts / "5" / "commit_success.txt").write_text("")
    assert not iterations.stage_done(stage)  # half way: the rerun resumes it
    (ckpts / "10").mkdir()
    (ckpts / "10" / "commit_success.txt").write_text("")
    assert not iterations.stage_done(stage)  # killed between the last checkpoint and the export: export again
    (tmp_path / "t" / "export").mkdir()
    assert iterations.stage_done(stage)


def test_label_agreement_is_one_for_renamed_labels_and_near_zero_for_independent_ones():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 16, size=20_000)
    assert iterations.label_agreement(a, (a * 7 + 3) % 16) == pytest.approx(1.0)
    assert iterations.label_agreement(a, rng.integers(0, 16, size=20_000)) < 0.01
    coarse = a // 4  # b is a function of a: part of a's information
    assert 0.5 < iterations.label_agreement(a, coarse) < 1.0
    with pytest.raises(ValueError, match="same patches"):
        iterations.label_agreement(a, a[:10])


def test_code_stats_count_the_codebook_share_and_the_perplexity():
    stats = iterations.code_stats(np.array([[0, 0, 1, 1], [2, 2, 3, 3]]), codebook_size=8)
    assert stats == {"codes_used": 0.5, "perplexity": pytest.approx(4.0)}


def test_final_metrics_average_the_last_logged_steps(tmp_path):
    rows = [{"step": s, "loss": float(s), "acc": 0.01 * s} for s in range(1, 21)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert iterations.final_metrics(tmp_path) == {"steps": 20, "loss": pytest.approx(15.5),
                                                  "masked_acc": pytest.approx(0.155)}
    assert iterations.final_metrics(tmp_path / "nothing") == {}


@pytest.mark.slow
def test_two_kmeans_iterations_through_the_cli_then_a_rerun_trains_nothing(tmp_path, capsys):
    work = tmp_path / "w"
    argv = ["pretrain", "--config", str(ROOT / "configs" / "tiny_masked_tokens.py"), "--workdir", str(work),
            f"--config.data.root={tmp_path / 'syn'}", "--config.data.synthetic.per_class=4",
            "--config.train.progress=false", "--config.train.log_every=1", "--config.optim.warmup_steps=2",
            "--config.iterations.count=2", "--config.iterations.steps=12,8", "--config.iterations.codebook_size=32",
            "--config.iterations.init_from_teacher=true", "--config.objective.kmeans_batches=2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"encoder exported to {work / 'iter2' / 'export'}" in out
    assert "| 2 | tokenizer |" in out and "NMI vs previous labels" in out  # the per-iteration table
    from audiorep.models import model_dir

    meta = model_dir.load_model_dir(work / "iter2" / "export").meta
    assert meta["steps"] == 8 and meta["objective"]["tokenizer"] == "teacher"
    assert meta["objective"]["teacher"] == str(work / "iter1" / "export") and meta["objective"]["codebook_size"] == 32
    assert model_dir.load_model_dir(work / "iter1" / "export").meta["objective"]["tokenizer"] == "random_projection"
    lines = [len((work / f"iter{k}" / "metrics.jsonl").read_text().splitlines()) for k in (1, 2)]
    assert lines == [12, 8]
    rows = json.loads((work / "iterations.json").read_text())["rows"]
    assert [(r["iteration"], r["stage"]) for r in rows] == [(1, "tokenizer"), (1, "encoder"), (2, "tokenizer"),
                                                            (2, "encoder")]
    assert rows[2]["codebook_size"] == 32 and 0 < rows[2]["nmi_previous"] < 1  # new labels, not a renaming
    assert rows[3]["steps"] == 8 and 0 <= rows[3]["masked_acc"] <= 1
    assert cli.main(argv) == 0  # every stage is finished: nothing is trained again
    assert [len((work / f"iter{k}" / "metrics.jsonl").read_text().splitlines()) for k in (1, 2)] == lines
    assert cli.main([*argv, "--export-only", "--export-dir", str(tmp_path / "again")]) == 0
    assert model_dir.load_model_dir(tmp_path / "again").meta["objective"]["tokenizer"] == "teacher"


# ------------------------------------------------------------------- the 'distilled' targets of encoder k
def _tokenizer_dir(path: Path, frontend: str) -> Path:
    from flax import nnx

    from audiorep.audio.frontends import get_frontend
    from audiorep.tokenizers import save_tokenizer_dir
    from audiorep.tokenizers.distilled import TOKENIZER_TINY, AcousticTokenizer

    save_tokenizer_dir(path, AcousticTokenizer(TOKENIZER_TINY, rngs=nnx.Rngs(0)), config=TOKENIZER_TINY,
                       frontend=get_frontend(frontend))
    return path


def _beats_objective(tmp_path: Path, tokenizer_dir: str):
    from audiorep.pretrain import experiment

    cfg = _config(tmp_path, "objective.tokenizer=distilled", name="tiny_beats.py")
    cfg.objective.tokenizer_dir = tokenizer_dir
    _, enc_cfg = experiment.encoder_config(cfg.model)
    return experiment.make_objective(cfg, experiment.build_frontend(cfg.frontend), enc_cfg)


def test_distilled_targets_are_the_labels_of_the_tokenizer_directory(tmp_path):
    import jax.numpy as jnp

    from audiorep.tokenizers.tokenizer_dir import read_tokenizer_json

    path = _tokenizer_dir(tmp_path / "tok", "beats")
    objective = _beats_objective(tmp_path, str(path))
    tok = objective.tokenizer
    assert (tok.codebook_size, tok.input, tok.bundle.path) == (128, "features", path)
    assert tok.bundle.digest == read_tokenizer_json(path)["params_sha256"]  # the directory's arrays, verified
    labels = np.asarray(tok(jnp.zeros((2, 160, 128), jnp.float32)))
    assert labels.shape == (2, 10 * 8) and labels.dtype == np.int32  # time x frequency patches of the window


def test_distilled_targets_need_a_tokenizer_directory_on_the_students_features(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="needs objective.tokenizer_dir"):
        _beats_objective(tmp_path, "")
    with pytest.raises(config_lib.ConfigError, match="not a usable tokenizer directory"):
        _beats_objective(tmp_path, str(tmp_path))
    with pytest.raises(config_lib.ConfigError, match="reads other features"):
        _beats_objective(tmp_path, str(_tokenizer_dir(tmp_path / "tok", "ssast")))
