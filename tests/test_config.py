"""Experiment files and `--config.<field>=<value>` overrides."""

from __future__ import annotations

from pathlib import Path

import ml_collections
import pytest

from audiorep import cli
from audiorep.pretrain import config as config_lib
from audiorep.pretrain import trainer

ROOT = Path(__file__).resolve().parents[1]
# experiment files define get_config(); other modules there (cpu_scale.py) are pieces the experiments import
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.py") if "\ndef get_config(" in p.read_text())


def _cfg() -> ml_collections.ConfigDict:
    return trainer.default_train_config()


def test_overrides_are_parsed_by_the_type_of_the_field():
    c = _cfg()
    c.optim.betas = (0.9, 0.99)
    config_lib.apply_overrides(c, ["train.steps=400_000", "optim.lr=3e-4", "train.progress=false",
                                   "optim.schedule=passt", "optim.betas=0.5,0.6", "--config.mesh.fsdp=2"])
    assert c.train.steps == 400_000 and isinstance(c.train.steps, int)
    assert c.optim.lr == pytest.approx(3e-4)
    assert c.train.progress is False
    assert c.optim.schedule == "passt"
    assert c.optim.betas == (0.5, 0.6)
    assert c.mesh.fsdp == 2


def test_a_bad_value_names_the_field_and_the_expected_type():
    with pytest.raises(config_lib.ConfigError, match=r"--config.train.steps='ten': expected an integer"):
        config_lib.apply_overrides(_cfg(), ["train.steps=ten"])


def test_an_unknown_field_lists_the_nearest_names():
    with pytest.raises(config_lib.ConfigError, match=r"no such field.*--config.train.steps"):
        config_lib.apply_overrides(_cfg(), ["train.stepz=10"])
    with pytest.raises(config_lib.ConfigError, match=r"--config.optim.warmup_steps"):
        config_lib.apply_overrides(_cfg(), ["optim.warmup=10"])


def test_a_group_cannot_be_set_as_one_value():
    with pytest.raises(config_lib.ConfigError, match="is a group of fields"):
        config_lib.apply_overrides(_cfg(), ["train=3"])


def test_space_separated_overrides_are_split_from_other_arguments():
    rest, overrides = config_lib.split_overrides(["--x", "--config.train.steps", "5", "--config.seed=2"])
    assert rest == ["--x"]
    assert overrides == [("train.steps", "5"), ("seed", "2")]


def test_a_config_file_without_get_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(config_lib.ConfigError, match="no get_config"):
        config_lib.load_config(str(bad))


def test_get_config_receives_the_argument_after_the_colon(tmp_path):
    f = tmp_path / "arg.py"
    f.write_text("import ml_collections\n"
                 "def get_config(arg=None):\n    return ml_collections.ConfigDict(dict(arg=arg))\n")
    assert config_lib.load_config(f"{f}:big").arg == "big"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads_and_only_sets_known_trainer_fields(path):
    c = config_lib.load_config(str(path))
    assert (path.read_text().startswith('r"""') and "audiorep pretrain --config" in path.read_text())
    defaults = config_lib.flatten(trainer.default_train_config())
    for key in config_lib.flatten(c):
        if key.split(".")[0] in ("train", "optim", "mesh", "distributed") or (
                key.startswith("data.") and not key.startswith("data.options.")):
            assert key in defaults, f"{path.name}: {key} is not a trainer field"
    assert c.model.family in ("ast", "passt", "beats")


def test_pretrain_command_reports_unknown_fields_with_suggestions(capsys, tmp_path):
    rc = cli.main(["pretrain", "--config", str(ROOT / "configs/tiny_ssast.py"), "--workdir", str(tmp_path),
                   "--config.train.stepz=5"])
    assert rc == 2
    assert "--config.train.steps" in capsys.readouterr().err


def test_pretrain_show_config_prints_overridden_fields(capsys, tmp_path):
    rc = cli.main(["pretrain", "--config", str(ROOT / "configs/tiny_ssast.py"), "--workdir", str(tmp_path),
                   "--show-config", "--config.train.steps=7"])
    assert rc == 0
    assert "--config.train.steps=7" in capsys.readouterr().out


def test_a_directory_field_that_is_empty_or_unusable_is_a_config_error_naming_the_field(tmp_path):
    def load(path):
        raise KeyError(f"{path} holds no model")  # stands for ModelDirError and the like

    with pytest.raises(config_lib.ConfigError, match="needs distill.teacher"):
        config_lib.load_named_directory("distill.teacher", "", load, what="model", missing="needs distill.teacher",
                                        errors=(KeyError,))
    with pytest.raises(config_lib.ConfigError, match=r"teacher='/x' is not a usable model directory: .*holds no"):
        config_lib.load_named_directory("distill.teacher", "/x", load, what="model", missing="", errors=(KeyError,))
    with pytest.raises(config_lib.ConfigError, match="not a usable tokenizer directory"):  # FileNotFoundError too
        config_lib.load_named_directory("f", str(tmp_path / "nope"), lambda p: open(p), what="tokenizer",
                                        missing="", errors=())
    assert config_lib.load_named_directory("f", "/x", str.upper, what="model", missing="", errors=()) == "/X"
