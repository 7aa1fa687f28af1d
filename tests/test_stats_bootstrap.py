"""The paired bootstrap: its definition, agreement with scipy, coverage, and the properties users rely on."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score

from biobench.stats import simulate
from biobench.stats.bootstrap import (
    Estimates,
    bootstrap_task,
    centered_interval,
    interval,
    mean_over_tasks,
    percentile_interval,
    resample_indices,
    resample_weights,
    task_rng,
)
from biobench.stats.comparisons import pairwise
from biobench.stats.metrics import METRICS, Sample

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# ------------------------------------------------------------------------------------------------ definition


def test_resamples_follow_the_documented_recipe():
    task_hash = int.from_bytes(hashlib.sha256("plankton".encode()).digest()[:8], "little")
    rng = np.random.default_rng([7, task_hash])
    expected = [rng.integers(0, 300, size=300) for _ in range(5)]
    for got, want in zip(resample_indices(7, "plankton", 300, 5), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_resamples_are_pinned():
    """Changing the resamples changes every published interval: it must be deliberate (update this test)."""
    first = next(resample_indices(0, "kabr", 1000, 1))
    assert first[:6].tolist() == [580, 794, 703, 282, 837, 61]


def test_weights_count_the_indices_of_each_resample():
    for n in (1, 5, 333, 70_000):
        weights = resample_weights(3, "t", n, 130)
        counts = np.stack([np.bincount(idx, minlength=n) for idx in resample_indices(3, "t", n, 130)], axis=1)
        np.testing.assert_array_equal(weights, counts)
        assert np.all(weights.sum(axis=0) == n)


def test_each_task_has_its_own_stream_and_seed_matters():
    a = resample_weights(0, "beluga", 200, 3)
    assert np.array_equal(a, resample_weights(0, "beluga", 200, 3))
    assert not np.array_equal(a, resample_weights(0, "fishnet", 200, 3))
    assert not np.array_equal(a, resample_weights(1, "beluga", 200, 3))
    with pytest.raises(ValueError, match="non-negative"):
        task_rng(-1, "beluga")


def binary_sample(correct: np.ndarray) -> Sample:
    """Models' 0/1 correctness as a sample (true label 0; a wrong prediction is 1)."""
    correct = np.atleast_2d(correct)
    return Sample(np.zeros(correct.shape[1], dtype=np.int64), (~correct).astype(np.int64), correct.astype(np.float64))


# ------------------------------------------------------------------------------------------ agreement with scipy


def test_accuracy_interval_agrees_with_scipy_bootstrap():
    correct = np.random.default_rng(1).random(2000) < 0.8
    est = bootstrap_task(METRICS.get("accuracy"), binary_sample(correct), ["m"], seed=0, task="t", n_resamples=4000)
    low, high = percentile_interval(est.resamples, 0.95)
    ref = scipy.stats.bootstrap((correct.astype(float),), np.mean, n_resamples=4000, method="percentile",
                                confidence_level=0.95, rng=np.random.default_rng(5))
    # Monte Carlo error of each endpoint is about 0.0004 here (standard deviation of the estimate 0.009)
    assert low[0] == pytest.approx(ref.confidence_interval.low, abs=0.002)
    assert high[0] == pytest.approx(ref.confidence_interval.high, abs=0.002)
    assert est.resamples[:, 0].std(ddof=1) == pytest.approx(ref.standard_error, rel=0.05)


def macro_f1_rows(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """An independent vectorised macro-F1 for scipy: one-hot counts over the last axis, mean over fixed classes."""
    t = (y_true[..., None] == classes).sum(axis=-2)
    p = (y_pred[..., None] == classes).sum(axis=-2)
    tp = ((y_true == y_pred)[..., None] & (y_true[..., None] == classes)).sum(axis=-2)
    return np.where(t + p > 0, 2 * tp / np.maximum(t + p, 1), 0.0).mean(axis=-1)


def test_macro_f1_and_paired_difference_agree_with_scipy_bootstrap():
    rng = np.random.default_rng(2)
    classifier = simulate.Classifier(simulate.zipf_prior(8), np.linspace(0.9, 0.5, 8), simulate.zipf_prior(8))
    y_true = classifier.sample_labels(rng, 800)
    shared = rng.random(800)
    y_pred = np.stack([classifier.predict(rng, y_true, simulate.correlated_uniforms(rng, shared, 0.8))
                       for _ in range(2)])
    sample = Sample(y_true, y_pred, (y_pred == y_true).astype(np.float64))
    est = bootstrap_task(METRICS.get("macro_f1"), sample, ["a", "b"], seed=0, task="t", n_resamples=3000)
    low, high = percentile_interval(est.resamples, 0.95)
    pairs = pairwise(est, 0.95)

    common = dict(n_resamples=3000, method="percentile", confidence_level=0.95, paired=True, vectorized=True,
                  batch=500, rng=np.random.default_rng(9))
    c = np.unique(y_true)
    ref_a = scipy.stats.bootstrap((y_true, y_pred[0]), lambda t, a, axis=-1: macro_f1_rows(t, a, c),
                                  **common).confidence_interval
    ref_diff = scipy.stats.bootstrap(
        (y_true, y_pred[0], y_pred[1]), lambda t, a, b, axis=-1: macro_f1_rows(t, a, c) - macro_f1_rows(t, b, c),
        **common
    ).confidence_interval
    assert est.point[0] == pytest.approx(macro_f1_rows(y_true, y_pred[0], c))
    assert (low[0], high[0]) == pytest.approx((ref_a.low, ref_a.high), abs=0.006)
    assert (pairs.ci_low[0, 1], pairs.ci_high[0, 1]) == pytest.approx((ref_diff.low, ref_diff.high), abs=0.006)


def test_centered_interval_is_scipys_percentile_interval_shifted_by_the_bootstrap_bias():
    rng = np.random.default_rng(6)
    classifier = simulate.Classifier(simulate.zipf_prior(60), np.linspace(0.9, 0.5, 60), simulate.zipf_prior(60))
    y_true = classifier.sample_labels(rng, 1500)
    y_pred = classifier.predict(rng, y_true)
    sample = Sample(y_true, y_pred[None], (y_pred == y_true).astype(np.float64)[None])
    est = bootstrap_task(METRICS.get("macro_f1"), sample, ["m"], seed=0, task="t", n_resamples=4000)
    low, high = centered_interval(est.resamples, est.point, 0.95)
    assert (low[0], high[0]) == tuple(np.concatenate(interval(est, 0.95)))

    classes = np.unique(y_true)

    def statistic(t, p, axis=-1):
        return np.array([f1_score(ti, pi, labels=classes, average="macro", zero_division=0)
                         for ti, pi in zip(np.atleast_2d(t), np.atleast_2d(p))])

    ref = scipy.stats.bootstrap((y_true, y_pred), statistic, n_resamples=1000, method="percentile", paired=True,
                                vectorized=True, confidence_level=0.95, rng=np.random.default_rng(8))
    shift = ref.bootstrap_distribution.mean() - est.point[0]
    assert shift < -0.005  # macro-F1 of this long tail: the resamples run low
    # Monte Carlo error of each endpoint: about 0.002 with scipy's 1,000 resamples
    assert low[0] == pytest.approx(ref.confidence_interval.low - shift, abs=0.005)
    assert high[0] == pytest.approx(ref.confidence_interval.high - shift, abs=0.005)
    with pytest.raises(ValueError, match="centered"):
        interval(est, 0.95, "bca")


def test_centered_and_percentile_intervals_agree_for_accuracy():
    correct = np.random.default_rng(1).random(2000) < 0.8
    est = bootstrap_task(METRICS.get("accuracy"), binary_sample(correct), ["m"], seed=0, task="t", n_resamples=4000)
    np.testing.assert_allclose(interval(est, 0.95), interval(est, 0.95, "percentile"), atol=0.0005)


# ---------------------------------------------------------------------------------------------------- coverage


def coverage(metric: str, classifier: simulate.Classifier, truth: float, *, n: int, n_datasets: int,
             n_resamples: int = 1000, method: str = "centered") -> float:
    """Fraction of simulated test sets whose 95% interval contains `truth`."""
    rng = np.random.default_rng(11)
    covered = 0
    for r in range(n_datasets):
        y_true = classifier.sample_labels(rng, n)
        y_pred = classifier.predict(rng, y_true)[None]
        sample = Sample(y_true, y_pred, (y_pred == y_true).astype(np.float64))
        est = bootstrap_task(METRICS.get(metric), sample, ["m"], seed=0, task=f"sim-{r}", n_resamples=n_resamples)
        low, high = interval(est, 0.95, method)
        covered += bool(low[0] <= truth <= high[0])
    return covered / n_datasets


def test_accuracy_interval_covers_the_true_value_95_percent_of_the_time():
    # accuracy is unbiased: the population value is also the expected value on test sets of this size
    classifier = simulate.Classifier(simulate.zipf_prior(10), np.linspace(0.95, 0.6, 10), simulate.zipf_prior(10))
    rate = coverage("accuracy", classifier, classifier.population_accuracy(), n=500, n_datasets=1000)
    assert 0.93 <= rate <= 0.97, rate


def test_macro_f1_interval_covers_the_population_value_with_few_classes():
    # 10 classes with frequencies proportional to 1/rank (34% down to 3.4% of the test set), recall 0.9 on the head
    # down to 0.5 on the tail, errors spread like the class frequencies: every class has dozens of test examples,
    # macro-F1's small-sample bias is negligible, and the interval covers the population value (bench/coverage_study.py:
    # 0.94 over 200 data sets).
    classifier = simulate.Classifier(simulate.zipf_prior(10), np.linspace(0.9, 0.5, 10), simulate.zipf_prior(10))
    rate = coverage("macro_f1", classifier, classifier.population_macro_f1(), n=2000, n_datasets=300)
    assert 0.92 <= rate <= 0.98, rate


def test_long_tail_macro_f1_interval_covers_the_expected_test_set_value_not_the_population_value():
    """100 classes, Zipf 1, n = 2,000 (the rarest classes have 2-3 test examples): macro-F1 of a test set is biased
    low by about one standard deviation, so no interval covers the population value 95% of the time. The centered
    interval covers the expected value on test sets of this size; the percentile interval, whose resamples are
    biased low once more, covers neither (bench/coverage_study.py, R = 200: centered 0.81 / 0.94, percentile
    0.34 / 0.73, population / expected)."""
    prior = simulate.zipf_prior(100)
    classifier = simulate.Classifier(prior, np.linspace(0.9, 0.5, 100), prior)
    rng = np.random.default_rng(12)
    fresh = []
    for _ in range(200):
        y_true = classifier.sample_labels(rng, 2000)
        fresh.append(f1_score(y_true, classifier.predict(rng, y_true), labels=np.unique(y_true), average="macro"))
    expected, population = float(np.mean(fresh)), classifier.population_macro_f1()
    assert population - expected > 0.5 * np.std(fresh)
    rates = {method: coverage("macro_f1", classifier, expected, n=2000, n_datasets=80, n_resamples=400, method=method)
             for method in ("centered", "percentile")}
    assert rates["centered"] >= 0.87, rates
    assert rates["percentile"] <= 0.85, rates
    assert coverage("macro_f1", classifier, population, n=2000, n_datasets=80, n_resamples=400) <= 0.9


# -------------------------------------------------------------------------------------------------- properties


@st.composite
def task_samples(draw):
    n = draw(st.integers(20, 300))
    n_classes = draw(st.integers(2, 8))
    skill = draw(st.floats(0.05, 0.95))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    prior = simulate.zipf_prior(n_classes, draw(st.floats(0.0, 1.5)))
    classifier = simulate.Classifier(prior, np.full(n_classes, skill), prior)
    y_true = classifier.sample_labels(rng, n)
    y_pred = np.stack([classifier.predict(rng, y_true) for _ in range(draw(st.integers(1, 3)))])
    return Sample(y_true, y_pred, (y_pred == y_true).astype(np.float64)), draw(st.sampled_from(sorted(METRICS)))


@settings(max_examples=120, deadline=None)
@given(data=task_samples())
def test_point_estimate_lies_inside_its_interval(data):
    sample, metric = data
    est = bootstrap_task(METRICS.get(metric), sample, [str(j) for j in range(sample.n_models)], seed=0, task="p",
                         n_resamples=300)
    for low, high in (percentile_interval(est.resamples, 0.95), interval(est, 0.95)):
        assert np.all(low <= est.point) and np.all(est.point <= high), (est.point, low, high)


def tiled(sample: Sample, times: int) -> Sample:
    return Sample(np.tile(sample.y_true, times), np.tile(sample.y_pred, times), np.tile(sample.score, times))


@settings(max_examples=60, deadline=None)
@given(data=task_samples())
def test_intervals_shrink_as_n_grows(data):
    """The same empirical distribution with 4x the examples gives narrower intervals (about half as wide)."""
    sample, metric = data
    models = [str(j) for j in range(sample.n_models)]
    widths = []
    for times in (1, 4):
        est = bootstrap_task(METRICS.get(metric), tiled(sample, times), models, seed=0, task="s", n_resamples=300)
        low, high = percentile_interval(est.resamples, 0.95)
        widths.append(high - low)
    assert np.all(widths[1] <= 0.8 * widths[0] + 1e-12), widths


def test_interval_width_halves_when_n_quadruples():
    correct = np.random.default_rng(4).random(1000) < 0.7
    widths = []
    for times in (1, 4):
        est = bootstrap_task(METRICS.get("accuracy"), binary_sample(np.tile(correct, times)), ["m"], seed=0, task="w",
                             n_resamples=2000)
        low, high = percentile_interval(est.resamples, 0.95)
        widths.append(float(high[0] - low[0]))
    assert widths[1] / widths[0] == pytest.approx(0.5, abs=0.06)


# --------------------------------------------------------------------------------------------- paired vs unpaired


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_paired_difference_interval_is_narrower_than_unpaired(metric):
    rng = np.random.default_rng(5)
    classifier = simulate.Classifier(simulate.zipf_prior(10), np.linspace(0.9, 0.6, 10), simulate.zipf_prior(10))
    y_true = classifier.sample_labels(rng, 3000)
    shared = rng.random(3000)
    y_pred = np.stack([classifier.predict(rng, y_true, simulate.correlated_uniforms(rng, shared, 0.9))
                       for _ in range(2)])
    sample = Sample(y_true, y_pred, (y_pred == y_true).astype(np.float64))
    paired = bootstrap_task(METRICS.get(metric), sample, ["a", "b"], seed=0, task="paired", n_resamples=1000)
    # unpaired, as biobench did for macro-F1: each model gets its own resamples
    other = bootstrap_task(METRICS.get(metric), sample, ["a", "b"], seed=0, task="other", n_resamples=1000)
    paired_diff = paired.resamples[:, 0] - paired.resamples[:, 1]
    unpaired_diff = paired.resamples[:, 0] - other.resamples[:, 1]
    width = [np.subtract(*percentile_interval(d, 0.95)[::-1]) for d in (paired_diff, unpaired_diff)]
    assert width[0] < 0.7 * width[1], width


def test_overall_resamples_average_the_tasks_resamples():
    a = Estimates(("x", "y"), np.array([0.5, 0.7]), np.array([[0.4, 0.6], [0.6, 0.8]]))
    b = Estimates(("y", "x", "z"), np.array([0.9, 0.1, 0.3]), np.array([[1.0, 0.2, 0.3], [0.8, 0.0, 0.3]]))
    overall = mean_over_tasks([a, b], ["x", "y"])
    np.testing.assert_allclose(overall.point, [0.3, 0.8])
    np.testing.assert_allclose(overall.resamples, [[0.3, 0.8], [0.3, 0.8]])


def test_the_centered_interval_of_a_degenerate_distribution_holds_the_point_and_stays_in_range():
    """t = 1 and a few resamples below it: shifting alone would give [1.0017, 1.0017]."""
    resamples = np.ones((300, 1))
    resamples[:3] = 0.85
    low, high = centered_interval(resamples, np.array([1.0]), 0.95)
    assert low[0] <= 1.0 <= high[0] and high[0] <= 1.0 and low[0] >= 0.85
