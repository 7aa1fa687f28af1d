"""Synthetic classifiers with known population scores, and prediction files in the fit rule's format.

Used by the statistics tests (coverage, calibration, paired vs unpaired) and by bench/aggregate_speed.py.

Population model: the true label y ~ `prior`; a prediction is right with probability hit[y], otherwise it is drawn
from `confusion` (and may then still equal y). With u_i ~ Uniform(0, 1) per example, "right" is u_i < hit[y_i];
models that share u (see `correlated_uniforms`) tend to be right on the same examples, like real backbones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from beartype import beartype
from jaxtyping import Float, Float64, Int, jaxtyped


@jaxtyped(typechecker=beartype)
def zipf_prior(n_classes: int, exponent: float = 1.0) -> Float64[np.ndarray, " k"]:
    """Long-tailed class frequencies: p_c proportional to (c + 1) ** -exponent."""
    weights = np.arange(1, n_classes + 1, dtype=np.float64) ** -exponent
    return weights / weights.sum()


@jaxtyped(typechecker=beartype)
@dataclass(frozen=True)
class Classifier:
    prior: Float64[np.ndarray, " k"]
    hit: Float64[np.ndarray, " k"]
    confusion: Float64[np.ndarray, " k"]

    @property
    def joint_diagonal(self) -> np.ndarray:
        """P(y = c, prediction = c)."""
        return self.prior * (self.hit + (1 - self.hit) * self.confusion)

    @property
    def predicted_marginal(self) -> np.ndarray:
        """P(prediction = c)."""
        return self.prior * self.hit + self.confusion * np.sum(self.prior * (1 - self.hit))

    def population_accuracy(self) -> float:
        return float(self.joint_diagonal.sum())

    def population_macro_f1(self) -> float:
        """Mean over the classes with prior > 0 of 2 P(y = c, pred = c) / (P(y = c) + P(pred = c))."""
        present = self.prior > 0
        denominator = self.prior + self.predicted_marginal
        return float(np.mean(2 * self.joint_diagonal[present] / denominator[present]))

    def population_balanced_accuracy(self) -> float:
        present = self.prior > 0
        return float(np.mean(self.joint_diagonal[present] / self.prior[present]))

    def sample_labels(self, rng: np.random.Generator, n: int) -> Int[np.ndarray, " n"]:
        return rng.choice(len(self.prior), size=n, p=self.prior)

    def predict(self, rng: np.random.Generator, y_true: np.ndarray, uniforms: np.ndarray | None = None) -> np.ndarray:
        if uniforms is None:
            uniforms = rng.random(len(y_true))
        guesses = rng.choice(len(self.confusion), size=len(y_true), p=self.confusion)
        return np.where(uniforms < self.hit[y_true], y_true, guesses)


def correlated_uniforms(rng: np.random.Generator, shared: np.ndarray, overlap: float) -> Float[np.ndarray, " n"]:
    """Uniforms equal to `shared` on a random `overlap` fraction of the examples and fresh elsewhere."""
    return np.where(rng.random(len(shared)) < overlap, shared, rng.random(len(shared)))


def model_key(model: str) -> str:
    return f"{model.lower().replace(' ', '-')}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"


def write_task(
    root: Path,
    task: str,
    *,
    metric: str,
    labels: Sequence[str],
    y_true: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    benchmark: bool = True,
    groups: np.ndarray | None = None,
    seed: int = 0,
    train_size: int = 0,
) -> list[Path]:
    """Write a task manifest and one prediction parquet per model, in the fit rule's format; returns the latter."""
    n = len(y_true)
    example_ids = np.array([f"{task}-{i:07d}" for i in range(n)], dtype=object)
    group_column = pa.array(groups, pa.string()) if groups is not None else pa.nulls(n, pa.string())
    manifest = root / "manifests" / f"{task}.parquet"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "example_id": example_ids, "split": np.full(n, "test", dtype=object), "label": y_true.astype(np.int64),
        "label_name": np.asarray(labels, dtype=object)[y_true], "path": [f"images/{task}/{i}.jpg" for i in range(n)],
        "group": group_column,
    }), manifest)
    dataset_key = f"{task}-{hashlib.sha256(manifest.read_bytes()).hexdigest()[:8]}"
    rng = np.random.default_rng(seed)
    paths = []
    for model, y_pred in predictions.items():
        correct = y_pred == y_true
        meta = {
            "model": model, "model_key": model_key(model),
            "model_spec": {"org": "synthetic", "checkpoint": f"synthetic/{model}"},
            "task": task, "dataset_key": dataset_key, "classifier_key": "linear-00000000",
            "classifier": {"protocol": "linear"}, "metric": metric, "benchmark": benchmark, "labels": list(labels),
            "split": "test", "manifest": str(manifest), "manifest_sha256": dataset_key.rsplit("-", 1)[1],
            "n_train": train_size or 10 * n, "train_size": train_size,
            "embedding": {"device": "cpu", "images_per_s": 100.0, "seconds": n / 100, "dtype": "float32"},
            "fit": {"seconds": 1.0, "C": 1.0},
            "provenance": {"git_commit": "0" * 40, "host": "synthetic", "packages": {"numpy": np.__version__},
                           "created_at": "2026-01-02T03:04:05+00:00"},
        }
        table = pa.table({
            "example_id": example_ids, "y_true": y_true.astype(np.int64), "y_pred": y_pred.astype(np.int64),
            "score": correct.astype(np.float64),
            "prob": np.where(correct, 0.9, 0.4).astype(np.float32) * rng.uniform(0.5, 1.0, n).astype(np.float32),
            "group": group_column,
        }).replace_schema_metadata({b"biobench": json.dumps(meta).encode()})
        path = (root / "predictions" / meta["model_key"] / dataset_key / meta["classifier_key"]
                / f"train-{train_size or 'all'}.parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        paths.append(path)
    return paths
