"""The "svm" protocol's search (per-fold Gram matrices, precomputed kernels) against the sklearn RandomizedSearchCV it
replaces: the same candidates, fold scores, choice and refitted model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from biobench.classifiers import CLASSIFIERS, svm


def task(n: int, d: int, n_classes: int, seed: int, signal: float = 0.08):
    """NeWT-like: a few hundred rows of d-dimensional features, classes that overlap (cv accuracy well below 1)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes * 3 + 1  # labels 1, 4, 7: not 0..k-1
    rng.shuffle(y)
    x = signal * rng.standard_normal((n_classes, d))[y // 3] + rng.standard_normal((n, d)) + 0.3
    return x.astype(np.float32), y


def protocol_features(x):
    """The features the search sees (the protocol's centring and normalising)."""
    unit = svm._unit_rows(x)
    return svm._unit_rows(unit - unit.mean(axis=0, keepdims=True))


@pytest.mark.parametrize("n, d, n_classes, metric, n_iter, seed", [
    (240, 384, 2, "accuracy", 40, 0),
    (180, 256, 3, "macro_f1", 30, 5),
])
def test_search_matches_randomized_search_cv(n, d, n_classes, metric, n_iter, seed):
    x, y = task(n, d, n_classes, seed)
    x_test, _ = task(90, d, n_classes, seed + 100)
    clf = CLASSIFIERS.get("svm")(n_iter=n_iter, metric=metric, seed=seed)
    clf.fit(x, y)
    ref = clf.reference_search(5).fit(protocol_features(x), y)

    # every candidate, fold by fold
    candidates = clf._candidates()
    assert [{"svc__" + k: v for k, v in c.items()} for c in candidates] == ref.cv_results_["params"]
    folds = [svm._prepare_fold(protocol_features(x), y, tr, va) for tr, va in StratifiedKFold(5).split(x, y)]
    scores = svm._score_candidates(folds, candidates, svm.SCORING[metric])
    expected = np.stack([ref.cv_results_[f"split{j}_test_score"] for j in range(5)], axis=1)
    np.testing.assert_array_equal(scores, expected)
    assert len(np.unique(np.round(scores.mean(axis=1), 12))) > 3  # the candidates do differ

    # the choice and its record
    s, best = clf.summary(), ref.best_params_
    assert (s["kernel"], s["C"], s["gamma"]) == (best["svc__kernel"], best["svc__C"], best["svc__gamma"])
    assert s["cv_score"] == ref.best_score_ and s["search"] == f"random, {n_iter} candidates, 5-fold"

    # the refitted model
    y_pred, prob = clf.predict(x_test)
    x_test_prepared = svm._unit_rows(svm._unit_rows(x_test) - clf.mean)
    np.testing.assert_array_equal(y_pred, ref.predict(x_test_prepared))
    np.testing.assert_allclose(clf.model.decision_function(x_test_prepared),
                               ref.decision_function(x_test_prepared), rtol=0, atol=1e-6)
    assert prob.dtype == np.float32 and ((prob > 0) & (prob <= 1)).all()


def test_ties_go_to_the_first_best_candidate():
    # separable classes: many candidates score 1.0; RandomizedSearchCV takes the first of them
    x, y = task(60, 32, 2, seed=1, signal=3.0)
    clf = CLASSIFIERS.get("svm")(n_iter=20, metric="accuracy", seed=3)
    clf.fit(x, y)
    ref = clf.reference_search(5).fit(protocol_features(x), y)
    assert (ref.cv_results_["mean_test_score"] == ref.best_score_).sum() > 1
    best = ref.best_params_
    assert (clf.summary()["C"], clf.summary()["kernel"]) == (best["svc__C"], best["svc__kernel"])


@pytest.mark.parametrize("kernel", ["linear", "rbf", "sigmoid", "poly"])
def test_precomputed_kernels_are_svcs_kernels(kernel):
    x, y = task(120, 64, 3, seed=2)
    train, val = np.arange(90), np.arange(90, 120)
    fold = svm._prepare_fold(x, y, train, val)
    scaler = StandardScaler().fit(x[train])
    k_train, k_val = svm._kernels(fold, kernel, 7e-4)
    ours = SVC(kernel="precomputed", C=0.5).fit(k_train, y[train])
    theirs = SVC(kernel=kernel, C=0.5, gamma=7e-4).fit(scaler.transform(x[train]), y[train])
    np.testing.assert_array_equal(ours.support_, theirs.support_)
    np.testing.assert_allclose(ours.decision_function(k_val), theirs.decision_function(scaler.transform(x[val])),
                               rtol=0, atol=1e-9)


def test_libsvm_binding_predicts_what_svc_predicts():
    x, y = task(100, 48, 3, seed=4)
    fold = svm._prepare_fold(x, y, np.arange(80), np.arange(80, 100))
    for kernel, C in [("rbf", 3.0), ("linear", 0.01), ("poly", 8.0), ("sigmoid", 0.2)]:
        k_train, k_val = svm._kernels(fold, kernel, 5e-4)
        np.testing.assert_array_equal(svm._libsvm_fit_predict(k_train, fold.y_train, k_val, C),
                                      svm._svc_fit_predict(k_train, fold.y_train, k_val, C))
    assert svm._fit_predict() is svm._libsvm_fit_predict  # the fast path is in use with this scikit-learn


def test_parallel_search_is_the_sequential_one():
    x, y = task(100, 64, 2, seed=6)
    one = CLASSIFIERS.get("svm")(n_iter=12, metric="accuracy", seed=1, n_jobs=1)
    two = CLASSIFIERS.get("svm")(n_iter=12, metric="accuracy", seed=1, n_jobs=2)
    one.fit(x, y)
    two.fit(x, y)
    keys = ("kernel", "C", "gamma", "cv_score")
    assert [one.summary()[k] for k in keys] == [two.summary()[k] for k in keys]
