"""Few-shot training sets: a seeded, class-balanced subsample of the training rows (the `n_train` task option).

For a size N and rows with labels y, classes are visited in a seeded random order and take one row each, round after
round, skipping classes that have run out, until N rows are taken (or every row is): N spread as evenly over the
classes as their sizes allow, as the original BioBench's `balanced_random_sample` does, with its remainder going to
a seeded random choice of classes. Within a class, rows are taken in a seeded random order. The order of classes
and of rows depends only on (seed, y), so a smaller size's rows are a subset of a larger size's: a curve over sizes
adds rows, it does not redraw them. The evaluation split is never subsampled."""

from __future__ import annotations

import numpy as np
from beartype import beartype
from jaxtyping import Int, Int64, jaxtyped


@jaxtyped(typechecker=beartype)
def balanced_subsample(y: Int[np.ndarray, " n"], size: int, seed: int) -> Int64[np.ndarray, " k"]:
    """Sorted row indices of the subsample; every row when `size` is 0 or at least len(y)."""
    if size < 0:
        raise ValueError(f"n_train must be >= 0, got {size}")
    if size == 0 or size >= len(y):
        return np.arange(len(y), dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    rows_of = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    class_order = rng.permutation(len(classes))
    rounds = _full_rounds(counts, size)
    taken = np.minimum(counts, rounds)
    open_classes = class_order[counts[class_order] > rounds]
    taken[open_classes[: size - int(taken.sum())]] += 1
    return np.sort(np.concatenate([rows[:k] for rows, k in zip(rows_of, taken)])).astype(np.int64)


def _full_rounds(counts: np.ndarray, size: int) -> int:
    """The most rounds r of one row per class (classes that run out skipped) with sum(min(counts, r)) <= size."""
    low, high = 0, int(counts.max())
    while low < high:
        middle = (low + high + 1) // 2
        if int(np.minimum(counts, middle).sum()) <= size:
            low = middle
        else:
            high = middle - 1
    return low
