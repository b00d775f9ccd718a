"""Two BEATs iterations end to end (configs/tiny_beats.py, a few steps per stage): encoder 1, tokenizer 2 distilled
from it, encoder 2 on its labels. The run is killed (-9) in the middle of the tokenizer stage of iteration 2, at
a step after that stage's first checkpoint; the same command then completes it. The tests read that run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import audiorep

ROOT = Path(__file__).resolve().parents[1]
ENCODER_STEPS, TOKENIZER_STEPS, CHECKPOINT_EVERY = 4, 4, 2
KILL_AFTER = ENCODER_STEPS + 3  # training steps of this process: encoder 1, then 3 of tokenizer 2 (checkpoint 2 saved)

# `python -m audiorep.cli ...`, paused before its (KILL_AFTER + 1)-th training step, waiting to be killed
PAUSED_CLI = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); import trainer_toy; "
              f"trainer_toy.pause_before_step({KILL_AFTER}); "
              "runpy.run_module('audiorep.cli', run_name='__main__', alter_sys=True)")


def _args(tmp: Path) -> list[str]:
    return ["pretrain", "--config", str(ROOT / "configs" / "tiny_beats.py"), "--workdir", str(tmp / "b"),
            f"--config.data.root={tmp / 'syn'}", "--config.data.synthetic.per_class=2",
            "--config.train.progress=false", "--config.train.log_every=1", "--config.train.batch_size=4",
            f"--config.train.checkpoint_every={CHECKPOINT_EVERY}", "--config.train.async_checkpoints=false",
            "--config.iterations.count=2", f"--config.iterations.steps={ENCODER_STEPS},{ENCODER_STEPS}",
            f"--config.iterations.tokenizer_steps={TOKENIZER_STEPS}"]


def _steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """(workdir, output of the rerun) of the two-iteration run killed in tokenizer stage 2, then rerun."""
    tmp = tmp_path_factory.mktemp("beats_iterations")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # AUDIOREP_NO_TCMALLOC: the CLI would otherwise re-exec itself (to preload tcmalloc) without the pause
    p = subprocess.Popen([sys.executable, "-c", PAUSED_CLI, str(ROOT / "tests"), *_args(tmp)],
                         env=dict(env, AUDIOREP_NO_TCMALLOC="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, cwd=ROOT)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if f"PAUSED step={KILL_AFTER}" in line:
            break
    assert lines and f"PAUSED step={KILL_AFTER}" in lines[-1], "".join(lines)[-3000:]
    stage = tmp / "b" / "iter2" / "tokenizer"
    try:
        # the kill lands inside tokenizer stage 2: its checkpoint 2 is written, nothing of the stage is exported
        assert sorted(d.name for d in (stage / "checkpoints").iterdir() if d.name.isdigit()) == ["2"]
        assert not (stage / "export").exists() and not (tmp / "b" / "iter2" / "checkpoints").exists()
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate()
    done = subprocess.run([sys.executable, "-m", "audiorep.cli", *_args(tmp)], env=env, capture_output=True,
                          text=True, cwd=ROOT, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return tmp, done.stdout + done.stderr


@pytest.mark.slow
def test_a_run_killed_in_the_tokenizer_stage_of_iteration_2_resumes_there_and_completes(resumed):
    tmp, out = resumed
    work = tmp / "b"
    assert f"encoder 1: finished ({work / 'iter1' / 'export'})" in out  # not retrained
    assert f"resumed from {work / 'iter2' / 'tokenizer' / 'checkpoints'} at step 2" in out
    assert _steps(work / "iter2" / "tokenizer" / "metrics.jsonl") == list(range(1, TOKENIZER_STEPS + 1))
    assert _steps(work / "iter2" / "metrics.jsonl") == list(range(1, ENCODER_STEPS + 1))
    assert (work / "iter2" / "tokenizer" / "export" / "audiorep_tokenizer.json").is_file()
    assert f"encoder exported to {work / 'iter2' / 'export'}" in out
    meta = json.loads((work / "iter2" / "export" / "audiorep_model.json").read_text())["meta"]
    assert meta["objective"]["tokenizer"] == "distilled"
    assert meta["objective"]["tokenizer_dir"] == str(work / "iter2" / "tokenizer" / "export")


@pytest.mark.slow
def test_the_per_iteration_table_is_printed_and_written(resumed):
    tmp, out = resumed
    work = tmp / "b"
    table = (work / "iterations.md").read_text()
    assert table.splitlines()[0] in out
    rows = json.loads((work / "iterations.json").read_text())["rows"]
    assert [(r["iteration"], r["stage"]) for r in rows] == [(1, "tokenizer"), (1, "encoder"), (2, "tokenizer"),
                                                            (2, "encoder")]
    tokenizer2, encoder2 = rows[2], rows[3]
    assert tokenizer2["steps"] == TOKENIZER_STEPS and np.isfinite(tokenizer2["loss"])
    assert 0 < tokenizer2["codes_used"] <= 1 and tokenizer2["perplexity"] > 1
    assert encoder2["steps"] == ENCODER_STEPS and 0 <= encoder2["masked_acc"] <= 1


@pytest.mark.slow
def test_iteration_2_labels_differ_from_iteration_1_labels(resumed):
    tmp, _ = resumed
    rows = json.loads((tmp / "b" / "iterations.json").read_text())["rows"]
    # NMI 1 would be iteration 1's labels under other code numbers; the distilled tokenizer partitions the
    # patches its own way
    assert rows[2]["nmi_previous"] < 0.9
    assert rows[0]["source"] == "random projection" and rows[2]["source"].startswith("distilled from encoder 1")


@pytest.mark.slow
def test_the_iteration_2_export_gives_embeddings(resumed):
    tmp, _ = resumed
    embedder = audiorep.load(str(tmp / "b" / "iter2" / "export"))
    t = np.arange(16000) / 16000
    emb = embedder.scene(np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 880 * t)]).astype(np.float32),
                         sample_rate=16000)
    assert emb.shape[0] == 2 and emb.ndim == 2 and np.all(np.isfinite(emb))
    assert not np.allclose(emb[0], emb[1])
