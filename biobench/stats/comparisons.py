"""Paired comparisons between models, ranks, and the set of models tied with the best.

Difference. For models a and b on one task (or overall), d = s_a - s_b from the point estimates and
d*_k = s*_ak - s*_bk, k = 0..B-1, from the *same* resamples (`biobench.stats.bootstrap`), so the resampling
variation the two models share cancels. Its interval is the percentile interval of the d*_k.

p-value (two-sided, paired bootstrap). With L = #{k : d*_k <= 0} and G = #{k : d*_k >= 0},
    p = min(1, 2 * (1 + min(L, G)) / (B + 1)).
It is twice the smaller tail of the bootstrap distribution of the difference at zero. p < a implies that the
100(1 - a)% percentile interval excludes 0 (tested); the converse can fail by about one resample, because the +1 terms
count the observed sample as one of the resamples: p is never 0, and its smallest value, 2/(B + 1), says how many
resamples were drawn. Resampled differences within 1e-12 of zero
count as zero (on both sides), so rounding of mathematically equal scores cannot decide a p-value; two models with
identical predictions get p = 1. These p-values are per pair and not corrected for multiple comparisons (the
pairwise table and figure say so); the ties below are.

Rank. 1 + the number of models with a strictly higher point estimate (equal estimates share a rank).

Tied with the best (step-down max-statistic test, Romano & Wolf 2005). For each of the m models j, H_j is "j is a
best model: no model has a higher population score"; a model is tied with the best when H_j is not rejected at level
a = 1 - c, and rejecting H_j is the claim "j is worse than the best". No best model is picked before testing, so its
being chosen from the data biases nothing. With s_max the highest point estimate and e*_kj = s*_kj - s_j,
    T_j = s_max - s_j (0 when within 1e-12),   U_kj = max_i e*_ki - e*_kj = max_i (d*_k(i,j) - d_(i,j)),
where i runs over all m models (i = j included, so U_kj >= 0): T_j is the largest observed lead of any model over j,
and U_kj the largest centered resampled one. Order the models by decreasing T (increasing score), T_(1) >= ... >=
T_(m), and let A_r = {(r), ..., (m)} be the models not below (r). Step r has the p-value
    p_r = (1 + #{k : max_i e*_ki - min_{j in A_r} e*_kj >= T_(r)}) / (B + 1)
(max_i e*_ki - min_{j in A_r} e*_kj = max_{j in A_r} U_kj), and model (r) the adjusted p-value
    q_(r) = max(p_1, ..., p_r);
models with equal T get equal q whatever their order, and models at the top (T = 0) get q = 1. H_j is rejected when
q_j <= a. This is the step-down procedure that rejects every remaining H_j with p <= a computed over the remaining
models, then repeats with the models left, until nothing more is rejected (tested). If j is a best model,
T_j <= max_i ((s_i - mu_i) - (s_j - mu_j)), whose law the U_kj approximate (the paired resamples carry the dependence
between models), and removing models only lowers the resampled maxima, so the family-wise error rate of the claims
"j is worse than the best" is at most a (asymptotically; checked by simulation under the null in the tests): the
tied models form a 1 - a confidence set for the best model(s), in the spirit of Hansen, Lunde & Nason's (2011) model
confidence set. The differences are not studentized: dividing each pair by its own bootstrap standard deviation lets
the maximum pick the pairs whose spread the sample underestimates, which raised the family-wise error above a in
simulation (10 to 27 equal models, 300 to 1,500 examples). The smallest q is 1/(B + 1) whatever m, so a model can be
declared worse than the best as soon as 1/(B + 1) <= a, and a pairwise p-value can reach a when 2/(B + 1) <= a;
`minimum_resamples` returns the smallest B that allows both, and `check_resamples` refuses a smaller one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from beartype import beartype
from jaxtyping import Bool, Float, Float64, Int, jaxtyped

from biobench.stats.bootstrap import Estimates, percentile_interval

ZERO_TOLERANCE = 1e-12


@jaxtyped(typechecker=beartype)
def bootstrap_p_value(differences: Float[np.ndarray, "b *shape"]) -> Float64[np.ndarray, "*shape"]:
    n_resamples = differences.shape[0]
    at_most_zero = (differences <= ZERO_TOLERANCE).sum(axis=0)
    at_least_zero = (differences >= -ZERO_TOLERANCE).sum(axis=0)
    p = 2 * (1 + np.minimum(at_most_zero, at_least_zero)) / (n_resamples + 1)
    return np.asarray(np.minimum(1.0, p), dtype=np.float64)


@jaxtyped(typechecker=beartype)
@dataclass(frozen=True)
class Pairwise:
    """All ordered pairs: entry [a, b] compares models[a] with models[b] (a - b)."""

    models: tuple[str, ...]
    diff: Float64[np.ndarray, "m m"]
    ci_low: Float64[np.ndarray, "m m"]
    ci_high: Float64[np.ndarray, "m m"]
    p_value: Float64[np.ndarray, "m m"]


def pairwise(estimates: Estimates, confidence: float) -> Pairwise:
    if problem := _too_few_resamples(estimates.resamples.shape[0], confidence):
        warnings.warn(problem, stacklevel=2)
    resampled = estimates.resamples[:, :, None] - estimates.resamples[:, None, :]
    low, high = percentile_interval(resampled, confidence)
    return Pairwise(
        models=estimates.models,
        diff=estimates.point[:, None] - estimates.point[None, :],
        ci_low=low,
        ci_high=high,
        p_value=bootstrap_p_value(resampled),
    )


@jaxtyped(typechecker=beartype)
def competition_ranks(point: Float[np.ndarray, " m"]) -> Int[np.ndarray, " m"]:
    return 1 + (point[None, :] > point[:, None]).sum(axis=1)


def minimum_resamples(confidence: float) -> int:
    """The smallest B with 2/(B + 1) <= 1 - confidence: a pairwise p-value, and hence the tie test, can reach a."""
    alpha = _alpha(confidence)
    b = max(1, int(np.ceil(2 / alpha)) - 1)
    while 2 / (b + 1) > alpha:
        b += 1
    while b > 1 and 2 / b <= alpha:
        b -= 1
    return b


def check_resamples(n_resamples: int, confidence: float) -> None:
    """Refuse a number of resamples with which no two models could be told apart (for config validation)."""
    if problem := _too_few_resamples(n_resamples, confidence):
        raise ValueError(problem)


def _too_few_resamples(n_resamples: int, confidence: float) -> str | None:
    alpha, needed = _alpha(confidence), minimum_resamples(confidence)
    if n_resamples >= needed:
        return None
    also = ", and no model could be declared worse than the best" if 1 / (n_resamples + 1) > alpha else ""
    return (f"bootstrap.resamples = {n_resamples} is too few for bootstrap.confidence = {confidence}: a pairwise "
            f"p-value cannot go below 2/(B + 1) = {2 / (n_resamples + 1):.4g}, which is above 1 - confidence = "
            f"{alpha:.4g}, so no two models could be told apart{also}. Set bootstrap.resamples to at least {needed} "
            f"(several times more for stable p-values).")


def _alpha(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    return 1 - confidence


@jaxtyped(typechecker=beartype)
def best_set_p_values(estimates: Estimates) -> Float64[np.ndarray, " m"]:
    """q_j of the step-down test of "model j is a best model" (module docstring)."""
    point, centered = estimates.point, estimates.resamples - estimates.point
    behind = point.max() - point
    behind[behind <= ZERO_TOLERANCE] = 0.0
    order = np.argsort(-behind, kind="stable")
    lowest_remaining = np.minimum.accumulate(centered[:, order[::-1]], axis=1)[:, ::-1]
    widest = centered.max(axis=1, keepdims=True) - lowest_remaining
    p = (1 + (widest >= behind[order]).sum(axis=0)) / (centered.shape[0] + 1)
    q = np.empty(len(point))
    q[order] = np.maximum.accumulate(p)
    return q


def tied_with_best(estimates: Estimates, alpha: float) -> Bool[np.ndarray, " m"]:
    """Models not shown to be worse than the best at level alpha (module docstring)."""
    n_resamples = estimates.resamples.shape[0]
    if 1 / (n_resamples + 1) > alpha:
        warnings.warn(f"with {n_resamples} resamples no model can be declared worse than the best at level "
                      f"{alpha:.4g} (the smallest adjusted p-value is 1/(B + 1) = {1 / (n_resamples + 1):.4g}): every "
                      f"model is tied with the best; raise bootstrap.resamples", stacklevel=2)
    return best_set_p_values(estimates) > alpha
