"""Cross-validation: folds and metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from gexplain.pipelines.models.cv import cross_validate, fold_splits
from gexplain.pipelines.models.data import read_training_data, stratified_split, upsampled_epoch
from gexplain.pipelines.models.metrics import classification_metrics
from gexplain.pipelines.models.train import TrainParams
from gexplain.storage.errors import InputError
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score
from test_models_train import gaussian_classes, make_store


def _check_against_sklearn(y_true, y_pred, classes):
    m = classification_metrics(y_true, y_pred, classes)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    np.testing.assert_array_equal(
        m["confusion"], confusion_matrix(y_true, y_pred, labels=np.arange(len(classes)))
    )
    present = np.unique(y_true)
    recall = recall_score(y_true, y_pred, labels=present, average=None)
    assert [m["per_class_accuracy"][classes[c]] for c in present] == pytest.approx(recall)
    assert set(m["per_class_accuracy"]) == {classes[c] for c in present}


def test_metrics_equal_sklearn_including_absent_classes():
    rng = np.random.default_rng(0)
    classes = np.array([f"c{i}" for i in range(6)])
    y_true = rng.integers(0, 5, size=200)  # class 5 never true
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 6, size=200))
    _check_against_sklearn(y_true, y_pred, classes)
    _check_against_sklearn(y_true, np.zeros_like(y_true), classes)  # one predicted class


def test_cross_validation_on_ray_matches_sklearn(tmp_path, ray_runtime):
    x, y = gaussian_classes(25, 24, 3, seed=8, shift=1.2)  # overlapping: errors happen
    url = make_store(str(tmp_path / "cv.zarr"), x, {"sample_tissue": np.array(["a", "b", "c"])[y]})
    data = read_training_data(url, "sample_tissue")
    result = cross_validate(data, TrainParams(max_epochs=4, batch_size=16), k=3, seed=2)
    np.testing.assert_array_equal(result.y_true, data.y)
    assert sorted(np.unique(result.fold)) == [0, 1, 2]
    _check_against_sklearn(result.y_true, result.y_pred, data.classes)
    for f, fold in enumerate(result.metrics["folds"]):
        in_fold = result.fold == f
        assert fold["accuracy"] == pytest.approx(accuracy_score(data.y[in_fold], result.y_pred[in_fold]))


def test_folds_and_split_are_stratified_and_disjoint():
    y = np.repeat([0, 1, 2], [30, 12, 7])
    splits = fold_splits(y, 3, 0.1, seed=1)
    tests = np.concatenate([s.test for s in splits])
    np.testing.assert_array_equal(np.sort(tests), np.arange(y.size))
    for s in splits:
        assert not (set(s.train) & set(s.val) or set(s.train) & set(s.test) or set(s.val) & set(s.test))
        assert s.train.size + s.val.size + s.test.size == y.size
        counts = np.bincount(y[s.test], minlength=3)
        assert np.all(np.abs(counts - np.bincount(y) / 3) <= 1)
    split = stratified_split(y, 0.1, 0.1, seed=0)
    np.testing.assert_array_equal(np.bincount(y[split.test], minlength=3), np.round(np.bincount(y) * 0.1))
    with pytest.raises(InputError, match="smallest class size \\(7\\)"):
        fold_splits(y, 8, 0.1, seed=0)


def test_upsampling_balances_each_epoch():
    y = np.repeat([0, 1, 2], [50, 10, 3])
    train = np.arange(y.size)
    order = upsampled_epoch(train, y, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(y[order]), [50, 50, 50])
    assert set(order) == set(train)  # every sample at least once
