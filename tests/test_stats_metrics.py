"""The fast weighted metrics equal scikit-learn's on every materialised (resampled) sample."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

from biobench.registry import UnknownNameError
from biobench.stats.bootstrap import bootstrap_task, percentile_interval, resample_indices, resample_weights
from biobench.stats.metrics import METRICS, Sample, per_sample_metric, point_estimate, scoring_metric

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: "y_pred contains classes not in y_true"


def label_ids(y_true, y_pred):
    """The original BioBench's label set: ids 0..max over the test set's truth and the model's predictions."""
    return np.arange(max(y_true.max(), y_pred.max()) + 1)


# name -> reference(y_true, y_pred, full_y_true, full_y_pred): the metric on (y_true, y_pred), a weighted sample of
# the test set (full_y_true, full_y_pred), with the class set taken from the test set
SKLEARN = {
    "accuracy": lambda t, p, full_t, full_p: accuracy_score(t, p),
    "macro_f1": lambda t, p, full_t, full_p: f1_score(t, p, labels=np.unique(full_t), average="macro",
                                                      zero_division=0),
    "macro_f1_label_ids": lambda t, p, full_t, full_p: f1_score(t, p, labels=label_ids(full_t, full_p),
                                                                average="macro", zero_division=0),
    "balanced_accuracy": lambda t, p, full_t, full_p: recall_score(t, p, labels=np.unique(full_t), average="macro",
                                                                   zero_division=0),
}
# at the point estimate (every example once) the metrics are also these plain calls
SKLEARN_POINT = {
    "accuracy": accuracy_score,
    "macro_f1": lambda t, p: f1_score(t, p, labels=np.unique(t), average="macro"),
    "macro_f1_label_ids": lambda t, p: f1_score(t, p, labels=label_ids(t, p), average="macro", zero_division=0),
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
        out[k] = [fn(sample.y_true[rows], sample.y_pred[j, rows], sample.y_true, sample.y_pred[j])
                  for j in range(sample.n_models)]
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
    expected = np.array([[SKLEARN[name](y_true[i], y_pred[j, i], y_true, y_pred[j]) for j in range(3)]
                         for i in resample_indices(7, "t", 400, 40)])
    np.testing.assert_allclose(METRICS.get(name)(weights, sample), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(point_estimate(METRICS.get(name), sample),
                               [SKLEARN_POINT[name](y_true, y_pred[j]) for j in range(3)], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(SKLEARN_POINT))
@settings(max_examples=60, deadline=None)
@given(data=weighted_samples())
def test_point_estimate_equals_the_plain_sklearn_call(name, data):
    sample, _ = data
    expected = [SKLEARN_POINT[name](sample.y_true, sample.y_pred[j]) for j in range(sample.n_models)]
    np.testing.assert_allclose(point_estimate(METRICS.get(name), sample), expected, rtol=0, atol=1e-12)


def test_macro_f1_class_set_is_the_test_sets_true_classes_in_every_resample():
    # classes of the truth: 0 (right twice), 1 (true once, predicted as 0), 3 (true once, right); 2 is only predicted
    sample = make_sample([0, 0, 1, 3, 0], [0, 0, 0, 3, 2])
    weights = np.array([[1, 1, 1, 1, 1],   # the test set: C = {0, 1, 3}; predicting 2 is just an error
                        [1, 1, 0, 0, 0],   # only class 0 occurs: 1 and 3 are absent and count 0
                        [0, 0, 0, 0, 1]],  # only the wrong prediction 2: class 0 has F1 0, the others are absent
                       dtype=np.float32).T
    f1_0 = 2 * 2 / (3 + 3)
    np.testing.assert_allclose(METRICS.get("macro_f1")(weights, sample)[:, 0], [(f1_0 + 0 + 1) / 3, 1 / 3, 0.0])
    # the original BioBench's: ids 0..3, so the only-predicted class 2 counts (F1 0) in the mean
    np.testing.assert_allclose(METRICS.get("macro_f1_label_ids")(weights, sample)[:, 0],
                               [(f1_0 + 0 + 0 + 1) / 4, 1 / 4, 0.0])
    np.testing.assert_allclose(METRICS.get("balanced_accuracy")(weights, sample)[:, 0], [(2 / 3 + 0 + 1) / 3, 1 / 3, 0])


def test_label_ids_count_every_id_up_to_the_largest_per_model():
    # ids 1 and 2 never occur; model b also predicts id 5, so its mean runs over 0..5
    sample = make_sample([0, 0, 3, 3], [[0, 0, 3, 3], [0, 5, 3, 3]])
    np.testing.assert_allclose(point_estimate(METRICS.get("macro_f1_label_ids"), sample),
                               [2 / 4, (2 / 3 + 1) / 6])
    np.testing.assert_allclose(point_estimate(METRICS.get("macro_f1"), sample), [1.0, (2 / 3 + 1) / 2])


def test_point_lies_in_its_interval_when_every_model_misses_many_singletons():
    """30 common classes and 400 singletons every model misses: a class set that shrank with the resample (the
    classes present in it) put the point estimate (0.057) below its interval ([0.080, 0.092]); a fixed set does not."""
    rng = np.random.default_rng(0)
    common = rng.integers(0, 30, 4000)
    y_true = np.concatenate([common, np.arange(30, 430)])
    right = np.concatenate([rng.random((2, 4000)) < np.linspace(0.3, 0.9, 30)[common], np.zeros((2, 400), bool)], 1)
    y_pred = np.where(right, y_true, rng.integers(0, 30, (2, len(y_true))))
    sample = make_sample(y_true, y_pred)
    for name in ("macro_f1", "macro_f1_label_ids", "balanced_accuracy"):
        est = bootstrap_task(METRICS.get(name), sample, ["a", "b"], seed=0, task="tail", n_resamples=300)
        low, high = percentile_interval(est.resamples, 0.95)
        assert np.all(low <= est.point) and np.all(est.point <= high), (name, est.point, low, high)
        assert np.all(est.point < 0.1)


def test_scoring_metric_selects_the_macro_f1_class_set():
    assert scoring_metric("macro_f1") == "macro_f1"
    assert scoring_metric("macro_f1", "label_ids") == "macro_f1_label_ids"
    assert scoring_metric("accuracy", "label_ids") == "accuracy"
    with pytest.raises(ValueError, match="eval_truth"):
        scoring_metric("macro_f1", "present")


def test_mean_score_is_the_weighted_mean_of_the_score_column():
    sample = Sample(np.zeros(4, dtype=np.int64), np.zeros((1, 4), dtype=np.int64), np.array([[0.0, 0.5, 1.0, 1 / 3]]))
    weights = np.array([[1, 1, 1, 1], [0, 2, 0, 1]], dtype=np.float32).T
    np.testing.assert_allclose(METRICS.get("mean_score")(weights, sample)[:, 0], [(1.5 + 1 / 3) / 4, (1 + 1 / 3) / 3])


def test_per_sample_metric_hook_matches_the_fast_path():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 200)
    sample = make_sample(y_true, np.where(rng.random((2, 200)) < 0.7, y_true, rng.integers(0, 5, (2, 200))))
    weights = resample_weights(0, "hook", 200, 25)
    hook = per_sample_metric(lambda t, p: f1_score(t, p, labels=sample.classes, average="macro", zero_division=0))
    np.testing.assert_allclose(hook(weights, sample), METRICS.get("macro_f1")(weights, sample), atol=1e-12)


def test_per_sample_metric_refuses_fractional_weights():
    sample = make_sample([0, 1], [0, 1])
    with pytest.raises(ValueError, match="integer weights"):
        per_sample_metric(accuracy_score)(np.array([[0.5], [1.0]], dtype=np.float32), sample)


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="known: accuracy, balanced_accuracy, macro_f1, macro_f1_label_ids, mean_score"):
        METRICS.get("macro-f1")


def test_sample_shapes_are_checked():
    with pytest.raises(Exception, match="y_pred|n"):
        Sample(np.zeros(3, dtype=np.int64), np.zeros((2, 4), dtype=np.int64), np.zeros((2, 4)))
