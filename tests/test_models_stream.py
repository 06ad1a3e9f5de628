"""Issue 19 item 2: training streams from the store by chunk, bounded by its buffer, deterministic.

References: the stored array read with ``zarr`` directly (not through gexplain's reader), the
up-sampling counts in closed form, and today's in-memory training path.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import zarr
from gexplain.pipelines.models.data import (
    StoreMatrix,
    epoch_order,
    open_training_data,
    read_training_data,
    stratified_split,
    upsampled_epoch,
)
from gexplain.pipelines.models.persist import state_from_bytes
from gexplain.pipelines.models.replicates import replicate_jobs, run_jobs
from gexplain.pipelines.models.train import TrainParams, train_model
from gexplain.storage.errors import InputError
from gexplain.storage.store import create_store

N, G, CHUNK = 300, 40, 32  # 10 stored sample chunks (the last one short)
CHUNK_MB = CHUNK * G * 4 / 2**20


def _store(tmp_path, x=None, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], [150, 100, 50])
    rng.shuffle(y)
    if x is None:
        x = rng.normal(size=(N, G)).astype(np.float32) + y[:, None] * (np.arange(G) < 6)
    labels = np.array(["a", "b", "c", ""])[np.where(np.arange(N) % 37 == 5, 3, y)]  # a few unlabelled
    writer = create_store(
        str(tmp_path / "s.zarr"),
        sample_ids=np.array([f"S{i:04d}" for i in range(N)]),
        gene_ids=np.array([f"G{j:03d}" for j in range(G)]),
        coords={"sample_group": ("sample", labels)},
        layers={"log_expr": "float32"},
        chunks={"sample": CHUNK, "gene": 16},
    )
    writer.write_block({}, {"log_expr": x})
    return writer.commit(), x, labels


def _buffer(window_chunks: int) -> float:
    """buffer_mb that gives a window of ``window_chunks`` chunks (half the buffer is the window)."""
    return 2 * window_chunks * CHUNK_MB * 1.0001


def test_store_matrix_reads_the_stored_rows_and_pickles_small(tmp_path):
    url, _, labels = _store(tmp_path)
    data = open_training_data(url, "group", buffer_mb=_buffer(2))
    m = data.x
    assert isinstance(m, StoreMatrix) and m.window_chunks == 2 and m.cache_chunks == 4
    reference = zarr.open_group(url, mode="r")["log_expr"][:]  # zarr directly, no gexplain reader
    kept = np.nonzero(labels != "")[0]
    assert m.shape == (kept.size, G)
    rng = np.random.default_rng(1)
    for rows in (np.arange(kept.size), rng.permutation(kept.size)[:50], np.array([7, 7, 0])):
        np.testing.assert_array_equal(m[rows], reference[kept[rows]])
    assert m.peak_cached <= m.cache_chunks
    fresh = pickle.loads(pickle.dumps(m))  # what a Ray task receives: the handle, no cache
    assert len(pickle.dumps(m)) < 20_000 and fresh.chunk_reads == 0 and not fresh._cache
    before = m.chunk_reads
    m._reset()
    m[np.arange(kept.size)]  # sorted rows: every chunk read once
    assert m.chunk_reads == 10 and before > 0


def test_epoch_order_windows_chunks_keeps_upsampled_counts_and_reads_each_chunk_once(tmp_path):
    url, _, _ = _store(tmp_path)
    data = open_training_data(url, "group", buffer_mb=_buffer(3))
    m = data.x
    split = stratified_split(data.y, 0.1, 0.1, seed=2)
    order = epoch_order(m, split.train, data.y, np.random.default_rng(5))
    # up-sampling in closed form: every training sample at least once, every class to the largest
    counts = np.bincount(order, minlength=data.y.size)
    assert (counts[split.train] >= 1).all() and counts.sum() == order.size
    assert np.setdiff1d(np.nonzero(counts)[0], split.train).size == 0
    per_class = np.bincount(data.y[order])
    assert (per_class == np.bincount(data.y[split.train]).max()).all()
    # the order visits windows of <= 3 chunks one after another, each chunk in one window only
    chunks = m.chunk_of_row[order]
    windows, seen = [], set()
    for c in chunks:
        if not windows or (c not in windows[-1] and len(windows[-1]) == 3):
            assert c not in seen, "a chunk came back after its window closed"
            windows.append({int(c)})
        windows[-1].add(int(c))
        seen.add(int(c))
    assert all(len(w) <= 3 for w in windows) and len(windows) == 4  # 10 chunks -> 3+3+3+1
    # the epoch's minibatches read every chunk once, holding at most 2 windows
    m._reset()
    for start in range(0, order.size, 16):
        m[order[start : start + 16]]
    assert m.chunk_reads == 10 and m.peak_cached <= 6
    # the same seed gives the same order; a window spanning every chunk leaves today's order as is
    np.testing.assert_array_equal(order, epoch_order(m, split.train, data.y, np.random.default_rng(5)))
    wide = open_training_data(url, "group", buffer_mb=_buffer(10)).x
    np.testing.assert_array_equal(
        epoch_order(wide, split.train, data.y, np.random.default_rng(5)),
        upsampled_epoch(split.train, data.y, np.random.default_rng(5)),
    )


def _weights(result):
    return state_from_bytes(result.weights)


def _same(a, b) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_streamed_training_equals_in_memory_training_and_is_worker_independent(tmp_path, ray_runtime):
    url, _, _ = _store(tmp_path)
    memory = read_training_data(url, "group")
    params = TrainParams(max_epochs=3, batch_size=32)
    split = stratified_split(memory.y, seed=4)
    # a window spanning all chunks: the stream must deliver exactly today's in-memory minibatches
    wide = open_training_data(url, "group", buffer_mb=_buffer(10))
    classes = memory.classes
    a = train_model(memory.x, memory.y, split, classes, params, seed=11)
    b = train_model(wide.x, wide.y, split, classes, params, seed=11)
    assert _same(a, b) and a.metrics["history"] == b.metrics["history"]
    # a small window: another order, but the same for a seed whether 1 or 2 Ray workers or none
    narrow = open_training_data(url, "group", buffer_mb=_buffer(2))
    jobs = replicate_jobs(split, params, seed=4, k=2)
    here = run_jobs(narrow, jobs, use_ray=False)
    one = run_jobs(narrow, jobs, use_ray=True, max_parallel=1)
    two = run_jobs(narrow, jobs, use_ray=True, max_parallel=2)
    for x, y_, z in zip(here, one, two, strict=True):
        assert _same(x, y_) and _same(x, z)
    assert not _same(here[0], a)  # the chunk-windowed order is not the global shuffle
    assert here[0].metrics["accuracy"] > 0.6  # still learns the 6 informative genes


def test_nan_in_a_chunk_is_an_input_error_from_the_training_task(tmp_path, ray_runtime):
    x = np.random.default_rng(0).normal(size=(N, G)).astype(np.float32)
    x[200, 3] = np.nan
    url, _, _ = _store(tmp_path, x=x)
    data = open_training_data(url, "group", buffer_mb=_buffer(2))  # labels only: no error yet
    split = stratified_split(data.y, seed=0)
    jobs = replicate_jobs(split, TrainParams(max_epochs=1, batch_size=32), seed=0, k=1)
    with pytest.raises(InputError, match=r"first at sample 'S0200', gene 'G003'"):
        run_jobs(data, jobs, use_ray=True)
