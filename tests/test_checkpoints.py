"""Checkpoint I/O (gexplain.storage.checkpoints) and model loading with gene alignment (gexplain.pipelines.models.load)."""

from __future__ import annotations

import hashlib
import logging
from importlib.metadata import version

import numpy as np
import pytest
import torch
import zarr
from gexplain.pipelines.models.data import read_training_data, stratified_split
from gexplain.pipelines.models.load import load_models
from gexplain.pipelines.models.replicates import replicate_jobs, run_jobs, save_replicates
from gexplain.pipelines.models.train import TrainParams
from gexplain.storage.checkpoints import (
    list_checkpoints,
    list_model_sets,
    load_checkpoint,
    read_metadata,
    replicate_url,
    save_checkpoint,
)
from gexplain.storage.errors import InputError
from test_models_train import gaussian_classes, make_store


@pytest.mark.parametrize("root", ["local", "memory://ckpt-test/store.zarr"])
def test_checkpoint_round_trip_local_and_fsspec(tmp_path, root):
    store = str(tmp_path / "store.zarr") if root == "local" else root
    weights = b"\x00\x01weights" * 100
    save_checkpoint(store, "set1", 1, weights, {"arch": "mlp", "genes": ["A", "B"]})
    save_checkpoint(store, "set1", 0, b"other", {"arch": "cnn"})
    got, meta = load_checkpoint(store, "set1", 1)
    assert got == weights
    assert meta["arch"] == "mlp" and meta["genes"] == ["A", "B"] and meta["replicate"] == 1
    assert meta["sha256"] == hashlib.sha256(weights).hexdigest()
    assert list_checkpoints(store, "set1") == [0, 1]
    assert list_model_sets(store) == ["set1"]
    assert list_checkpoints(store, "nothing") == []


def test_unlisted_replicate_is_not_listed_and_corruption_is_refused(tmp_path):
    store = str(tmp_path / "s")
    save_checkpoint(store, "m", 0, b"abc", {})
    zarr.create_array(store=replicate_url(store, "m", 3), shape=(3,), dtype="uint8")  # never listed: killed
    assert list_checkpoints(store, "m") == [0]
    arr = zarr.open_array(replicate_url(store, "m", 0), mode="r+")
    arr[:] = np.frombuffer(b"abd", dtype=np.uint8)
    with pytest.raises(InputError, match="SHA-256"):
        load_checkpoint(store, "m", 0)
    with pytest.raises(InputError, match="model set name"):
        save_checkpoint(store, "../evil", 0, b"", {})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two MLP replicates and one CNN trained (outside Ray) on a small separable set."""
    x, y = gaussian_classes(30, 20, 3, seed=4)
    x[:, 19] = 7.5  # a constant gene: its standard deviation is replaced by 1
    url = make_store(
        str(tmp_path_factory.mktemp("ck") / "s.zarr"), x, {"sample_tissue": np.array(["a", "b", "c"])[y]}
    )
    data = read_training_data(url, "sample_tissue")
    split = stratified_split(data.y, seed=0)
    for name, params, k in (
        ("mlp", TrainParams(max_epochs=3, batch_size=16), 2),
        ("cnn", TrainParams(arch="cnn", max_epochs=2, batch_size=16, gene_order="random"), 1),
    ):
        results = run_jobs(data, replicate_jobs(split, params, 1, k), use_ray=False)
        save_replicates(url, name, data, split, results, run_seed=1)
    return url, data, split


def test_saved_metadata_is_complete(trained):
    url, data, split = trained
    meta = read_metadata(url, "mlp", 1)
    for key in (
        "arch",
        "hyperparameters",
        "params",
        "genes",
        "classes",
        "layer",
        "label",
        "input_transform",
        "metrics",
        "seed",
        "versions",
        "test_samples",
    ):
        assert key in meta
    assert meta["genes"] == data.genes.tolist() and meta["classes"] == ["a", "b", "c"]
    assert meta["versions"]["torch"] == version("torch")
    np.testing.assert_allclose(meta["gene_mean"], data.x[split.train].mean(axis=0), rtol=1e-5)
    assert sorted(meta["test_samples"]) == sorted(data.samples[split.test].tolist())


@pytest.mark.parametrize("model_set", ["mlp", "cnn"])
def test_round_trip_predictions_and_standardisation(trained, model_set):
    url, data, split = trained
    for model in load_models(url, model_set):
        std = model.module.standardize
        train = data.x[split.train].astype(np.float64)
        np.testing.assert_allclose(std.mean.numpy(), train.mean(axis=0), rtol=1e-5)
        ref_std = train.std(axis=0)
        ref_std[ref_std < 1e-6] = 1.0
        np.testing.assert_allclose(std.std.numpy(), ref_std, rtol=1e-4)
        with torch.no_grad():
            pred = model.module(torch.from_numpy(data.x[split.test])).argmax(1).numpy()
        assert model.metrics["accuracy"] == pytest.approx(float(np.mean(pred == data.y[split.test])))
        assert not model.module.training


@pytest.mark.parametrize("model_set", ["mlp", "cnn"])
def test_alignment_by_gene_id_with_fill(trained, model_set, caplog):
    url, data, _ = trained
    genes = data.genes
    rng = np.random.default_rng(0)
    perm = rng.permutation(genes.size)
    dropped, kept = perm[:4], perm[4:]
    target = np.concatenate([genes[kept], ["EXTRA1", "EXTRA2"]])
    x = data.x[:12].copy()
    full = x.copy()
    full[:, dropped] = 2.0  # what the model should see for genes the new store lacks
    new_input = np.concatenate([x[:, kept], rng.normal(size=(12, 2)).astype(np.float32)], axis=1)
    originals = load_models(url, model_set)
    with caplog.at_level(logging.WARNING):
        aligned = load_models(url, model_set, genes=target, fill=2.0)
    assert "4 of 20 genes missing" in caplog.text
    for orig, al in zip(originals, aligned, strict=True):
        assert list(al.genes) == list(target) and sorted(al.filled_genes) == sorted(genes[dropped])
        with torch.no_grad():
            expected = orig.module(torch.from_numpy(full))
            got = al.module(torch.from_numpy(new_input))
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # fill="mean" feeds each gene's training mean
    by_mean = load_models(url, model_set, genes=target, fill="mean")[0]
    full_mean = x.copy()
    full_mean[:, dropped] = np.asarray(originals[0].metadata["gene_mean"], dtype=np.float32)[dropped]
    with torch.no_grad():
        torch.testing.assert_close(
            by_mean.module(torch.from_numpy(new_input)),
            originals[0].module(torch.from_numpy(full_mean)),
            rtol=1e-4,
            atol=1e-4,
        )


def test_missing_genes_without_fill_is_an_error(trained):
    url, data, _ = trained
    with pytest.raises(InputError, match=r"needs 1 genes.*G0000.*fill"):
        load_models(url, "mlp", genes=data.genes[1:])
    with pytest.raises(InputError, match=r"no model set 'nope'.*cnn, mlp"):
        load_models(url, "nope")


def test_cnn_alignment_to_more_genes_than_grid_cells(trained):
    url, data, _ = trained
    original = load_models(url, "cnn")[0]
    assert original.module.grid**2 == 64
    extra = np.array([f"NEW{i}" for i in range(60)])
    target = np.concatenate([extra[:30], data.genes[::-1], extra[30:]])  # 80 genes > 64 cells
    aligned = load_models(url, "cnn", genes=target)[0]
    x = data.x[:5]
    new_input = np.concatenate([np.full((5, 30), 9.0), x[:, ::-1], np.full((5, 30), -9.0)], axis=1)
    with torch.no_grad():
        expected = original.module(torch.from_numpy(x))
        got = aligned.module(torch.from_numpy(new_input.astype(np.float32)))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert aligned.filled_genes.size == 0
