"""The fast weighted metrics equal scikit-learn's on every materialised (resampled) sample."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from biobench.registry import UnknownNameError
from biobench.stats.bootstrap import resample_indices, resample_weights
from biobench.stats.metrics import METRICS, Sample, per_sample_metric, point_estimate

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: "y_pred contains classes not in y_true"

SKLEARN = {
    "accuracy": accuracy_score,
    "macro_f1": lambda y_true, y_pred: f1_score(y_true, y_pred, average="macro"),
    "balanced_accuracy": balanced_accuracy_score,
}


def make_sample(y_true, y_pred) -> Sample:
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.atleast_2d(np.asarray(y_pred, dtype=np.int64))
    return Sample(y_true, y_pred, (y_pred == y_true).astype(np.float64))


def sklearn_on_weighted(fn, sample: Sample, weights: np.ndarray) -> np.ndarray:
    """Reference: repeat each example as often as its weight says, then call scikit-learn."""
    out = np.empty((weights.shape[1], sample.n_models))
    for k in range(weights.shape[1]):
        rows = np.repeat(np.arange(sample.n_examples), weights[:, k].astype(int))
        out[k] = [fn(sample.y_true[rows], sample.y_pred[j, rows]) for j in range(sample.n_models)]
    return out


@st.composite
def weighted_samples(draw):
    n = draw(st.integers(1, 40))
    n_classes = draw(st.integers(1, 6))
    n_models = draw(st.integers(1, 3))
    y_true = draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n))
    # predictions may name classes that never occur as a true label, including -1 ("unknown")
    y_pred = [draw(st.lists(st.integers(-1, n_classes + 1), min_size=n, max_size=n)) for _ in range(n_models)]
    n_columns = draw(st.integers(1, 4))
    columns = [draw(st.lists(st.integers(0, 3), min_size=n, max_size=n).filter(lambda w: sum(w) > 0))
               for _ in range(n_columns)]
    return make_sample(y_true, y_pred), np.array(columns, dtype=np.float32).T


@pytest.mark.parametrize("name", sorted(SKLEARN))
@settings(max_examples=60, deadline=None)
@given(data=weighted_samples())
def test_metric_equals_sklearn_on_every_weighted_sample(name, data):
    sample, weights = data
    expected = sklearn_on_weighted(SKLEARN[name], sample, weights)
    np.testing.assert_allclose(METRICS.get(name)(weights, sample), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(SKLEARN))
def test_resamples_equal_sklearn_on_the_resampled_rows(name):
    rng = np.random.default_rng(3)
    y_true = rng.choice(30, size=400, p=np.arange(30, 0, -1) / np.arange(30, 0, -1).sum())  # long tail
    y_pred = np.where(rng.random((3, 400)) < 0.6, y_true, rng.integers(0, 32, (3, 400)))
    sample = make_sample(y_true, y_pred)
    weights = resample_weights(7, "t", 400, 40)
    expected = np.array([[SKLEARN[name](y_true[i], y_pred[j, i]) for j in range(3)]
                         for i in resample_indices(7, "t", 400, 40)])
    np.testing.assert_allclose(METRICS.get(name)(weights, sample), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(point_estimate(METRICS.get(name), sample),
                               [SKLEARN[name](y_true, y_pred[j]) for j in range(3)], rtol=0, atol=1e-12)


def test_macro_f1_class_set_is_the_classes_present_in_the_sample():
    # classes: 0 (right twice), 1 (true once, predicted as 0), 2 (only predicted), 3 (true once, right)
    sample = make_sample([0, 0, 1, 3, 0], [0, 0, 0, 3, 2])
    f1 = {0: 2 * 2 / (3 + 3), 1: 0.0, 2: 0.0, 3: 1.0}
    weights = np.array([[1, 1, 1, 1, 1],   # everything: all four classes count
                        [1, 1, 0, 0, 0],   # only class 0 occurs: F1 = 1
                        [1, 1, 0, 1, 0]],  # classes 0 and 3 occur; 1 and 2 (0/0) are left out, not counted as 0
                       dtype=np.float32).T
    got = METRICS.get("macro_f1")(weights, sample)[:, 0]
    np.testing.assert_allclose(got, [np.mean(list(f1.values())), 1.0, 1.0])


def test_mean_score_is_the_weighted_mean_of_the_score_column():
    sample = Sample(np.zeros(4, dtype=np.int64), np.zeros((1, 4), dtype=np.int64), np.array([[0.0, 0.5, 1.0, 1 / 3]]))
    weights = np.array([[1, 1, 1, 1], [0, 2, 0, 1]], dtype=np.float32).T
    np.testing.assert_allclose(METRICS.get("mean_score")(weights, sample)[:, 0], [(1.5 + 1 / 3) / 4, (1 + 1 / 3) / 3])


def test_per_sample_metric_hook_matches_the_fast_path():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 200)
    sample = make_sample(y_true, np.where(rng.random((2, 200)) < 0.7, y_true, rng.integers(0, 5, (2, 200))))
    weights = resample_weights(0, "hook", 200, 25)
    hook = per_sample_metric(lambda t, p: f1_score(t, p, average="macro"))
    np.testing.assert_allclose(hook(weights, sample), METRICS.get("macro_f1")(weights, sample), atol=1e-12)


def test_per_sample_metric_refuses_fractional_weights():
    sample = make_sample([0, 1], [0, 1])
    with pytest.raises(ValueError, match="integer weights"):
        per_sample_metric(accuracy_score)(np.array([[0.5], [1.0]], dtype=np.float32), sample)


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="known: accuracy, balanced_accuracy, macro_f1, mean_score"):
        METRICS.get("macro-f1")


def test_sample_shapes_are_checked():
    with pytest.raises(Exception, match="y_pred|n"):
        Sample(np.zeros(3, dtype=np.int64), np.zeros((2, 4), dtype=np.int64), np.zeros((2, 4)))
