"""`audiorep pretrain` end to end: Ctrl-C saves and exits, the same command resumes and exports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# `python -m audiorep.cli ...`, but paused after its third training step until it receives Ctrl-C (SIGINT)
PAUSED_CLI = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); import trainer_toy; "
              "trainer_toy.pause_before_step(3); runpy.run_module('audiorep.cli', run_name='__main__', alter_sys=True)")


@pytest.mark.slow
def test_ctrl_c_saves_then_the_same_command_resumes_and_exports(tmp_path):
    args = ["pretrain", "--config", str(ROOT / "configs/tiny_ssast.py"),
            "--workdir", str(tmp_path / "w"), f"--config.data.root={tmp_path / 'syn'}",
            "--config.data.synthetic.per_class=2", "--config.train.steps=60", "--config.train.log_every=1",
            "--config.train.checkpoint_every=1000"]
    cmd = [sys.executable, "-m", "audiorep.cli", *args]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # AUDIOREP_NO_TCMALLOC: the CLI would otherwise re-exec itself (to preload tcmalloc) without the pause
    p = subprocess.Popen([sys.executable, "-c", PAUSED_CLI, str(ROOT / "tests"), *args],
                         env=dict(env, AUDIOREP_NO_TCMALLOC="1"),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if "PAUSED step=3" in line:  # the progress bar's carriage returns may come first on the same line
            break
    assert lines and "PAUSED step=3" in lines[-1], "".join(lines)[-3000:]
    p.send_signal(signal.SIGINT)
    rest, _ = p.communicate(timeout=300)
    out = "".join(lines) + rest
    assert p.returncode == 130, out[-3000:]
    assert "generating it with audiorep.data.synthetic" in out
    assert "run the same command to resume" in out
    saved = [int(d.name) for d in (tmp_path / "w" / "checkpoints").iterdir() if d.name.isdigit()]
    assert saved == [4]  # the step in flight when Ctrl-C came, then the save
    metrics = tmp_path / "w" / "metrics.jsonl"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f"resumed from {tmp_path / 'w' / 'checkpoints'} at step {saved[0]}" in done.stdout + done.stderr
    assert (tmp_path / "w" / "export" / "audiorep_model.json").is_file()
    rows = [json.loads(ln) for ln in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 61))
    assert list((tmp_path / "w").glob("events.out.tfevents.*"))
