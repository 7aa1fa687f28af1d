"""Paired differences, the bootstrap p-value (definition, consistency, calibration), ranks, Holm, ties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biobench.stats import bootstrap, simulate
from biobench.stats.bootstrap import Estimates, percentile_interval
from biobench.stats.comparisons import (
    bootstrap_p_value,
    competition_ranks,
    holm_reject,
    pairwise,
    tied_with_best,
)
from biobench.stats.metrics import METRICS, Sample


def test_p_value_formula():
    diffs = np.array([-0.2, 0.0, 0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])  # L = 2 (0 counts on both sides), G = 8
    assert bootstrap_p_value(diffs) == pytest.approx(2 * (1 + 2) / 10)
    assert bootstrap_p_value(np.full(50, 0.1)) == pytest.approx(2 / 51)  # the smallest p with B = 50
    assert bootstrap_p_value(np.zeros(50)) == 1.0  # identical models
    assert bootstrap_p_value(np.full(50, 1e-15)) == 1.0  # rounding noise is a tie, not evidence


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(20, 2000),
    center=st.floats(-3, 3),
    decimals=st.integers(0, 3),  # rounding makes ties at zero, as discrete metrics do
    alpha=st.sampled_from([0.01, 0.05, 0.1, 0.2]),
)
def test_significant_p_value_implies_interval_excludes_zero(seed, size, center, decimals, alpha):
    diffs = np.round(np.random.default_rng(seed).normal(center, 1.0, size), decimals)
    low, high = percentile_interval(diffs, 1 - alpha)
    if bootstrap_p_value(diffs) < alpha:
        assert low > 0 or high < 0


def test_pairwise_is_antisymmetric_and_paired():
    rng = np.random.default_rng(0)
    resamples = rng.normal(size=(500, 3)) + np.array([0.0, 0.1, 0.5])
    est = Estimates(("a", "b", "c"), np.array([0.0, 0.1, 0.5]), resamples)
    pairs = pairwise(est, 0.95)
    np.testing.assert_allclose(pairs.diff, -pairs.diff.T)
    np.testing.assert_allclose(pairs.ci_low, -pairs.ci_high.T)
    np.testing.assert_allclose(pairs.p_value, pairs.p_value.T)
    low, high = percentile_interval(resamples[:, 2] - resamples[:, 0], 0.95)
    assert (pairs.ci_low[2, 0], pairs.ci_high[2, 0]) == (low, high)
    assert np.all(np.diag(pairs.p_value) == 1.0)


def test_competition_ranks_share_ties():
    np.testing.assert_array_equal(competition_ranks(np.array([0.5, 0.9, 0.5, 0.1])), [2, 1, 2, 4])


def test_holm_step_down():
    # sorted: 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2 -> stop; 0.04 is not rejected although 0.04 <= 0.05
    np.testing.assert_array_equal(holm_reject(np.array([0.01, 0.04, 0.03, 0.005]), 0.05), [True, False, False, True])
    np.testing.assert_array_equal(holm_reject(np.array([0.001, 0.002]), 0.05), [True, True])
    assert holm_reject(np.array([]), 0.05).shape == (0,)


def test_tied_with_best_uses_holm_against_the_best():
    point = np.array([0.70, 0.90, 0.88, 0.60])
    p = np.ones((4, 4))
    p[1, [0, 2, 3]] = p[[0, 2, 3], 1] = [0.03, 0.3, 0.001]  # best is model 1
    # sorted: 0.001 <= 0.05/3 rejected; 0.03 > 0.05/2 -> stop: models 0 and 2 are tied with the best
    np.testing.assert_array_equal(tied_with_best(point, p, 0.05), [True, True, True, False])
    p[1, 0] = p[0, 1] = 0.02  # now <= 0.05/2: rejected
    np.testing.assert_array_equal(tied_with_best(point, p, 0.05), [False, True, True, False])


def null_p_values(n_datasets: int, n: int, n_resamples: int) -> np.ndarray:
    """Paired p-values of two correlated models with the same population accuracy (the null holds)."""
    rng = np.random.default_rng(2024)
    classifier = simulate.Classifier(simulate.zipf_prior(5), np.full(5, 0.7), simulate.zipf_prior(5))
    p_values = np.empty(n_datasets)
    for r in range(n_datasets):
        y_true = classifier.sample_labels(rng, n)
        shared = rng.random(n)
        y_pred = np.stack([classifier.predict(rng, y_true, simulate.correlated_uniforms(rng, shared, 0.6))
                           for _ in range(2)])
        sample = Sample(y_true, y_pred, (y_pred == y_true).astype(np.float64))
        est = bootstrap.bootstrap_task(METRICS.get("accuracy"), sample, ["a", "b"], seed=0, task=f"null-{r}",
                                       n_resamples=n_resamples)
        p_values[r] = pairwise(est, 0.95).p_value[0, 1]
    return p_values


def test_p_value_is_not_anti_conservative_under_the_null():
    p = null_p_values(n_datasets=800, n=400, n_resamples=400)
    # 800 data sets: the rejection rate's standard error at 5% is 0.8 points
    assert np.mean(p <= 0.05) <= 0.05 + 0.015
    assert np.mean(p <= 0.20) <= 0.20 + 0.03
    assert np.mean(p <= 0.20) >= 0.20 - 0.06  # and not uselessly conservative
