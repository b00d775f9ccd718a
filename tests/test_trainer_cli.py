"""`audiorep pretrain` end to end: Ctrl-C saves and exits, the same command resumes and exports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ctrl_c_saves_then_the_same_command_resumes_and_exports(tmp_path):
    cmd = [sys.executable, "-m", "audiorep.cli", "pretrain", "--config", str(ROOT / "configs/tiny_ssast.py"),
           "--workdir", str(tmp_path / "w"), f"--config.data.root={tmp_path / 'syn'}",
           "--config.data.synthetic.per_class=2", "--config.train.steps=60", "--config.train.log_every=1",
           "--config.train.checkpoint_every=1000"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    metrics = tmp_path / "w" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert p.poll() is None and time.time() < deadline, p.stdout.read()[-3000:] if p.poll() is not None else ""
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 130, out[-3000:]
    assert "generating it with audiorep.data.synthetic" in out
    assert "run the same command to resume" in out
    saved = [int(d.name) for d in (tmp_path / "w" / "checkpoints").iterdir() if d.name.isdigit()]
    assert len(saved) == 1 and 3 <= saved[0] < 60
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f"resumed from {tmp_path / 'w' / 'checkpoints'} at step {saved[0]}" in done.stdout + done.stderr
    assert (tmp_path / "w" / "export" / "audiorep_model.json").is_file()
    rows = [json.loads(ln) for ln in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 61))
    assert list((tmp_path / "w").glob("events.out.tfevents.*"))
