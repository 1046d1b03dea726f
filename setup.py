"""Build hook (metadata lives in pyproject.toml): ship the checkout's resource folders in the wheel.

The embedded shape bank, the organ graphs, the configs, the example CT they use and the licence
files stay at the top of the checkout (the layout DESIGN.md shows); ``build_py`` copies them into
the wheel under ``anatomix/_data/`` at the *same relative paths*, so a relative path inside a
shipped config (``../graphs/abdomen.yaml``) resolves the same way in a checkout and in an
installed package. ``packages.find`` stays automatic (new sub-packages need no edit here).
Editable installs read the checkout directly (``anatomix.resources.resource_root``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# checkout-relative paths copied to anatomix/_data/<same path>; keep in sync with MANIFEST.in
RESOURCES = (
    "LICENSE",
    "NOTICE",
    "graphs",
    "configs",
    "shapebank/README.md",
    "shapebank/default",
    "tests/fixtures/totalsegmentator/LICENSE.Apache-2.0.txt",
    "tests/fixtures/totalsegmentator/datalist.json",
    "tests/fixtures/totalsegmentator/example_ct.nii.gz",
    "tests/fixtures/totalsegmentator/example_seg_fast_force_split.nii.gz",
)


class BuildPyWithResources(build_py):
    """``build_py`` that also copies :data:`RESOURCES` into ``anatomix/_data``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest_root = Path(self.build_lib) / "anatomix" / "_data"
        for rel in RESOURCES:
            src = ROOT / rel
            if not src.exists():
                raise FileNotFoundError(f"resource {rel} is missing from the source tree ({src})")
            dest = dest_root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
            else:
                shutil.copy2(src, dest)


setup(cmdclass={"build_py": BuildPyWithResources})
