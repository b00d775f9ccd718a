"""`audiorep pretrain` refuses bad input before any work: one line naming the problem and the fix, exit status 2."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from audiorep import cli
from audiorep.pretrain import config as config_lib
from audiorep.pretrain import experiment, trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_toy import toy_config, toy_data, toy_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "configs" / "tiny_masked_tokens.py")


def _pretrain(capsys, tmp_path: Path, *args: str, workdir: Path | None = None) -> tuple[int, str]:
    """Run `audiorep pretrain` on the tiny recipe; returns (exit status, stderr)."""
    code = cli.main(["pretrain", "--config", RECIPE, "--workdir", str(workdir or tmp_path / "w"),
                     f"--config.data.root={tmp_path / 'syn'}", "--config.train.progress=false", *args])
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("args, expected", [
    (["--config.train.batch_size=0"], r"train\.batch_size=0: .*--config\.train\.batch_size"),
    (["--config.optim.lr=-0.001"], r"optim\.lr=-0\.001: .*positive.*--config\.optim\.lr"),
    (["--config.train.steps=0"], r"train\.steps=0: .*untrained encoder.*--config\.train\.steps"),
    (["--config.objective.masked=200"], r"objective\.masked=200 but the 8x16 grid has only 128 patches; set "
                                        r"objective\.masked between 1 and 127"),
    (["--config.data.dataset=folder"], r"data\.root=.*syn' does not exist; set --config\.data\.root"),
    (["--config.data.root="], r"data\.root is not set: pass --config\.data\.root=the folder of the synthetic"),
])
def test_bad_pretrain_fields_end_in_one_line_naming_the_field_before_any_work(capsys, tmp_path, args, expected):
    code, err = _pretrain(capsys, tmp_path, *args)
    assert code == 2
    assert re.search(expected, _one_error_line(err)), err
    assert not (tmp_path / "w").exists() and not (tmp_path / "syn").exists()  # nothing was built or written


def test_a_workdir_that_is_a_file_is_refused_and_left_as_it_was(capsys, tmp_path):
    workdir = tmp_path / "notes.txt"
    workdir.write_text("my notes\n")
    code, err = _pretrain(capsys, tmp_path, workdir=workdir)
    assert code == 2
    assert f"--workdir {workdir} is a file; pass a folder" in _one_error_line(err)
    assert workdir.read_text() == "my notes\n" and not (tmp_path / "syn").exists()


def test_a_data_root_that_is_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "syn").write_text("not a corpus")
    code, err = _pretrain(capsys, tmp_path)
    assert code == 2
    assert "is a file; set --config.data.root to the dataset's folder" in _one_error_line(err)
    assert (tmp_path / "syn").read_text() == "not a corpus"


def test_export_only_on_an_empty_workdir_says_to_train_first(capsys, tmp_path):
    (tmp_path / "w").mkdir()
    code, err = _pretrain(capsys, tmp_path, "--export-only")
    assert code == 2
    line = _one_error_line(err)
    assert f"no checkpoint in {tmp_path / 'w' / 'checkpoints'}: train first" in line
    assert list((tmp_path / "w").iterdir()) == [] and not (tmp_path / "syn").exists()


def test_the_trainer_itself_refuses_a_file_workdir_and_untrainable_fields(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(trainer.TrainError, match="is a file"):
        trainer.Trainer(toy_config(), tmp_path / "f", toy_task(), toy_data())
    with pytest.raises(trainer.TrainError, match="lies under .*f, which is a file"):
        trainer.Trainer(toy_config(), tmp_path / "f" / "run", toy_task(), toy_data())
    for field, value, message in (("train.steps", "0", "train at least one step"),
                                  ("optim.lr", "-1e-3", "must be a positive number"),
                                  ("train.accum_steps", "3", "divides train.batch_size=8"),
                                  ("optim.ema_decay", "1.0", r"use a decay in \[0, 1\)")):
        cfg = toy_config()
        config_lib.apply_overrides(cfg, [f"{field}={value}"])
        with pytest.raises(config_lib.ConfigError, match=message):
            trainer.Trainer(cfg, tmp_path / "w", toy_task(), toy_data())
    assert not (tmp_path / "w").exists()


def test_experiment_check_returns_the_config_with_the_trainers_defaults(tmp_path):
    cfg = config_lib.load_config(RECIPE)
    del cfg["train"]["keep_checkpoints"]
    checked = experiment.check(cfg, tmp_path / "w")
    assert checked.train.keep_checkpoints == trainer.default_train_config().train.keep_checkpoints
    assert checked.train.steps == 3000 and checked.optim.warmup_steps == 100
