"""SimpleShot (Wang et al. 2019): centre on the training mean, L2-normalise, nearest class centroid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from biobench.classifiers.base import CLASSIFIERS, Classifier, to_device
from biobench.classifiers.geometry import best_per_row, l2_normalise, squared_distances


@dataclass(frozen=True)
class SimpleShotParams:
    """No parameters."""


@CLASSIFIERS.register("simpleshot")
class SimpleShot(Classifier):
    """Features are centred on the training mean and L2-normalised; each class is the mean of its transformed
    training rows (not renormalised, as in biobench), and a test row takes the class of the nearest centroid
    (Euclidean). The probability is softmax(-d^2 / 2) over the centroids, i.e. unit-variance Gaussian classes with
    equal priors. No hyperparameter search (`metric` is ignored)."""

    name = "simpleshot"
    Params = SimpleShotParams

    def _fit(self, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        self.classes, labels = np.unique(y, return_inverse=True)
        rows = to_device(x, self.device)
        self.mean = rows.mean(dim=0)
        rows = l2_normalise(rows - self.mean)
        index = to_device(labels.astype(np.int64), self.device)
        sums = torch.zeros(len(self.classes), rows.shape[1], device=self.device).index_add_(0, index, rows)
        counts = torch.bincount(index, minlength=len(self.classes)).to(rows.dtype)
        self.centroids = sums / counts[:, None]
        self.centroids_sq = self.centroids.square().sum(dim=1)
        return {"n_train": len(y), "n_classes": len(self.classes)}

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        queries = l2_normalise(to_device(x, self.device) - self.mean)

        def nearest(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
            p = torch.softmax(-0.5 * squared_distances(queries[rows], self.centroids, self.centroids_sq), dim=1)
            prob, winner = p.max(dim=1)
            return winner, prob

        index, prob = best_per_row(len(x), len(self.centroids), nearest)
        return self.classes[index], prob
