"""Evaluate as Dask tasks: the same tables, bit for bit, with 1 worker, 4 threads or 2 processes, and
task arguments that carry keys, not data (the workers read the store themselves)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from gexplain.pipelines.evaluate import dispatch
from gexplain.pipelines.evaluate.run import evaluate_store
from gexplain.pipelines.evaluate.stage import EvaluateParams
from test_evaluate_store import N_GENES, N_PER_CLASS, make_demo_store, write_per_model_run

TABLES = (
    "ground_truth",
    "reproducibility_samples",
    "reproducibility_classes",
    "faithfulness",
    "top_genes",
    "class_overlaps",
    "hidden_to_de",
)


def _options(workers: int) -> EvaluateParams:
    return EvaluateParams(
        k=5,
        block=7,  # 40 samples: 6 blocks, the last one short
        faithfulness_samples=30,  # 4 blocks of 8
        faithfulness_ks=[1, 5],
        faithfulness=["openxai", "replace"],
        faithfulness_perturbations=20,
        n_random=2,
        workers=workers,
        device="cpu",
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo store of test_evaluate_store plus a run with per-model means (between-model pairs)."""
    url = make_demo_store(tmp_path_factory.mktemp("distributed"))
    write_per_model_run(url)
    return url


@pytest.fixture(scope="module")
def reference(store: str) -> dict[str, pd.DataFrame]:
    """One task at a time in this thread."""
    with dask.config.set(scheduler="synchronous"):
        return evaluate_store(store, _options(1).model_copy(update={"name": "sync"})).tables


def _same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert set(a) == set(b)
    for name in TABLES:
        assert name in a, f"table {name} was not produced"
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True)


def test_every_part_runs(reference: dict[str, pd.DataFrame]) -> None:
    assert set(TABLES) <= set(reference)
    rs = reference["reproducibility_samples"]
    pairs = set(zip(rs["run_a"], rs["run_b"], strict=True))
    assert ("pm/model0", "pm/model1") in pairs and ("r1", "r2") in pairs


def test_four_threads_identical(store: str, reference: dict[str, pd.DataFrame]) -> None:
    with dask.config.set(scheduler="threads", num_workers=4):
        got = evaluate_store(store, _options(4).model_copy(update={"name": "threads"})).tables
    _same(reference, got)


def test_two_worker_processes_identical(store: str, reference: dict[str, pd.DataFrame]) -> None:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    try:
        with distributed.Client(cluster) as client, dask.config.set(scheduler=client.get):
            assert dispatch.scheduler_kind() == "remote"
            assert dispatch.resolve_workers(0) == 2
            got = evaluate_store(store, _options(0).model_copy(update={"name": "procs"})).tables
            ran_on = client.run(lambda: __import__("os").getpid())
    finally:
        cluster.close()
    assert len(set(ran_on.values())) == 2
    _same(reference, got)


def _arrays(value: Any) -> Iterator[np.ndarray]:
    """Every numpy array inside a task argument (through tuples, lists, dicts and dataclasses)."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _arrays(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _arrays(v)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _arrays(getattr(value, f.name))


def test_tasks_carry_keys_not_data(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No task argument holds an xarray object or a (sample, gene) block: a worker reads its block from
    the store. 1-d arrays are allowed (a block's positions, a per-gene vector), never 2-d data."""
    seen: list[tuple[str, Any]] = []
    real = dispatch.run_tasks

    def spy(calls: Any, *args: Any, **kwargs: Any) -> list[Any]:
        seen.extend((fn.__name__, a) for fn, a in calls)
        return real(calls, *args, **kwargs)

    monkeypatch.setattr("gexplain.pipelines.evaluate.run.run_tasks", spy)
    with dask.config.set(scheduler="synchronous"):
        evaluate_store(store, _options(1).model_copy(update={"name": "spy"}))
    names = {name for name, _ in seen}
    assert len(names) >= 5, names  # ground truth, both reproducibility kinds, faithfulness, biology, hidden
    for name, args in seen:
        for a in args:
            assert not isinstance(a, (xr.Dataset, xr.DataArray)), f"{name} got an xarray object"
        for arr in _arrays(args):
            assert arr.ndim <= 1, f"{name} got a {arr.shape} array"
            assert arr.size <= 2 * N_PER_CLASS + N_GENES, f"{name} got {arr.size} values"
