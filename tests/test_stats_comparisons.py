"""Paired differences, the bootstrap p-value (definition, consistency, calibration), ranks, ties with the best
(formula, step-down equivalence, family-wise error and power by simulation), the minimum number of resamples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biobench.stats import bootstrap, simulate
from biobench.stats.bootstrap import Estimates, percentile_interval
from biobench.stats.comparisons import (
    best_set_p_values,
    bootstrap_p_value,
    check_resamples,
    competition_ranks,
    minimum_resamples,
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


# ------------------------------------------------------------------------------------------ tied with the best


def estimates(point, resamples) -> Estimates:
    point = np.asarray(point, dtype=np.float64)
    return Estimates(tuple(f"m{j}" for j in range(len(point))), point, np.asarray(resamples, dtype=np.float64))


def q_by_definition(est: Estimates) -> np.ndarray:
    """The docstring's q, written from sets instead of a sort: A_j = the models scoring at least s_j."""
    s, e = est.point, est.resamples - est.point
    behind = np.where(s.max() - s <= 1e-12, 0.0, s.max() - s)
    p = np.empty(len(s))
    for j in range(len(s)):
        at_least = behind <= behind[j]
        widest = e.max(axis=1) - e[:, at_least].min(axis=1)
        p[j] = (1 + np.sum(widest >= behind[j])) / (len(e) + 1)
    return np.array([p[behind >= behind[j]].max() for j in range(len(s))])


def step_down(est: Estimates, alpha: float) -> np.ndarray:
    """Tied models by the iterative procedure: reject every remaining model whose T_j exceeds the remaining models'
    resampled maximum in all but a share alpha of the resamples (counting the sample as one), until none is."""
    s, e = est.point, est.resamples - est.point
    behind = np.where(s.max() - s <= 1e-12, 0.0, s.max() - s)
    remaining = np.ones(len(s), dtype=bool)
    while True:
        widest = e.max(axis=1) - e[:, remaining].min(axis=1)
        p = (1 + (widest[:, None] >= behind[None, :]).sum(axis=0)) / (len(e) + 1)
        rejected = remaining & (p <= alpha)
        if not rejected.any():
            return remaining
        remaining &= ~rejected


@pytest.mark.filterwarnings("ignore:with .* resamples no model can be declared")
@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(1, 12),
    n_resamples=st.integers(2, 300),
    decimals=st.integers(1, 3),  # rounding makes equal point estimates and equal resamples
    alpha=st.sampled_from([0.01, 0.05, 0.1, 0.3]),
)
def test_ties_follow_the_documented_formula_and_the_step_down_procedure(seed, m, n_resamples, decimals, alpha):
    rng = np.random.default_rng(seed)
    point = np.round(rng.uniform(0.3, 0.9, m), decimals)
    shared = rng.normal(0, 0.02, (n_resamples, 1))
    est = estimates(point, np.round(point + shared + rng.normal(0, rng.uniform(0.001, 0.05), (n_resamples, m)), 3))
    q = best_set_p_values(est)
    np.testing.assert_allclose(q, q_by_definition(est), rtol=0, atol=1e-15)
    assert np.all(q >= 1 / (n_resamples + 1)) and np.all(q <= 1)
    tied = tied_with_best(est, alpha)
    np.testing.assert_array_equal(tied, q > alpha)
    np.testing.assert_array_equal(tied, step_down(est, alpha))
    assert tied[point == point.max()].all()  # the best point estimates are always tied
    worse_tied = tied & (point < point.max())
    assert not np.any(~tied[:, None] & worse_tied[None, :] & (point[:, None] > point[None, :]))  # ties are top-closed


@pytest.mark.filterwarnings("ignore:with 4 resamples")
def test_ties_worked_example():
    # resamples of 3 models, centered e* = s* - s; s_max = 0.9, so T = (0, 0.05, 0.3)
    e = np.array([[0.00, 0.01, -0.02], [0.02, -0.01, 0.03], [-0.01, 0.00, 0.01], [0.01, -0.02, 0.00]])
    est = estimates([0.9, 0.85, 0.6], np.array([0.9, 0.85, 0.6]) + e)
    # step 1, model 2 (T = 0.3): max_i e* - min over all = 0.03, 0.05, 0.02, 0.03; none >= 0.3: p = 1/5
    # step 2, model 1 (T = 0.05): max_i e* - min(e*_0, e*_1) = 0.02, 0.04, 0.02, 0.03; none >= 0.05: p = 1/5
    # step 3, model 0 (T = 0): every resample counts: p = 5/5
    np.testing.assert_allclose(best_set_p_values(est), [1.0, 0.2, 0.2])
    np.testing.assert_array_equal(tied_with_best(est, 0.2), [True, False, False])
    np.testing.assert_array_equal(tied_with_best(est, 0.19), [True, True, True])


def test_identical_and_single_models_are_tied():
    same = estimates([0.7, 0.7], np.tile([[0.69], [0.71], [0.70]], (1, 2)))
    np.testing.assert_array_equal(tied_with_best(same, 0.5), [True, True])
    np.testing.assert_array_equal(tied_with_best(estimates([0.4], [[0.41], [0.39]]), 0.5), [True])
    rounding = estimates([0.7, 0.7 + 1e-15], np.full((5, 2), 0.7))  # equal up to rounding: both at the top
    np.testing.assert_array_equal(best_set_p_values(rounding), [1.0, 1.0])


@pytest.mark.parametrize("confidence", [0.5, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999])
def test_minimum_resamples_is_the_smallest_b_at_which_every_test_can_reject(confidence):
    alpha, needed = 1 - confidence, minimum_resamples(confidence)
    assert 2 / (needed + 1) <= alpha < 2 / needed
    check_resamples(needed, confidence)
    with pytest.raises(ValueError, match=rf"bootstrap\.resamples = {needed - 1} .*at least {needed}"):
        check_resamples(needed - 1, confidence)
    # at the minimum, a clearly different pair is significant and a clearly worse model is not tied with the best
    resamples = np.tile([[0.9, 0.5]], (needed, 1)) + np.random.default_rng(0).normal(0, 0.01, (needed, 2))
    est = estimates([0.9, 0.5], resamples)
    assert pairwise(est, confidence).p_value[0, 1] <= alpha
    np.testing.assert_array_equal(tied_with_best(est, alpha), [True, False])


def test_too_few_resamples_warn_where_the_results_are_computed():
    est = estimates([0.9, 0.5], np.tile([[0.9, 0.5]], (10, 1)) + np.random.default_rng(0).normal(0, 0.01, (10, 2)))
    with pytest.warns(UserWarning, match="bootstrap.resamples = 10 .* at least 39"):
        pairwise(est, 0.95)
    with pytest.warns(UserWarning, match="no model can be declared worse than the best"):
        np.testing.assert_array_equal(tied_with_best(est, 0.05), [True, True])


def test_the_issues_settings_are_refused_or_fixed():
    assert minimum_resamples(0.95) == 39 and minimum_resamples(0.99) == 199
    with pytest.raises(ValueError, match="bootstrap.resamples = 100 .* at least 199"):
        check_resamples(100, 0.99)  # pairwise p-values could not reach 0.01
    check_resamples(1000, 0.99)
    check_resamples(1000, 0.95)


def correlated_accuracies(rng: np.random.Generator, hits: np.ndarray, n: int, n_resamples: int,
                          task: str) -> Estimates:
    """Accuracies of len(hits) models whose right/wrong draws share one uniform on 60% of the examples
    (`simulate.correlated_uniforms`), with their paired bootstrap."""
    shared = rng.random(n)
    correct = np.stack([simulate.correlated_uniforms(rng, shared, 0.6) < h for h in hits])
    sample = Sample(np.zeros(n, dtype=np.int64), np.where(correct, 0, 1), correct.astype(np.float64))
    return bootstrap.bootstrap_task(METRICS.get("accuracy"), sample, [f"m{j}" for j in range(len(hits))], seed=0,
                                    task=task, n_resamples=n_resamples)


def test_family_wise_error_under_the_null_is_at_most_alpha():
    """12 equal models (accuracy 0.8), n = 300, B = 199, a = 0.05, 500 data sets: the share of data sets where any
    model is declared worse than the best must be <= a + 2.5 s.e. (s.e. = sqrt(a(1 - a)/500) = 0.0097), i.e. 0.074."""
    rng, alpha, n_datasets = np.random.default_rng(13), 0.05, 500
    any_rejected = sum(not tied_with_best(correlated_accuracies(rng, np.full(12, 0.8), 300, 199, f"null-{r}"),
                                          alpha).all() for r in range(n_datasets))
    bound = alpha + 2.5 * np.sqrt(alpha * (1 - alpha) / n_datasets)
    assert any_rejected / n_datasets <= bound
    assert any_rejected / n_datasets >= 0.01  # and the test is not vacuous


@pytest.mark.parametrize("m", [100, 200])
def test_one_clearly_best_model_among_many_is_tied_only_with_itself(m):
    rng = np.random.default_rng(m)
    hits = np.r_[0.9, np.full(m - 1, 0.8)]
    for r in range(2):
        est = correlated_accuracies(rng, hits, 2000, 1000, f"one-{r}")
        assert est.point.argmax() == 0
        np.testing.assert_array_equal(np.flatnonzero(tied_with_best(est, 0.05)), [0])


def test_a_realistic_spread_gives_a_small_tie_set():
    """27 models from 0.955 down to 0.37 (the published BioBench spread), B = 1,000, 95%: Holm against the best
    tied all 27, since its first threshold 0.05/26 is below the smallest p-value 2/1001."""
    rng = np.random.default_rng(27)
    for r in range(3):
        est = correlated_accuracies(rng, np.linspace(0.955, 0.37, 27), 2000, 1000, f"spread-{r}")
        tied = tied_with_best(est, 0.05)
        assert tied[est.point.argmax()] and 1 <= tied.sum() <= 3 and not tied[3:].any()


def holm_against_the_best(est: Estimates, alpha: float) -> np.ndarray:
    """The previous rule: Holm over the two-sided paired p-values of the other models against the empirical best."""
    best = int(np.argmax(est.point))
    others = np.array([j for j in range(len(est.point)) if j != best])
    p = bootstrap_p_value(est.resamples[:, [best]] - est.resamples[:, others])
    tied, order = np.ones(len(est.point), dtype=bool), np.argsort(p, kind="stable")
    for step, i in enumerate(order):
        if p[i] > alpha / (len(p) - step):
            break
        tied[others[i]] = False
    return tied


@pytest.mark.parametrize("hits", [[0.9, 0.6], [0.9, 0.7, 0.5], [0.95, 0.8, 0.65, 0.5, 0.35], [0.8, 0.8, 0.5, 0.4]])
def test_few_models_with_big_differences_keep_their_previous_ties(hits):
    rng = np.random.default_rng(len(hits))
    for r in range(3):
        est = correlated_accuracies(rng, np.array(hits), 1000, 1000, f"few-{r}")
        np.testing.assert_array_equal(tied_with_best(est, 0.05), holm_against_the_best(est, 0.05))
