"""The classifier registry and its contract, the validation split, and kNN / SimpleShot against sklearn."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

from biobench.classifiers import CLASSIFIERS, ClassifierParamsError
from biobench.classifiers.split import stratified_split
from biobench.errors import ConfigError
from biobench.registry import UnknownNameError


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def clusters(n: int, d: int, n_classes: int, seed: int, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, d))
    y = rng.integers(0, n_classes, n)
    x = centres[y] + spread * rng.standard_normal((n, d))
    return x.astype(np.float32), (y * 3 + 7).astype(np.int64)  # labels need not be 0..K-1


@pytest.fixture(scope="module")
def data():
    x, y = clusters(500, 16, 6, seed=0)
    return x[:400], y[:400], x[400:], y[400:]


def test_registry_lists_the_protocols():
    assert {"logreg", "knn", "simpleshot"} <= set(CLASSIFIERS.names())
    with pytest.raises(UnknownNameError, match="known: .*logreg"):
        CLASSIFIERS.get("logistic")


@pytest.mark.parametrize("name", ["logreg", "knn", "simpleshot"])
def test_unknown_param_is_a_type_error_listing_the_accepted_ones(name):
    with pytest.raises(TypeError, match="accepts") as caught:
        CLASSIFIERS.get(name)(bogus=1, seed=0, device="cpu")
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ClassifierParamsError)
    assert "'bogus'" in str(caught.value) and "config.yaml" in str(caught.value)


@pytest.mark.parametrize(
    "name, params, fragment",
    [
        ("logreg", {"Cs": []}, "Cs"),
        ("logreg", {"Cs": [1.0, -2.0]}, "Cs"),
        ("logreg", {"val_fraction": 1.0}, "val_fraction"),
        ("logreg", {"max_iter": 0}, "max_iter"),
        ("logreg", {"tol": 0}, "tol"),
        ("logreg", {"tol": "1e-6"}, "write 1.0e-6"),
        ("logreg", {"Cs": ["1e-3", 1.0]}, "write 1.0e-6"),
        ("logreg", {"val_fraction": "0.2"}, "val_fraction"),
        ("logreg", {"metric": "auroc"}, "metric"),
        ("knn", {"k": 0}, "k"),
        ("knn", {"distance": "manhattan"}, "distance"),
        ("simpleshot", {"device": "tpu"}, "device"),
    ],
)
def test_bad_values_raise_config_errors_naming_the_param(name, params, fragment):
    with pytest.raises(ConfigError, match=fragment):
        CLASSIFIERS.get(name)(**params)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["logreg", "knn", "simpleshot"])
def test_contract_shapes_and_summary(name, device, data):
    x, y, x_test, _ = data
    clf = CLASSIFIERS.get(name)(seed=0, device=device, metric="accuracy")
    clf.fit(x, y)
    y_pred, prob = clf.predict(x_test)
    assert y_pred.dtype == np.int64 and prob.dtype == np.float32
    assert y_pred.shape == prob.shape == (len(x_test),)
    assert set(y_pred) <= set(y) and ((prob > 0) & (prob <= 1)).all()
    summary = json.loads(json.dumps(clf.summary()))
    assert summary["classifier"] == name and summary["device"] == device and summary["fit_seconds"] >= 0


@pytest.mark.parametrize("name", ["logreg", "knn", "simpleshot"])
def test_boundary_checks(name, data):
    x, y, x_test, _ = data
    clf = CLASSIFIERS.get(name)(device="cpu")
    with pytest.raises(Exception, match="n"):  # jaxtyping: rows of x and y disagree
        clf.fit(x, y[:-1])
    with pytest.raises(Exception):  # float64 features are not the contract
        clf.fit(x.astype(np.float64), y)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="1 rows .* NaN"):
        clf.fit(bad, y)
    with pytest.raises(RuntimeError, match="fit"):
        clf.predict(x_test)
    clf.fit(x, y)
    with pytest.raises(ValueError, match="dimensional"):
        clf.predict(x_test[:, :-1])


@pytest.mark.parametrize("name", ["logreg", "knn", "simpleshot"])
def test_read_only_arrays_as_read_from_parquet_are_taken_without_warnings(name, data):
    arrays = [a.copy() for a in data[:3]]
    for a in arrays:
        a.flags.writeable = False
    x, y, x_test = arrays
    clf = CLASSIFIERS.get(name)(Cs=[1.0], device="cpu") if name == "logreg" else CLASSIFIERS.get(name)(device="cpu")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*writ")
        clf.fit(x, y)
        clf.predict(x_test)


def test_split_is_stratified_seeded_and_keeps_every_class_in_fitting():
    y = np.array([0] * 50 + [1] * 10 + [2] * 2 + [3])  # class 3 has a single row
    fit, val = stratified_split(y, 0.2, seed=1)
    assert np.array_equal(np.sort(np.concatenate([fit, val])), np.arange(len(y)))
    assert set(y[fit]) == {0, 1, 2, 3}
    assert np.bincount(y[val], minlength=4).tolist() == [10, 2, 1, 0]
    again, _ = stratified_split(y, 0.2, seed=1)
    other, _ = stratified_split(y, 0.2, seed=2)
    assert np.array_equal(fit, again) and not np.array_equal(fit, other)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("distance, k", [("euclidean", 5), ("cosine", 5), ("euclidean", 1), ("cosine", 4)])
def test_knn_matches_sklearn(distance, k, device, data):
    x, y, x_test, _ = data
    ours = CLASSIFIERS.get("knn")(k=k, distance=distance, device=device)
    ours.fit(x, y)
    y_pred, prob = ours.predict(x_test)
    ref = KNeighborsClassifier(n_neighbors=k, metric=distance, algorithm="brute").fit(x, y)
    assert np.array_equal(y_pred, ref.predict(x_test))
    np.testing.assert_allclose(prob, ref.predict_proba(x_test).max(axis=1), atol=1e-6)


def test_knn_batches_agree_with_one_batch(data, monkeypatch):
    x, y, x_test, _ = data
    clf = CLASSIFIERS.get("knn")(k=3, device="cpu")
    clf.fit(x, y)
    whole = clf.predict(x_test)
    monkeypatch.setattr("biobench.classifiers.geometry.BATCH_ELEMENTS", 7 * len(x))
    batched = clf.predict(x_test)
    assert np.array_equal(whole[0], batched[0]) and np.array_equal(whole[1], batched[1])


def test_knn_k_larger_than_train_is_a_clear_error(data):
    x, y, *_ = data
    with pytest.raises(ConfigError, match="lower k"):
        CLASSIFIERS.get("knn")(k=10, device="cpu").fit(x[:5], y[:5])


@pytest.mark.parametrize("device", DEVICES)
def test_simpleshot_matches_nearest_centroid_on_transformed_features(device, data):
    x, y, x_test, _ = data
    ours = CLASSIFIERS.get("simpleshot")(device=device)
    ours.fit(x, y)
    y_pred, prob = ours.predict(x_test)

    mean = x.mean(axis=0)

    def transform(rows):
        centred = rows - mean
        return centred / np.linalg.norm(centred, axis=1, keepdims=True)

    ref = NearestCentroid().fit(transform(x), y)
    assert np.array_equal(y_pred, ref.predict(transform(x_test)))
    d2 = ((transform(x_test)[:, None, :] - ref.centroids_[None]) ** 2).sum(-1)
    expected = np.exp(-d2 / 2) / np.exp(-d2 / 2).sum(1, keepdims=True)
    np.testing.assert_allclose(prob, expected.max(axis=1), atol=1e-5)
