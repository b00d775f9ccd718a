"""Build step beside pyproject.toml (which holds everything else): the wheel carries the experiment files.

configs/*.py are not a package, but `audiorep demo` runs configs/tiny_masked_tokens.py (audiorep/demo.py), so a
wheel copies them to audiorep/configs/, where an installed demo finds them. Editable installs read configs/
from the checkout itself.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONFIGS = Path(__file__).resolve().parent / "configs"


class BuildPyWithConfigs(build_py):
    """build_py, plus configs/*.py -> <build>/audiorep/configs/ (not in editable mode)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "audiorep" / "configs"
        self.mkpath(str(dest))
        for src in sorted(CONFIGS.glob("*.py")):
            self.copy_file(str(src), str(dest / src.name))


setup(cmdclass={"build_py": BuildPyWithConfigs})
