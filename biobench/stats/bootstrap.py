"""Paired bootstrap over test examples, shared by every model of a task.

Resamples. For a task named T with n test examples and a configured integer `seed`, the generator is
    numpy.random.default_rng([seed, h(T)]),  h(T) = int.from_bytes(sha256(T.encode("utf-8")).digest()[:8], "little"),
and resample k = 0, 1, ..., B-1 is the index vector `rng.integers(0, n, size=n)` drawn in that order, one call per
resample (`resample_indices` yields exactly these). The indices depend only on (seed, T, n, B), so every model of
the task is evaluated on the same resampled examples: differences between models are paired. Tasks use
independent generators. Rows are in ascending `example_id` order (by UTF-8 bytes, as Python's sorted() orders
str; the aggregate step sorts them), so row i is the same example for every model. The classifier is not refit:
the bootstrap resamples test predictions.

Each resample is evaluated as a weighted sample (`biobench.stats.metrics`): the weight of example i in resample k
is the number of times i was drawn. For a non-additive metric (macro-F1, balanced accuracy) this recomputes the
metric from the resampled labels with the same definition as the point estimate.

Intervals. With resampled values v_0..v_{B-1} of a statistic whose point estimate is t, a = 1 - c, and Q the sample
quantile with linear interpolation (numpy's default "linear" method, Hyndman-Fan type 7, as scipy.stats.bootstrap):
    percentile  [Q(a/2), Q(1 - a/2)]                          (`percentile_interval`, scipy's method="percentile")
    centered    [Q(a/2) - d, Q(1 - a/2) - d],  d = mean(v) - t  (`centered_interval`, the default)
                then each end is kept within [min(v_min, t), max(v_max, t)] and the interval is widened to hold t
"centered" is the percentile interval of the resamples shifted so that their mean is the point estimate: it keeps
the bootstrap distribution's spread and shape and drops its bias d. The second line matters only for a degenerate
distribution (e.g. t = 1 and a few resamples below it, so that Q(a/2) = Q(1 - a/2) = 1 > mean(v)): the shift would
otherwise push the interval past every value the statistic took, past a metric's range, and off t. For an average of per-example values (accuracy,
mean_score) d is Monte Carlo noise (E* mean(v) = t) and the two intervals agree; for macro-F1 on many rare
classes the resamples run well below t (a class with one or two test examples often drops out of a resample and
then scores 0, and F1 of a resampled class is biased low), so the percentile interval misses the value it is
meant to cover. Both cover test-set sampling only (the training set and the fitted model are fixed): the
centered interval is for the expected value of the metric on a fresh test set of the same size drawn like this one.
On long-tailed macro-F1 that is not the population value: macro-F1 of a finite test set is biased (usually low)
for rare classes, and no bootstrap interval here covers the population value there. `bench/coverage_study.py`
measures the coverage of these and other intervals (README, Statistics). Defaults: B = 1000, c = 0.95.

Overall score. For model m with scores s_mT on the K benchmark tasks T, the overall score is the unweighted mean S_m
= (1/K) sum_T s_mT; its resample k is (1/K) sum_T s*_mTk, the mean of the k-th resample of each task. Because each
task's resamples come from its own generator, this resamples every task independently (the tasks' test sets are
independent samples), and it stays paired across models. The overall interval and the overall comparisons use these
resampled means exactly as the per-task ones use the per-task resamples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from beartype import beartype
from jaxtyping import Float, Float32, Float64, Int, jaxtyped

from biobench.stats.metrics import MAX_EXACT_WEIGHT_SUM, Metric, Sample, point_estimate

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_INTERVAL = "centered"
_BLOCK_ROWS, _BLOCK_DRAWS = 64, 2**16  # resamples drawn per call: at least 64, more when n is small


def task_rng(seed: int, task: str) -> np.random.Generator:
    """The task's own generator, from (seed, task name) through a stable hash (not Python's salted hash())."""
    if seed < 0:
        raise ValueError(f"bootstrap seed must be a non-negative integer, got {seed}")
    task_hash = int.from_bytes(hashlib.sha256(task.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, task_hash])


def resample_indices(seed: int, task: str, n: int, n_resamples: int) -> Iterator[Int[np.ndarray, " n"]]:
    """The index vectors of the task's resamples, in order (the definition of the resamples)."""
    rng = task_rng(seed, task)
    for _ in range(n_resamples):
        yield rng.integers(0, n, size=n)


@jaxtyped(typechecker=beartype)
def resample_weights(seed: int, task: str, n: int, n_resamples: int) -> Float32[np.ndarray, "n b"]:
    """weights[i, k] = how many times example i occurs in resample k (the resamples of `resample_indices`)."""
    if not 0 < n < MAX_EXACT_WEIGHT_SUM:
        raise ValueError(f"a task needs between 1 and {MAX_EXACT_WEIGHT_SUM - 1} test examples, got {n}")
    rng = task_rng(seed, task)
    weights = np.empty((n, n_resamples), dtype=np.float32)
    rows = max(_BLOCK_ROWS, _BLOCK_DRAWS // n)
    counts = np.empty((rows, n), dtype=np.float32)
    for start in range(0, n_resamples, rows):
        stop = min(start + rows, n_resamples)
        # Several resamples per call: the generator's stream, hence each row, is the same as one call per resample.
        indices = rng.integers(0, n, size=(stop - start, n))
        for row, drawn in enumerate(indices):
            counts[row] = np.bincount(drawn, minlength=n)
        weights[:, start:stop] = counts[: stop - start].T  # a block of columns at a time: cache-friendly
    return weights


@jaxtyped(typechecker=beartype)
def percentile_interval(
    resamples: Float[np.ndarray, "b *shape"], confidence: float
) -> tuple[Float64[np.ndarray, "*shape"], Float64[np.ndarray, "*shape"]]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    alpha = 1 - confidence
    low, high = np.quantile(resamples, [alpha / 2, 1 - alpha / 2], axis=0)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


@jaxtyped(typechecker=beartype)
def centered_interval(
    resamples: Float[np.ndarray, "b *shape"], point: Float[np.ndarray, "*shape"], confidence: float
) -> tuple[Float64[np.ndarray, "*shape"], Float64[np.ndarray, "*shape"]]:
    low, high = percentile_interval(resamples, confidence)
    shift = resamples.mean(axis=0) - point
    floor = np.minimum(resamples.min(axis=0), point)
    ceiling = np.maximum(resamples.max(axis=0), point)
    low = np.minimum(np.clip(low - shift, floor, ceiling), point)
    high = np.maximum(np.clip(high - shift, floor, ceiling), point)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def interval(estimates: Estimates, confidence: float, method: str = DEFAULT_INTERVAL
             ) -> tuple[Float64[np.ndarray, " m"], Float64[np.ndarray, " m"]]:
    """The `method` ("centered" or "percentile") interval of each model's statistic."""
    if method == "centered":
        return centered_interval(estimates.resamples, estimates.point, confidence)
    if method == "percentile":
        return percentile_interval(estimates.resamples, confidence)
    raise ValueError(f"interval method must be 'centered' or 'percentile', got {method!r}")


@jaxtyped(typechecker=beartype)
@dataclass(frozen=True)
class Estimates:
    """A statistic for m models: point estimates and B paired bootstrap resamples of it."""

    models: tuple[str, ...]
    point: Float64[np.ndarray, " m"]
    resamples: Float64[np.ndarray, "b m"]

    def __post_init__(self) -> None:
        if len(self.models) != self.point.shape[0]:
            raise ValueError(f"{len(self.models)} model names for {self.point.shape[0]} estimates")

    def select(self, models: Sequence[str]) -> Estimates:
        columns = [self.models.index(model) for model in models]
        return Estimates(tuple(models), self.point[columns], self.resamples[:, columns])


def bootstrap_task(
    metric: Metric, sample: Sample, models: Sequence[str], *, seed: int, task: str, n_resamples: int
) -> Estimates:
    """Point estimate and paired resamples of `metric` for every model of one task."""
    weights = resample_weights(seed, task, sample.n_examples, n_resamples)
    return Estimates(tuple(models), point_estimate(metric, sample), metric(weights, sample))


def mean_over_tasks(per_task: Sequence[Estimates], models: Sequence[str]) -> Estimates:
    """The overall score of `models` (each must appear in every task): unweighted mean over the tasks."""
    if not per_task:
        raise ValueError("the overall score needs at least one task")
    selected = [task.select(models) for task in per_task]
    return Estimates(
        tuple(models),
        np.mean([task.point for task in selected], axis=0),
        np.mean([task.resamples for task in selected], axis=0),
    )
