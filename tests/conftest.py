"""Shared fixtures: one Ray runtime per test session, the shared reference data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from gexplain.cluster.runtime import Runtime, start_runtime

SHARED_DATA = Path(
    os.environ.get("GEXPLAIN_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[Runtime]:
    """The one embedded Ray runtime of the test session (2 CPUs)."""
    runtime = start_runtime(num_cpus=2, object_store_memory=512 * 1024**2)
    runtime.ensure_ray()
    yield runtime
    runtime.shutdown()


@pytest.fixture(scope="session")
def local_runtime() -> Runtime:
    """A runtime for stages that need only Dask (Ray is not started unless a stage asks)."""
    return start_runtime(num_cpus=2)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when it is absent (a user's checkout has none)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _release_leases() -> Iterator[None]:
    """Drop the writer leases a test took in this process, so later tests and subprocesses may write."""
    yield
    from gexplain.storage.lease import release_all

    release_all()
