"""k nearest neighbours by a matrix product and top-k, in batches of query rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from biobench.classifiers.base import CLASSIFIERS, Classifier, require_positive, to_device
from biobench.classifiers.geometry import best_per_row, l2_normalise, squared_distances
from biobench.errors import ConfigError

DISTANCES = ("euclidean", "cosine")


@dataclass(frozen=True)
class KNNParams:
    """k: neighbours that vote, with equal weight; a tie goes to the smallest label, as in sklearn.
    distance: "euclidean" (biobench's and sklearn's default) or "cosine"."""

    k: int = 5
    distance: str = "euclidean"

    def __post_init__(self) -> None:
        if not isinstance(self.k, int):
            raise ConfigError(f"classifier 'knn': k must be an integer, got {self.k!r}")
        require_positive("k", self.k, "classifier 'knn'")
        if self.distance not in DISTANCES:
            raise ConfigError(f"classifier 'knn': distance must be one of {list(DISTANCES)}, got {self.distance!r}")


@CLASSIFIERS.register("knn")
class KNearestNeighbours(Classifier):
    """Predicts the majority label of the k training rows nearest to each test row; the probability is the
    share of the k votes it got. No hyperparameter search (`metric` is ignored)."""

    name = "knn"
    Params = KNNParams

    def _fit(self, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        if self.params.k > len(y):
            raise ConfigError(f"knn: k={self.params.k} but there are only {len(y)} training rows; lower k")
        self.classes, labels = np.unique(y, return_inverse=True)
        refs = to_device(x, self.device)
        self.refs = l2_normalise(refs) if self.params.distance == "cosine" else refs
        self.refs_sq = self.refs.square().sum(dim=1)
        self.labels = to_device(labels.astype(np.int64), self.device)
        return {"n_train": len(y), "n_classes": len(self.classes)}

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        queries = to_device(x, self.device)
        if self.params.distance == "cosine":
            queries = l2_normalise(queries)
        k, n_classes = self.params.k, len(self.classes)

        def vote(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
            if self.params.distance == "cosine":
                nearest = (queries[rows] @ self.refs.T).topk(k, dim=1).indices
            else:
                distances = squared_distances(queries[rows], self.refs, self.refs_sq)
                nearest = distances.topk(k, dim=1, largest=False).indices
            votes = torch.zeros(nearest.shape[0], n_classes, device=self.device)
            votes.scatter_add_(1, self.labels[nearest], torch.ones_like(nearest, dtype=votes.dtype))
            count, winner = votes.max(dim=1)
            return winner, count / k

        index, share = best_per_row(len(x), len(self.refs), vote)
        return self.classes[index], share
