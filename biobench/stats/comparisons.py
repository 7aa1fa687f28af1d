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
identical predictions get p = 1.

Rank. 1 + the number of models with a strictly higher point estimate (equal estimates share a rank).

Tied with the best (Holm). The best model is the one with the highest point estimate (the first by name among
equal ones). For each of the other m - 1 models j, H_j: s_best = s_j is tested with the p-value above. Holm's
step-down procedure at level a = 1 - c: sort the p-values p_(1) <= ... <= p_(m-1) and reject H_(1), ..., H_(r-1)
where r is the first i with p_(i) > a / (m - i); if there is none, all are rejected. A model is tied with the best
when its hypothesis is not rejected; the best model is tied with itself. This controls the family-wise error rate
of the claims "j is worse than the best" at a, whatever the dependence between the tests.
"""

from __future__ import annotations

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


@jaxtyped(typechecker=beartype)
def holm_reject(p_values: Float[np.ndarray, " k"], alpha: float) -> Bool[np.ndarray, " k"]:
    order = np.argsort(p_values, kind="stable")
    thresholds = alpha / (len(p_values) - np.arange(len(p_values)))
    passes = p_values[order] <= thresholds
    n_rejected = len(p_values) if passes.all() else int(np.argmin(passes))
    rejected = np.zeros(len(p_values), dtype=bool)
    rejected[order[:n_rejected]] = True
    return rejected


@jaxtyped(typechecker=beartype)
def tied_with_best(
    point: Float[np.ndarray, " m"], p_value: Float[np.ndarray, "m m"], alpha: float
) -> Bool[np.ndarray, " m"]:
    best = int(np.argmax(point))
    others = np.array([j for j in range(len(point)) if j != best], dtype=np.int64)
    tied = np.ones(len(point), dtype=bool)
    tied[others] = ~holm_reject(p_value[best, others], alpha)
    return tied
