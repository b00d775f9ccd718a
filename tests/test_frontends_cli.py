"""`audiorep features`: summary table, spectrogram PNG, clear errors for unreadable files."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tone

from audiorep.audio.io import save_audio
from audiorep.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def wavs(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.flac"
    save_audio(a, tone(440.0, 0.5, 16000), 16000)
    save_audio(b, tone(1500.0, 0.3, 22050), 22050)
    return a, b


@pytest.mark.parametrize("frontend", ["beats", "passt"])
def test_features_writes_a_png_with_one_panel_per_file(wavs, tmp_path, capsys, frontend):
    out = tmp_path / "plots" / "f.png"
    assert main(["features", str(wavs[0]), str(wavs[1]), "--frontend", frontend, "--png", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image

    height = matplotlib.image.imread(out).shape[0]
    assert height >= 2 * 250  # two stacked panels
    printed = capsys.readouterr().out
    assert "a.wav" in printed and "b.flac" in printed and f"wrote {out}" in printed


def test_features_prints_frames_and_bins_at_the_frontend_rate(wavs, capsys):
    assert main(["features", str(wavs[0]), "--frontend", "ssast"]) == 0
    assert "48 x 128" in capsys.readouterr().out  # 0.5 s at 16 kHz: 1 + (8000 - 400) // 160 frames


def test_features_reports_unreadable_files_and_writes_nothing(wavs, tmp_path, capsys):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    out = tmp_path / "f.png"
    assert main(["features", str(wavs[0]), str(bad), str(tmp_path / "missing.wav"), "--png", str(out)]) == 1
    err = capsys.readouterr().err
    assert "notes.wav: cannot decode audio" in err and "missing.wav: no such file" in err
    assert "2 of 3 file(s) unreadable" in err
    assert not out.exists()


def test_features_explains_a_clip_too_short_for_one_frame(tmp_path, capsys):
    short = tmp_path / "click.wav"
    save_audio(short, np.full(100, 0.1, np.float32), 16000)
    assert main(["features", str(short)]) == 1
    assert "shorter than one 400-sample frame" in capsys.readouterr().err


def test_the_command_keeps_compiled_programs_where_audiorep_xla_cache_says(wavs, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from audiorep.cli.runtime import compilation_cache_dir

    assert compilation_cache_dir({"AUDIOREP_XLA_CACHE": "off"}) is None
    assert compilation_cache_dir({"AUDIOREP_XLA_CACHE": "/x/y"}) == Path("/x/y")
    assert compilation_cache_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/audiorep/xla")
    cache = tmp_path / "xla"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update(AUDIOREP_XLA_CACHE=str(cache), JAX_PLATFORMS="cpu")
    run = [sys.executable, "-m", "audiorep.cli"]
    out = subprocess.run([*run, "features", str(wavs[0]), "--frontend", "ssast"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert any(cache.iterdir())  # the frontend's compiled program is on disk for the next run
    info = subprocess.run([*run, "info"], env={**env, "AUDIOREP_XLA_CACHE": "0"}, capture_output=True, text=True,
                          timeout=300)
    assert "XLA compile cache    off" in info.stdout


def test_a_script_re_executes_itself_once_with_tcmalloc_preloaded(tmp_path):
    import os
    import subprocess
    import sys

    from audiorep.cli.runtime import tcmalloc_path

    if tcmalloc_path() is None:
        pytest.skip("libtcmalloc-minimal4 is not installed")
    script = tmp_path / "bench.py"
    script.write_text("import os, sys\nfrom audiorep.cli.runtime import reexec_with_tcmalloc\n"
                      "print('start', flush=True)\nreexec_with_tcmalloc(sys.argv[1:], script=__file__)\n"
                      "print(os.environ.get('LD_PRELOAD', ''), *sys.argv[1:])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("AUDIOREP_NO_TCMALLOC", "LD_PRELOAD")}
    out = subprocess.run([sys.executable, str(script), "--steps", "3"], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == out[1] == "start"  # the second process is the re-executed one, and it does not loop
    assert len(out) == 3 and "tcmalloc" in out[2] and out[2].endswith("--steps 3")
