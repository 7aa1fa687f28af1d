"""The "logreg" protocol: standardised features, L2 multinomial logistic regression, C chosen on a stratified
validation split of the training rows by the task metric, then refitted on all training rows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from biobench.classifiers import multinomial
from biobench.classifiers.base import (
    CLASSIFIERS,
    Classifier,
    bfloat16_is_fast,
    check_metric,
    is_number,
    require_positive,
    selection_score,
    to_device,
    yaml_hint,
)
from biobench.classifiers.split import stratified_split
from biobench.errors import ConfigError

# One value per decade. biobench searched C in [1e-3, 1e1]; a decade more on each side because the best C moves
# with the number of training rows (the penalty per row is 1 / (C n)). Validation scores barely change within a
# decade, and the warm-started path makes the extra values cheap.
DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))


@dataclass(frozen=True)
class LogRegParams:
    """Cs: inverse L2 strengths to search (sklearn's C; one value = no search, no validation split).
    val_fraction: share of each class's training rows held out to choose C (classes with one row keep it).
    max_iter: L-BFGS iterations per C. tol: bound on the largest gradient entry of mean CE + ||W||^2 / (2 C n),
    the quantity sklearn's `tol` bounds for lbfgs. sklearn's default, 1e-4, is loose when there are many classes
    (gradient entries shrink like 1 / n_classes): at 1,000 classes it stops after 2-3 iterations, far from the
    optimum, and every C above some value returns the same early-stopped fit. In float32 a fit can also stop at
    the precision floor before reaching tol (stop "line_search"), which is as converged as float32 allows.
    The default (None) scales with the classes: min(1e-4, 1e-3 / n_classes), sklearn's 1e-4 up to 10 classes and
    1e-6 at 1,000.
    bfloat16_phase: start each fit with bfloat16 matrix products, then finish in float32 to the same tol (so the
    result is as accurate either way; see biobench.classifiers.multinomial). "auto": where bfloat16 products are
    fast (CUDA from compute capability 8.0; CPUs with AVX512-BF16 or AMX), true or false to force it."""

    Cs: tuple[float, ...] = DEFAULT_CS
    val_fraction: float = 0.2
    max_iter: int = 1000
    tol: float | None = None
    bfloat16_phase: bool | str = "auto"

    def __post_init__(self) -> None:
        Cs = self.Cs if isinstance(self.Cs, (list, tuple)) else (self.Cs,)
        if not Cs or not all(is_number(c) and math.isfinite(c) and c > 0 for c in Cs):
            hint = next((yaml_hint(c) for c in Cs if isinstance(c, str)), "")
            raise ConfigError(
                f"classifier 'logreg': Cs must be a non-empty list of positive numbers, got {self.Cs!r}{hint}"
            )
        object.__setattr__(self, "Cs", tuple(sorted(float(c) for c in set(Cs))))
        if not (is_number(self.val_fraction) and 0.0 < self.val_fraction < 1.0):
            raise ConfigError(
                f"classifier 'logreg': val_fraction must be a number between 0 and 1, got {self.val_fraction!r}"
            )
        if not isinstance(self.max_iter, int):
            raise ConfigError(f"classifier 'logreg': max_iter must be an integer, got {self.max_iter!r}")
        require_positive("max_iter", self.max_iter, "classifier 'logreg'")
        if self.tol is not None:
            require_positive("tol", self.tol, "classifier 'logreg'")
        if not (isinstance(self.bfloat16_phase, bool) or self.bfloat16_phase == "auto"):
            raise ConfigError(
                f"classifier 'logreg': bfloat16_phase must be auto, true or false, got {self.bfloat16_phase!r}"
            )

    def tol_for(self, n_classes: int) -> float:
        return self.tol if self.tol is not None else min(1e-4, 1e-3 / n_classes)

    def bfloat16_phase_on(self, device: torch.device) -> bool:
        return bfloat16_is_fast(device) if self.bfloat16_phase == "auto" else self.bfloat16_phase


@CLASSIFIERS.register("logreg")
class LogisticRegression(Classifier):
    """Selection metric: the task's (`metric`, "accuracy" or "macro_f1"); macro_f1 by default, as biobench's
    own search (scoring="f1_macro") and most of its tasks report it."""

    name = "logreg"
    Params = LogRegParams

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        check_metric(self.metric)

    def _fit(self, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        p = self.params
        self.classes, labels = np.unique(y, return_inverse=True)
        if len(self.classes) < 2:
            raise ValueError(
                f"logreg: the training rows all have label {self.classes[0]}; logistic regression needs at least "
                "two classes (check the task's manifest and split)"
            )
        rows = to_device(x, self.device)
        targets = to_device(labels.astype(np.int64), self.device)
        self.tol = p.tol_for(len(self.classes))
        self.bfloat16_phase = p.bfloat16_phase_on(rows.device)
        record: dict[str, Any] = {"n_train": len(y), "n_features": x.shape[1], "n_classes": len(self.classes),
                                  "tol": self.tol, "bfloat16_phase": self.bfloat16_phase}
        C, init = p.Cs[0], None
        if len(p.Cs) > 1:
            C, init, record["validation"] = self._choose_C(rows, targets, labels)
        self.scaler = Standardiser.fit(rows)
        final = multinomial.fit_path(
            self.scaler(rows), targets, len(self.classes), [C], tol=self.tol, max_iter=p.max_iter, init=init,
            bfloat16_phase=self.bfloat16_phase,
        )[0]
        self.weight, self.bias = final.weight, final.bias
        record["C"] = C
        record["refit"] = describe(final)
        return record

    def _choose_C(self, rows: torch.Tensor, targets: torch.Tensor, labels: np.ndarray):
        p = self.params
        fit_idx, val_idx = stratified_split(labels, p.val_fraction, self.seed)
        if len(val_idx) == 0:
            raise ConfigError(
                "logreg: every class has a single training row, so no validation rows can be held out to choose "
                "C; give Cs a single value"
            )
        fit_t, val_t = (to_device(i, self.device) for i in (fit_idx, val_idx))
        scaler = Standardiser.fit(rows[fit_t])
        path = multinomial.fit_path(
            scaler(rows[fit_t]), targets[fit_t], len(self.classes), list(p.Cs), tol=self.tol, max_iter=p.max_iter,
            bfloat16_phase=self.bfloat16_phase,
        )
        x_val = scaler(rows[val_t])
        scores = [
            selection_score(self.metric, labels[val_idx], multinomial.predict(x_val, s.weight, s.bias)[0])
            for s in path
        ]
        best = int(np.argmax(scores))  # ties go to the smaller C, the stronger regularisation
        validation = {
            "n_fit": len(fit_idx),
            "n_val": len(val_idx),
            "per_C": [{**describe(s), "score": score} for s, score in zip(path, scores)],
        }
        return path[best].C, (path[best].weight, path[best].bias), validation

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self.scaler(to_device(x, self.device))
        index, prob = multinomial.predict(rows, self.weight, self.bias)
        return self.classes[index], prob


@dataclass(frozen=True)
class Standardiser:
    """z-scores with the mean and (population) std of the rows it was fitted on; constant columns are centred only."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, rows: torch.Tensor) -> "Standardiser":
        mean = rows.sum(dim=0, dtype=torch.float64) / rows.shape[0]
        var = (rows - mean.to(rows.dtype)).square().sum(dim=0, dtype=torch.float64) / rows.shape[0]
        std = var.sqrt()
        std[std == 0] = 1.0
        return cls(mean.to(rows.dtype), std.to(rows.dtype))

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        return (rows - self.mean) / self.std


def describe(s: multinomial.Solution) -> dict[str, Any]:
    return {
        "C": s.C,
        "objective": s.objective,
        "grad_max": s.grad_max,
        "iterations": s.iterations,
        "bfloat16_iterations": s.bfloat16_iterations,
        "evaluations": s.evaluations,
        "stop": s.stop,
        "seconds": s.seconds,
    }
