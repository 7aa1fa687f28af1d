"""Seeded, stratified validation splits carved from the training rows, for choosing hyperparameters: one hold-out
split, or k folds."""

from __future__ import annotations

import numpy as np
from beartype import beartype
from jaxtyping import Int, Int64, jaxtyped


@jaxtyped(typechecker=beartype)
def stratified_split(
    y: Int[np.ndarray, " n"], val_fraction: float, seed: int
) -> tuple[Int64[np.ndarray, " n_fit"], Int64[np.ndarray, " n_val"]]:
    """Row indices (fit, val), each sorted. A class with c >= 2 rows sends round(c * val_fraction) of them to
    validation, but at least 1 and at most c - 1; a class with a single row keeps it for fitting. So every class
    is fitted, and every class that can be is also validated."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
    rng = np.random.default_rng(seed)
    order = np.argsort(y, kind="stable")
    _, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
    val_parts = []
    for start, count in zip(starts, counts):
        n_val = min(max(int(round(count * val_fraction)), 1), count - 1)
        if n_val > 0:
            val_parts.append(rng.choice(order[start : start + count], size=n_val, replace=False))
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.zeros(0, dtype=np.int64)
    fit = np.setdiff1d(np.arange(len(y)), val, assume_unique=True)
    return fit.astype(np.int64), val.astype(np.int64)


@jaxtyped(typechecker=beartype)
def stratified_folds(y: Int[np.ndarray, " n"], n_folds: int, seed: int) -> Int64[np.ndarray, " n"]:
    """The fold (0..n_folds-1) of each row. The rows, grouped by class and shuffled within each class, are dealt
    round-robin to the folds, the deal running on from one class to the next. Each class is then spread as evenly
    as it can be (its fold counts differ by at most one) and so are the folds' sizes: the allocation of sklearn's
    StratifiedKFold, with another shuffle."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds!r}")
    rng = np.random.default_rng(seed)
    order = np.argsort(y, kind="stable")
    _, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
    for start, count in zip(starts, counts):
        rng.shuffle(order[start : start + count])
    folds = np.empty(len(y), dtype=np.int64)
    folds[order] = np.arange(len(y)) % n_folds
    return folds
