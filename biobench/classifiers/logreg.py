"""The "logreg" protocol.

Model: features z-scored with the mean and std of the rows being fitted (Standardiser), then L2 multinomial logistic
regression with sklearn's LogisticRegression(solver="lbfgs") objective, solved by biobench.classifiers.multinomial.
With class_weight="balanced" each row's cross-entropy is weighted by n / (K n_c), as sklearn's class_weight does,
n, K and n_c counted on the rows being fitted.

C: one value in `Cs` is used as it is. Otherwise it is chosen from `Cs` by the task metric (`metric`, accuracy or
macro-F1) on rows held out from the training rows, every fit warm-started along Cs in increasing order:
- cv_folds = 0 (default), one hold-out: each class with c >= 2 rows holds out round(c * val_fraction) of them
  (at least 1, at most c - 1; split.stratified_split, seeded); the standardiser and the model are fitted on the
  rest, and each C is scored on the held-out rows.
- cv_folds = k >= 2, stratified k-fold (split.stratified_folds, seeded): for each fold, the standardiser and the
  model are fitted on the other folds (on the classes they hold) and each C is scored on the fold; a C's score is
  its mean over the k folds.
The best score wins, ties going to the smaller C (the stronger regularisation). Where nothing can be validated (no
class has two rows; with folds also: fewer rows than folds, or a fold whose other folds hold one class only), C is
sklearn's default, 1.0, and the fit record's C_choice says why.

Refit: standardiser and model on all training rows at the chosen C, warm-started from the hold-out fit's solution
at that C (k-fold: the mean of the solutions of the folds that fitted every class).

biobench's own probe (helpers.init_logreg_clf; KABR, MammalNet): StandardScaler + LogisticRegression(saga, L2,
class_weight="balanced", max_iter=1000) in RandomizedSearchCV(C ~ loguniform(1e-3, 1e1), 30 draws, f1_macro,
5-fold stratified CV). class_weight="balanced" with cv_folds=5 is that protocol but for the search over C (a grid
instead of 30 random draws) and the solver (lbfgs to tol instead of saga; the same optimum)."""

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
from biobench.classifiers.split import stratified_folds, stratified_split
from biobench.errors import ConfigError

# One value per decade. biobench searched C in [1e-3, 1e1]; a decade more on each side because the best C moves
# with the number of training rows (the penalty per row is 1 / (C n)). Validation scores barely change within a
# decade, and the warm-started path makes the extra values cheap.
DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
UNVALIDATED_C = 1.0  # sklearn's default, for training rows too few to choose C on
CLASS_WEIGHTS = (None, "balanced")


@dataclass(frozen=True)
class LogRegParams:
    """Cs: inverse L2 strengths to search (sklearn's C; one value = no search, no validation split).
    val_fraction: share of each class's training rows held out to choose C (classes with one row keep it); used
    when cv_folds is 0.
    cv_folds: 0 = choose C on one stratified hold-out of val_fraction; k >= 2 = by the mean score over k seeded
    stratified folds (each C fitted k times: k times the cost of the search). biobench used 5.
    class_weight: None = every row weighs the same; "balanced" = sklearn's class_weight="balanced", each row
    weighted by n / (K n_c) (n_c rows of its class, K classes, n rows being fitted), in the fits that choose C and
    in the refit alike. biobench used "balanced".
    max_iter: L-BFGS iterations per C. tol: bound on the largest gradient entry of the (weighted) mean CE +
    ||W||^2 / (2 C n), the quantity sklearn's `tol` bounds for lbfgs. sklearn's default, 1e-4, is loose when there
    are many classes (gradient entries shrink like 1 / n_classes): at 1,000 classes it stops after 2-3 iterations,
    far from the optimum, and every C above some value returns the same early-stopped fit. In float32 a fit can
    also stop at the precision floor before reaching tol (stop "line_search"), which is as converged as float32
    allows.
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
    cv_folds: int = 0
    class_weight: str | None = None

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
        if not is_fold_count(self.cv_folds):
            raise ConfigError(
                "classifier 'logreg': cv_folds must be 0 (one hold-out split of val_fraction) or an integer >= 2 "
                f"(that many stratified folds), got {self.cv_folds!r}"
            )
        if self.class_weight not in CLASS_WEIGHTS:
            raise ConfigError(
                f"classifier 'logreg': class_weight must be balanced or null (no weights), got {self.class_weight!r}"
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
        self.tol = p.tol_for(len(self.classes))
        self.bfloat16_phase = p.bfloat16_phase_on(rows.device)
        record: dict[str, Any] = {"n_train": len(y), "n_features": x.shape[1], "n_classes": len(self.classes),
                                  "tol": self.tol, "bfloat16_phase": self.bfloat16_phase}
        C, init, record["C_choice"] = p.Cs[0], None, "given: Cs has a single value"
        if len(p.Cs) > 1:
            C, init, record["C_choice"], validation = self._choose_C(rows, labels)
            if validation is not None:
                record["validation"] = validation
        final = self._fit_path(rows, labels, None, [C], init)
        self.scaler, (solution,) = final.scaler, final.path
        self.weight, self.bias = solution.weight, solution.bias
        record["C"] = C
        record["refit"] = describe(solution)
        return record

    def _choose_C(self, rows: torch.Tensor, labels: np.ndarray):
        """(C, warm start for the refit, how C was chosen, validation record or None)."""
        if np.bincount(labels).max() < 2:
            return UNVALIDATED_C, None, "fixed: too few training rows per class to validate", None
        if self.params.cv_folds == 0:
            return self._hold_out(rows, labels)
        return self._cross_validate(rows, labels)

    def _hold_out(self, rows: torch.Tensor, labels: np.ndarray):
        p = self.params
        fit_idx, val_idx = stratified_split(labels, p.val_fraction, self.seed)
        fitted = self._fit_path(rows, labels, fit_idx, list(p.Cs))
        scores = self._scores(fitted, rows, labels, val_idx)
        best = int(np.argmax(scores))  # ties go to the smaller C, the stronger regularisation
        validation = {
            "method": "hold-out",
            "n_fit": len(fit_idx),
            "n_val": len(val_idx),
            "per_C": [{**describe(s), "score": score} for s, score in zip(fitted.path, scores)],
        }
        chosen = fitted.path[best]
        how = f"best {self.metric} on a stratified hold-out of val_fraction"
        return chosen.C, (chosen.weight, chosen.bias), how, validation

    def _cross_validate(self, rows: torch.Tensor, labels: np.ndarray):
        k = self.params.cv_folds
        folds = stratified_folds(labels, k, self.seed)
        unusable = unusable_folds(labels, folds, k)
        if unusable:
            return UNVALIDATED_C, None, f"fixed: {unusable}", None
        fits, scores = [], []
        for fold in range(k):
            fitted = self._fit_path(rows, labels, np.flatnonzero(folds != fold), list(self.params.Cs))
            fits.append(fitted)
            scores.append(self._scores(fitted, rows, labels, np.flatnonzero(folds == fold)))
        fold_scores = np.array(scores)  # [fold, C]
        mean_scores = fold_scores.mean(axis=0)
        best = int(np.argmax(mean_scores))  # ties go to the smaller C, the stronger regularisation
        folds_record = [
            {"n_fit": int(np.sum(folds != fold)), "n_val": int(np.sum(folds == fold)), "n_classes": len(f.classes)}
            for fold, f in enumerate(fits)
        ]
        per_C = [
            {"C": C, "score": float(mean_scores[i]), "fold_scores": fold_scores[:, i].tolist(),
             "fits": [describe(f.path[i]) for f in fits]}
            for i, C in enumerate(self.params.Cs)
        ]
        validation = {"method": f"{k}-fold", "folds": folds_record, "per_C": per_C}
        how = f"best mean {self.metric} over {k} stratified folds"
        return self.params.Cs[best], self._mean_solution(fits, best), how, validation

    def _mean_solution(self, fits: list[_Fitted], index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The mean of the folds' solutions at path[index], over the folds that fitted every class (None: none did)."""
        complete = [f.path[index] for f in fits if len(f.classes) == len(self.classes)]
        if not complete:
            return None
        return torch.stack([s.weight for s in complete]).mean(0), torch.stack([s.bias for s in complete]).mean(0)

    def _fit_path(self, rows: torch.Tensor, labels: np.ndarray, index: np.ndarray | None, Cs: list[float],
                  init: tuple[torch.Tensor, torch.Tensor] | None = None) -> _Fitted:
        """Standardiser and warm-started path over Cs fitted on rows[index] (None: all rows), on the classes these
        rows hold."""
        p = self.params
        if index is not None:
            rows, labels = rows[to_device(index, self.device)], labels[index]
        classes, targets = np.unique(labels, return_inverse=True)
        scaler = Standardiser.fit(rows)
        sample_weight = None if p.class_weight is None else to_device(balanced_weights(targets), self.device)
        path = multinomial.fit_path(
            scaler(rows), to_device(targets, self.device), len(classes), Cs, tol=self.tol, max_iter=p.max_iter,
            init=init, bfloat16_phase=self.bfloat16_phase, sample_weight=sample_weight,
        )
        return _Fitted(scaler, classes, path)

    def _scores(self, fitted: _Fitted, rows: torch.Tensor, labels: np.ndarray, index: np.ndarray) -> list[float]:
        """The task metric of each solution on rows[index]."""
        x_val = fitted.scaler(rows[to_device(index, self.device)])
        return [
            selection_score(self.metric, labels[index], fitted.classes[multinomial.predict(x_val, s.weight, s.bias)[0]])
            for s in fitted.path
        ]

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


@dataclass(frozen=True)
class _Fitted:
    scaler: Standardiser
    classes: np.ndarray  # the class indices (into LogisticRegression.classes) of the model's rows, ascending
    path: list[multinomial.Solution]


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """sklearn's class_weight="balanced" per row, n / (K n_c), for labels 0..K-1 that all occur."""
    counts = np.bincount(labels)
    return (len(labels) / (len(counts) * counts))[labels].astype(np.float32)


def is_fold_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and (value == 0 or value >= 2)


def unusable_folds(labels: np.ndarray, folds: np.ndarray, n_folds: int) -> str | None:
    """Why these folds cannot choose C (None: they can)."""
    if len(labels) < n_folds:
        return f"fewer training rows ({len(labels)}) than cv_folds ({n_folds})"
    for fold in range(n_folds):
        if len(np.unique(labels[folds != fold])) < 2:
            return f"fold {fold} would leave fewer than 2 classes to fit"
    return None


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
