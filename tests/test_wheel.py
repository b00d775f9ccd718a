"""The package builds as a wheel that works outside the source tree: install into a fresh venv, embed a clip."""

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(args, cwd, env=None):
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{' '.join(map(str, args))} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_embeds_a_clip(tmp_path):
    # Build from a copy of the sources so the checkout gets no build/ or egg-info (and no races with others).
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in ("audiorep", "configs"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(tmp_path / "dist"), "-q"]
    if importlib.util.find_spec("setuptools") is not None:
        build.append("--no-build-isolation")
    _run(build, cwd=tmp_path)
    wheels = list((tmp_path / "dist").glob("audiorep-*.whl"))
    assert len(wheels) == 1
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for must in ("audiorep/__init__.py", "audiorep/hear.py", "audiorep/models/registry.py",
                 "audiorep/downstream/embed.py", "audiorep/audio/frontends.py", "audiorep/py.typed",
                 "audiorep/configs/tiny_masked_tokens.py"):  # the demo's recipe travels with the package
        assert must in names, f"{must} missing from the wheel"
    assert any(n.endswith("entry_points.txt") for n in names)

    # A fresh venv whose dependencies come from this interpreter's site-packages (offline), not the source tree.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).strip()
    Path(purelib, "_audiorep_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "--ignore-installed",
          "-q", str(wheels[0])], cwd=tmp_path)

    script = (
        "import audiorep, numpy as np, audiorep.hear\n"
        f"assert audiorep.__file__.startswith({str(venv)!r}), audiorep.__file__\n"
        "from audiorep import demo\n"
        f"assert str(demo.recipe_path()).startswith({str(venv)!r}), demo.recipe_path()\n"
        "m = audiorep.load('beats-tiny')\n"
        "e = m.scene(np.zeros((2, 16000), 'f4'))\n"
        "print(audiorep.__version__, e.shape, e.dtype)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = _run([str(py), "-c", script], cwd=elsewhere, env=env)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert out.split()[-4:] == [version, "(2,", "64)", "float32"]
    assert (venv / "bin" / "audiorep").exists()  # the console script
