"""Package layout: one import package, ``gexplain``, over the repository's top-level folders.

The repository keeps ``storage/``, ``cluster/`` and ``pipelines/`` at its root; installed, they are
``gexplain.storage``, ``gexplain.cluster`` and ``gexplain.pipelines``, so gexplain puts no generic
``storage``, ``cluster`` or ``pipelines`` module on a user's import path. ``gexplain/`` holds the
notebook API (``import gexplain``). The subpackage list is computed, so a new folder needs no entry
here; everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

FOLDERS = ("storage", "cluster", "pipelines")

setup(
    packages=["gexplain"]
    + [f"gexplain.{name}" for name in find_packages(include=[*FOLDERS, *(f"{f}.*" for f in FOLDERS)])],
    package_dir={"gexplain": "gexplain", **{f"gexplain.{f}": f for f in FOLDERS}},
)
