"""Task metrics, each computed from a *weighted* sample of per-example predictions.

A metric is a function `metric(weights, sample) -> values` where `sample` holds the predictions of m models on the
same n test examples and `weights` is an (n, b) matrix of example multiplicities: column k says how many times each
example occurs in the k-th sample to evaluate. The point estimate is the metric at weights = 1 (every example once);
bootstrap resample k is the metric at the counts of each example among the k-th draw of n indices
(`biobench.stats.bootstrap`). One function therefore defines both, so the point estimate and every resample use
the same definition, class set included.

Notation for one model on one weighted sample: w_i is the weight of example i, y_i its true label, p_i the predicted
label, and for a class c
    T_c  = sum_i w_i [y_i = c]                      (weighted true count)
    P_c  = sum_i w_i [p_i = c]                      (weighted predicted count)
    TP_c = sum_i w_i [y_i = c][p_i = c]             (weighted true positives)

accuracy
    A = sum_i w_i [p_i = y_i] / sum_i w_i.
    Pooled over every row of the task (NeWT: all of its binary sub-tasks' test rows together).

Class sets. The classes that a macro average runs over are fixed per task, before any resampling: one set C for
the point estimate, every resample and every model, so the resamples vary the examples and nothing else.
    C = the labels that occur in the evaluation split's truth y (`Sample.classes`, the classes with T_c > 0 at w = 1).
A class absent from a resample (T_c = 0 there) stays in the mean; with 0/0 := 0 it contributes 0 (it has no true
examples to recall). At the point estimate every c in C has T_c >= 1, so 0/0 never occurs there. A prediction of a
label outside C is a wrong prediction: it lowers the recall of its example's true class and is no class's true or
false positive of its own.

macro_f1
    F1_c = 2 TP_c / (T_c + P_c)   (= 2TP / (2TP + FP + FN)),  0 when T_c + P_c = 0,
    MF1  = (1/|C|) sum_{c in C} F1_c.
    On any weighted sample this is scikit-learn's `f1_score(y_true, y_pred, labels=C, average="macro",
    zero_division=0)` applied to the rows repeated w_i times; at the point estimate it is also
    `f1_score(y, y_pred, labels=np.unique(y), average="macro")`.

macro_f1_label_ids (the original BioBench's macro-F1, to reproduce its published numbers)
    The same F1_c, averaged over the label ids 0..L_m-1 of the task's label encoding, L_m = 1 + the largest label
    id that occurs in the test set's truth or in model m's predictions (on every example, w = 1; negative
    predictions, if any, are wrong predictions of no class). Ids that occur nowhere count as F1 = 0. The set is
    fixed per model for all of its resamples. At the point estimate: `f1_score(y, y_pred, labels=np.arange(L_m),
    average="macro", zero_division=0)`, which is the original's `reporting.macro_f1`. (Its bootstrap recomputed L from
    each resample, which differs only in resamples that lose every example of the largest id.)

balanced_accuracy
    BA = (1/|C|) sum_{c in C} TP_c / T_c,  0 when T_c = 0 (a class of C absent from a resample).
    On any weighted sample this is `recall_score(y_true, y_pred, labels=C, average="macro", zero_division=0)`; at the
    point estimate it is `balanced_accuracy_score(y, y_pred)` (the original BioBench's macro accuracy).

mean_score
    S = sum_i w_i s_i / sum_i w_i, the weighted mean of the per-example `score` column (for tasks whose per-example
    score is not 0/1, such as a fraction of traits predicted correctly).

Task-specific metrics (the hook): register a function with the `metric(weights, sample)` signature under a new
name, `@METRICS.register("my_metric")`, or wrap a plain `fn(y_true, y_pred) -> float` with `per_sample_metric(fn)`:
it expands each column of integer weights into the resampled rows and calls `fn` once per model and resample
(simple and exact, but slow for large tasks). `fn` must not depend on row order, and chooses its own class set (a
macro average should pass `labels=` fixed per task, as above, or its class set changes from resample to resample).

Counts are accumulated in float32 (weights are small integers), which is exact while n < 2**24.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse
from beartype import beartype
from jaxtyping import Float, Float32, Float64, Int, jaxtyped

from biobench.registry import Registry

MAX_EXACT_WEIGHT_SUM = 2**24  # float32 holds every integer up to here exactly
_SCORE_COLUMNS = 64  # resample columns per float64 product in mean_score
_COUNT_ROWS = 1024  # (model, class) rows of counts per sparse product: 1024 x 1000 resamples = 4 MB


@jaxtyped(typechecker=beartype)
@dataclass(frozen=True)
class Sample:
    """Predictions of m models on the same n test examples of one task, rows in the same example order."""

    y_true: Int[np.ndarray, " n"]
    y_pred: Int[np.ndarray, "m n"]
    score: Float[np.ndarray, "m n"]

    @property
    def n_models(self) -> int:
        return self.y_pred.shape[0]

    @property
    def n_examples(self) -> int:
        return self.y_true.shape[0]

    @functools.cached_property
    def classes(self) -> Int[np.ndarray, " k"]:
        """C: the labels that occur in y_true, sorted (the class set of every macro average on this sample)."""
        return np.unique(self.y_true)

    @functools.cached_property
    def class_codes(self) -> tuple[Int[np.ndarray, " n"], Int[np.ndarray, "m n"], int]:
        """Labels as positions in `classes`: y_true -> 0..K-1, y_pred -> 0..K-1, or -1 for a label outside C."""
        true_codes = np.searchsorted(self.classes, self.y_true)
        position = np.minimum(np.searchsorted(self.classes, self.y_pred), len(self.classes) - 1)
        pred_codes = np.where(self.classes[position] == self.y_pred, position, -1)
        return true_codes, pred_codes, len(self.classes)

    @functools.cached_property
    def correct(self) -> np.ndarray:
        return self.y_pred == self.y_true


class Metric(Protocol):
    def __call__(self, weights: Float32[np.ndarray, "n b"], sample: Sample) -> Float64[np.ndarray, "b m"]: ...


METRICS: Registry[Metric] = Registry("metric")


def grouped_counts(
    weights: np.ndarray, codes: Int[np.ndarray, "m n"], n_codes: int
) -> Iterator[tuple[slice, Float64[np.ndarray, "g k b"]]]:
    """For groups of models: counts[j, c, k] = sum of weights[i, k] over the examples i with codes[j, i] = c.

    Codes < 0 are left out. Each group is one sparse 0/1 matrix (model x code rows, example columns, compressed by
    example) times the (n, b) weights, so every row of weights is read once per group and the group's counts stay in
    cache: O(n * models * b) work on one core, exact in float32 for counts below 2**24.
    """
    n_models, n_examples = codes.shape
    group = max(1, _COUNT_ROWS // n_codes)
    for start in range(0, n_models, group):
        block = codes[start : start + group]
        model, example = np.nonzero(block >= 0)
        indicator = scipy.sparse.csc_matrix(
            (np.ones(len(model), dtype=weights.dtype), (model * n_codes + block[model, example], example)),
            shape=(len(block) * n_codes, n_examples),
        )
        counts = np.asarray(indicator @ weights, dtype=np.float64).reshape(len(block), n_codes, weights.shape[1])
        yield slice(start, start + len(block)), counts


def weighted_counts(weights: np.ndarray, codes: Int[np.ndarray, " n"], n_codes: int) -> Float64[np.ndarray, "k b"]:
    """counts[c, k] = sum of weights[i, k] over the examples i with codes[i] = c (codes < 0 are left out)."""
    _, counts = next(grouped_counts(weights, codes[None], n_codes))
    return counts[0]


@METRICS.register("accuracy")
@jaxtyped(typechecker=beartype)
def accuracy(weights: Float32[np.ndarray, "n b"], sample: Sample) -> Float64[np.ndarray, "b m"]:
    out = np.empty((weights.shape[1], sample.n_models))
    total = weights.sum(axis=0, dtype=np.float64)
    for models, counts in grouped_counts(weights, np.where(sample.correct, 0, -1), 1):
        out[:, models] = (counts[:, 0] / total).T
    return out


@METRICS.register("mean_score")
@jaxtyped(typechecker=beartype)
def mean_score(weights: Float32[np.ndarray, "n b"], sample: Sample) -> Float64[np.ndarray, "b m"]:
    out = np.empty((weights.shape[1], sample.n_models))
    for start in range(0, weights.shape[1], _SCORE_COLUMNS):  # float64 copies of a few weight columns at a time
        columns = weights[:, start : start + _SCORE_COLUMNS].astype(np.float64)
        out[start : start + _SCORE_COLUMNS] = (sample.score @ columns / columns.sum(axis=0)).T
    return out


def _macro_f1(weights: np.ndarray, sample: Sample, true_codes: np.ndarray, pred_codes: np.ndarray, n_codes: int,
              n_classes: np.ndarray) -> np.ndarray:
    """Sum of F1_c over the codes 0..n_codes-1 (0/0 := 0), divided by each model's number of classes."""
    true_counts = weighted_counts(weights, true_codes, n_codes)
    out = np.empty((weights.shape[1], sample.n_models))
    # One pass counts both: code 2c + 1 = predicted c and right, 2c = predicted c and wrong.
    for models, counts in grouped_counts(weights, 2 * pred_codes + sample.correct, 2 * n_codes):
        true_positives = counts[:, 1::2]
        denominator = true_counts + counts[:, 0::2] + true_positives  # T_c + P_c
        f1 = np.divide(2 * true_positives, denominator, out=np.zeros_like(denominator), where=denominator > 0)
        out[:, models] = f1.sum(axis=1).T / n_classes[models]
    return out


@METRICS.register("macro_f1")
@jaxtyped(typechecker=beartype)
def macro_f1(weights: Float32[np.ndarray, "n b"], sample: Sample) -> Float64[np.ndarray, "b m"]:
    true_codes, pred_codes, n_classes = sample.class_codes
    return _macro_f1(weights, sample, true_codes, pred_codes, n_classes, np.full(sample.n_models, n_classes))


@METRICS.register("macro_f1_label_ids")
@jaxtyped(typechecker=beartype)
def macro_f1_label_ids(weights: Float32[np.ndarray, "n b"], sample: Sample) -> Float64[np.ndarray, "b m"]:
    if sample.y_true.min() < 0:
        raise ValueError("macro_f1_label_ids needs label ids >= 0 in the truth")
    n_ids = 1 + np.maximum(sample.y_true.max(), sample.y_pred.max(axis=1))  # L_m
    pred_codes = np.where(sample.y_pred >= 0, sample.y_pred, -1)
    return _macro_f1(weights, sample, sample.y_true, pred_codes, int(n_ids.max()), n_ids)


@METRICS.register("balanced_accuracy")
@jaxtyped(typechecker=beartype)
def balanced_accuracy(weights: Float32[np.ndarray, "n b"], sample: Sample) -> Float64[np.ndarray, "b m"]:
    true_codes, _, n_classes = sample.class_codes
    true_counts = weighted_counts(weights, true_codes, n_classes)
    out = np.empty((weights.shape[1], sample.n_models))
    for models, true_positives in grouped_counts(weights, np.where(sample.correct, true_codes, -1), n_classes):
        recall = np.divide(true_positives, true_counts, out=np.zeros_like(true_positives), where=true_counts > 0)
        out[:, models] = recall.mean(axis=1).T
    return out


MACRO_F1_CLASSES = {"eval_truth": "macro_f1", "label_ids": "macro_f1_label_ids"}


def scoring_metric(metric: str, macro_f1_classes: str = "eval_truth") -> str:
    """The registered metric that scores a task whose metric is `metric` under the `macro_f1_classes` setting:
    "eval_truth" (default, the classes of the evaluation split's truth) or "label_ids" (the original BioBench's)."""
    if macro_f1_classes not in MACRO_F1_CLASSES:
        raise ValueError(f"macro_f1_classes must be one of {sorted(MACRO_F1_CLASSES)}, got {macro_f1_classes!r}")
    return MACRO_F1_CLASSES[macro_f1_classes] if metric == "macro_f1" else metric


def per_sample_metric(fn: Callable[[np.ndarray, np.ndarray], float]) -> Metric:
    """Make a metric from `fn(y_true, y_pred) -> float` by materialising each weighted sample (integer weights)."""

    @jaxtyped(typechecker=beartype)
    def metric(weights: Float32[np.ndarray, "n b"], sample: Sample) -> Float64[np.ndarray, "b m"]:
        counts = weights.astype(np.int64)
        if not np.array_equal(counts, weights):
            raise ValueError("per_sample_metric needs integer weights (example multiplicities)")
        rows = np.arange(sample.n_examples)
        out = np.empty((weights.shape[1], sample.n_models))
        for k in range(weights.shape[1]):
            index = np.repeat(rows, counts[:, k])
            for j in range(sample.n_models):
                out[k, j] = fn(sample.y_true[index], sample.y_pred[j, index])
        return out

    metric.__name__ = getattr(fn, "__name__", "per_sample_metric")
    return metric


def point_estimate(metric: Metric, sample: Sample) -> Float64[np.ndarray, " m"]:
    """The metric on the test set itself: every example once."""
    return metric(np.ones((sample.n_examples, 1), dtype=np.float32), sample)[0]
