"""Query rows against reference rows (training rows, centroids, class weights) in bounded batches, on any torch
device, and the distances kNN and SimpleShot need."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

BATCH_ELEMENTS = 2**25  # query rows x reference rows per batch: 128 MiB of float32


def row_batches(n_rows: int, n_refs: int) -> Iterator[slice]:
    step = max(1, BATCH_ELEMENTS // max(n_refs, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def best_per_row(
    n_rows: int, n_refs: int, score_batch: Callable[[slice], tuple[torch.Tensor, torch.Tensor]]
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate score_batch(rows) -> (index, probability) over row batches, as int64 and float32 numpy arrays."""
    index, prob = [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for rows in row_batches(n_rows, n_refs):
        i, p = score_batch(rows)
        index.append(i.cpu().numpy().astype(np.int64))
        prob.append(p.cpu().numpy().astype(np.float32))
    return np.concatenate(index), np.concatenate(prob)


def squared_distances(queries: torch.Tensor, refs: torch.Tensor, refs_sq: torch.Tensor) -> torch.Tensor:
    """|q - r|^2 for every pair, as |q|^2 - 2 q.r + |r|^2 (clamped at 0); refs_sq = |r|^2, computed once."""
    out = torch.addmm(refs_sq, queries, refs.T, alpha=-2.0)
    out.add_(queries.square().sum(dim=1, keepdim=True))
    return out.clamp_(min=0.0)


def l2_normalise(rows: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(rows, dim=1)
