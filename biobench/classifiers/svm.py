"""The "svm" protocol, biobench's for NeWT: features L2-normalised, centred on the training mean and L2-normalised
again; then a support vector machine whose kernel, C and gamma come from a seeded random search scored by
stratified k-fold cross-validation on the training rows, refitted on all of them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from biobench.classifiers.base import CLASSIFIERS, Classifier, check_metric, is_number, require_positive
from biobench.errors import ConfigError

KERNELS = ("rbf", "linear", "sigmoid", "poly")
SCORING = {"accuracy": "accuracy", "macro_f1": "f1_macro"}


@dataclass(frozen=True)
class SVMParams:
    """n_iter: random-search candidates (biobench: 100); 0 = no search, a linear SVC with C = 1 on the unscaled
    features, which is what biobench runs when the training set is small (and, as written, whenever it uses
    all training rows: its `init_svc(n_train)` tests n_train < 10 with n_train = -1).
    folds: cross-validation folds carved from the training rows (sklearn's default, 5), lowered to the size of the
    smallest class. C, gamma: log-uniform ranges (biobench: [1e-3, 1e1] and [1e-4, 1e-3]). kernels: to draw from.
    min_train: fewer training rows than this -> no search (biobench: 10). center_normalize: biobench's NeWT feature
    preparation (see the module docstring). n_jobs: threads for the search (biobench: 16 processes)."""

    n_iter: int = 100
    folds: int = 5
    C: tuple[float, float] = (1e-3, 1e1)
    gamma: tuple[float, float] = (1e-4, 1e-3)
    kernels: tuple[str, ...] = KERNELS
    min_train: int = 10
    center_normalize: bool = True
    n_jobs: int = 1

    def __post_init__(self) -> None:
        where = "classifier 'svm'"
        for name in ("n_iter", "folds", "min_train", "n_jobs"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise ConfigError(f"{where}: {name} must be an integer, got {getattr(self, name)!r}")
        if self.n_iter < 0:
            raise ConfigError(f"{where}: n_iter must be >= 0 (0 = no search), got {self.n_iter}")
        if self.folds < 2:
            raise ConfigError(f"{where}: folds must be >= 2, got {self.folds}")
        if self.min_train < 0:
            raise ConfigError(f"{where}: min_train must be >= 0 (0 = always search), got {self.min_train}")
        if not isinstance(self.center_normalize, bool):
            raise ConfigError(f"{where}: center_normalize must be true or false, got {self.center_normalize!r}")
        require_positive("n_jobs", self.n_jobs, where)
        for name in ("C", "gamma"):
            bounds = getattr(self, name)
            if (not isinstance(bounds, (list, tuple)) or len(bounds) != 2
                    or not all(is_number(b) and math.isfinite(b) and b > 0 for b in bounds)
                    or bounds[0] > bounds[1]):
                raise ConfigError(f"{where}: {name} must be [low, high] with 0 < low <= high, got {bounds!r}")
            object.__setattr__(self, name, (float(bounds[0]), float(bounds[1])))
        kernels = tuple(self.kernels) if isinstance(self.kernels, (list, tuple)) else (self.kernels,)
        unknown = [k for k in kernels if k not in KERNELS]
        if not kernels or unknown:
            raise ConfigError(f"{where}: kernels must be a non-empty list of {list(KERNELS)}, got {self.kernels!r}")
        object.__setattr__(self, "kernels", kernels)


@CLASSIFIERS.register("svm")
class SupportVectorMachine(Classifier):
    """Selection metric: the task's (`metric`): accuracy for NeWT, as sklearn's default SVC score in biobench.
    The probability of a prediction is a logistic (two classes) or softmax (more) of the SVM's decision values: an
    ordering of confidence, not a calibrated probability (Platt scaling would cost another 5-fold fit per task)."""

    name = "svm"
    Params = SVMParams

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        check_metric(self.metric)

    def _fit(self, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        p = self.params
        self.classes = np.unique(y)
        if len(self.classes) < 2:
            raise ValueError(
                f"svm: the training rows all have label {self.classes[0]}; an SVM needs two classes (check the "
                "task's manifest and split)"
            )
        self.mean = None
        if p.center_normalize:
            x = _unit_rows(x)
            self.mean = x.mean(axis=0, keepdims=True)
            x = _unit_rows(x - self.mean)
        record: dict[str, Any] = {"n_train": len(y), "n_classes": len(self.classes)}
        smallest = int(np.bincount(np.unique(y, return_inverse=True)[1]).min())
        folds = min(p.folds, smallest)
        if p.n_iter == 0 or len(y) < p.min_train or folds < 2:
            record["search"] = "none: linear kernel, C = 1" + (
                "" if p.n_iter == 0 else f" ({len(y)} training rows, smallest class {smallest})")
            self.model = make_pipeline(SVC(kernel="linear", C=1.0))
            self.model.fit(x, y)
            return record
        candidates = self._candidates()
        best, score = search(x, y, candidates, folds, SCORING[self.metric], p.n_jobs)
        self.model = make_pipeline(StandardScaler(), SVC(**best))
        self.model.fit(x, y)
        record.update({
            "search": f"random, {p.n_iter} candidates, {folds}-fold",
            "kernel": best["kernel"], "C": float(best["C"]), "gamma": float(best["gamma"]), "cv_score": score,
        })
        return record

    def _candidates(self) -> list[dict[str, Any]]:
        """The n_iter (kernel, C, gamma) settings RandomizedSearchCV draws with this seed: sklearn's ParameterSampler
        over the same distributions, keyed as in the pipeline (the sorted keys fix the order of the draws)."""
        from sklearn.model_selection import ParameterSampler

        drawn = ParameterSampler(self._distributions(), self.params.n_iter, random_state=self.seed)
        return [{"kernel": c["svc__kernel"], "C": c["svc__C"], "gamma": c["svc__gamma"]} for c in drawn]

    def _distributions(self) -> dict[str, Any]:
        from scipy.stats import loguniform

        p = self.params
        return {"svc__C": loguniform(*p.C), "svc__kernel": list(p.kernels), "svc__gamma": loguniform(*p.gamma)}

    def reference_search(self, folds: int):
        """The sklearn search that `search` reproduces (unfitted): RandomizedSearchCV over
        make_pipeline(StandardScaler(), SVC). Kept for the tests and bench/svm_speed.py."""
        from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        p = self.params
        return RandomizedSearchCV(
            make_pipeline(StandardScaler(), SVC(C=1.0, kernel="rbf")),
            self._distributions(),
            n_iter=p.n_iter,
            scoring=SCORING[self.metric],
            cv=StratifiedKFold(n_splits=folds),
            n_jobs=p.n_jobs,
            random_state=self.seed,
        )

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is not None:
            x = _unit_rows(_unit_rows(x) - self.mean)
        y_pred = self.model.predict(x)
        decision = np.asarray(self.model.decision_function(x), dtype=np.float64)
        if decision.ndim == 1:
            prob = 1.0 / (1.0 + np.exp(-np.abs(decision)))
        else:
            shifted = np.exp(decision - decision.max(axis=1, keepdims=True))
            prob = shifted.max(axis=1) / shifted.sum(axis=1)
        return y_pred.astype(np.int64), prob.astype(np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


# The search ------------------------------------------------------------------------------------------------------
#
# RandomizedSearchCV fits make_pipeline(StandardScaler(), SVC) ~ n_iter x folds times, and libsvm spends most of each
# fit evaluating the kernel over d-dimensional rows. Every kernel drawn here is an elementwise function of inner
# products of the standardised rows, and the scaler depends only on the fold, so each fold's rows are standardised
# (by the same StandardScaler) and their inner products computed once; each candidate then builds its kernel
# elementwise, as libsvm would, and fits SVC(kernel="precomputed"), whose optimiser is the same libsvm SMO.


@dataclass(frozen=True)
class _Fold:
    classes: np.ndarray  # the training rows' labels, sorted (SVC's classes_)
    y_train: np.ndarray  # index into classes, float64 (what SVC hands libsvm)
    y_val: np.ndarray  # labels
    gram: np.ndarray  # train x train inner products, float64
    gram_val: np.ndarray  # val x train
    sq_train: np.ndarray  # squared norms of the training rows
    dist_val: np.ndarray  # val x train squared distances, summed directly as libsvm's prediction does


def search(x: np.ndarray, y: np.ndarray, candidates: list[dict[str, Any]], folds: int, scoring: str,
           n_jobs: int = 1) -> tuple[dict[str, Any], float]:
    """The candidate ({"kernel", "C", "gamma"}) with the best mean score over StratifiedKFold(folds) of a
    make_pipeline(StandardScaler(), SVC(**candidate)), the first such in `candidates` on a tie (RandomizedSearchCV's
    best_params_), and that mean (its best_score_). scoring: "accuracy" or "f1_macro". n_jobs: threads, each
    scoring shares of the candidates (libsvm and numpy's elementwise kernels release the GIL)."""
    from sklearn.model_selection import StratifiedKFold

    if scoring not in ("accuracy", "f1_macro"):
        raise ValueError(f"svm: no scoring {scoring!r}; use 'accuracy' or 'f1_macro'")
    prepared = [_prepare_fold(x, y, train, val) for train, val in StratifiedKFold(n_splits=folds).split(x, y)]
    if n_jobs == 1 or len(candidates) < 2:
        scores = _score_candidates(prepared, candidates, scoring)
    else:
        from joblib import Parallel, delayed

        # several shares a thread, as fits differ in cost (a poly kernel with a large C takes longest)
        shares = np.array_split(np.arange(len(candidates)), min(4 * n_jobs, len(candidates)))
        parts = Parallel(n_jobs=n_jobs, prefer="threads")(
            delayed(_score_candidates)(prepared, [candidates[i] for i in share], scoring) for share in shares
        )
        scores = np.concatenate(parts)
    means = np.average(scores, axis=1)  # as RandomizedSearchCV's mean_test_score
    best = int(np.argmax(means))  # the first of the best: rank 1 of rankdata(-means, "min")
    return candidates[best], float(means[best])


def _prepare_fold(x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray) -> _Fold:
    from scipy.spatial.distance import cdist
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x[train])
    # the pipeline's scaler returns x's dtype; SVC then works in float64
    a = np.ascontiguousarray(scaler.transform(x[train]), dtype=np.float64)
    b = np.ascontiguousarray(scaler.transform(x[val]), dtype=np.float64)
    classes, encoded = np.unique(y[train], return_inverse=True)
    return _Fold(
        classes=classes, y_train=encoded.astype(np.float64), y_val=y[val], gram=a @ a.T, gram_val=b @ a.T,
        sq_train=np.einsum("ij,ij->i", a, a), dist_val=cdist(b, a, "sqeuclidean"),
    )


def _score_candidates(prepared: list[_Fold], candidates: list[dict[str, Any]], scoring: str) -> np.ndarray:
    """[candidates, folds] validation scores, equal to those of RandomizedSearchCV's scorer: accuracy as
    accuracy_score computes it (the mean of y_true == y_pred), f1_macro by f1_score."""
    from sklearn.metrics import f1_score

    fit_predict = _fit_predict()
    scores = np.empty((len(candidates), len(prepared)))
    for i, c in enumerate(candidates):
        for j, fold in enumerate(prepared):
            k_train, k_val = _kernels(fold, c["kernel"], c["gamma"])
            y_pred = fold.classes[fit_predict(k_train, fold.y_train, k_val, float(c["C"]))]
            if scoring == "accuracy":
                scores[i, j] = float(np.average(fold.y_val == y_pred))
            else:
                scores[i, j] = float(f1_score(fold.y_val, y_pred, average="macro"))
    return scores


_FIT_PREDICT = None


def _fit_predict():
    """fit_predict(k_train, y_train, k_val, C) -> predicted class indices (intp) of SVC(kernel="precomputed", C)
    fitted on the [n, n] kernel k_train with y_train (class indices as float64), for the [m, n] kernel k_val.

    sklearn's checks of its arguments cost several times what libsvm spends on a problem this small, so this calls
    libsvm through sklearn's own low-level binding (sklearn.svm._libsvm, private), with the arguments SVC.fit and
    SVC.predict pass it, after checking once per process, on a small problem, that it predicts what SVC predicts.
    Otherwise (a scikit-learn whose binding differs) it is SVC itself."""
    global _FIT_PREDICT
    if _FIT_PREDICT is None:
        _FIT_PREDICT = _svc_fit_predict
        try:
            rng = np.random.default_rng(0)
            z = rng.standard_normal((40, 5))
            k, k_val, y = z[:30] @ z[:30].T, z[30:] @ z[:30].T, (z[:30, 0] > 0).astype(np.float64) + (z[:30, 1] > 1)
            if all(np.array_equal(_libsvm_fit_predict(k, y, k_val, C), _svc_fit_predict(k, y, k_val, C))
                   for C in (0.01, 1.0)):
                _FIT_PREDICT = _libsvm_fit_predict
        except Exception:  # noqa: BLE001  (any mismatch of the private binding: use the public class)
            pass
    return _FIT_PREDICT


def _svc_fit_predict(k_train: np.ndarray, y_train: np.ndarray, k_val: np.ndarray, C: float) -> np.ndarray:
    import sklearn
    from sklearn.svm import SVC

    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        return SVC(kernel="precomputed", C=C).fit(k_train, y_train).predict(k_val).astype(np.intp)


def _libsvm_fit_predict(k_train: np.ndarray, y_train: np.ndarray, k_val: np.ndarray, C: float) -> np.ndarray:
    from sklearn.svm import _libsvm

    # SVC's defaults: C-SVC (svm_type 0), tol 1e-3, shrinking, cache 200 MB, class weights 1, no probabilities
    # (random_seed only seeds those, and -1 leaves libsvm's global generator alone, so threads may fit at once);
    # gamma, degree and coef0 are unused by a precomputed kernel
    n_classes = int(y_train.max()) + 1
    _libsvm.set_verbosity_wrap(0)  # as SVC(verbose=False).fit sets it: libsvm prints its progress otherwise
    common = {"svm_type": 0, "kernel": "precomputed", "degree": 3, "gamma": 0.0, "coef0": 0.0, "cache_size": 200.0}
    support, vectors, n_support, dual_coef, intercept, prob_a, prob_b, *_ = _libsvm.fit(
        k_train, y_train, C=C, tol=1e-3, nu=0.5, epsilon=0.1, class_weight=np.ones(n_classes),
        sample_weight=np.empty(0), shrinking=1, probability=0, max_iter=-1, random_seed=-1, **common,
    )
    out = _libsvm.predict(k_val, support, vectors, n_support, dual_coef, intercept, prob_a, prob_b, **common)
    return np.asarray(out, dtype=np.intp)


def _kernels(fold: _Fold, kernel: str, gamma: float, coef0: float = 0.0, degree: int = 3):
    """The train x train and val x train kernel matrices libsvm computes for SVC(kernel, gamma) with sklearn's
    defaults coef0 = 0 and degree = 3, in its order of operations."""
    if kernel == "linear":
        return fold.gram, fold.gram_val
    if kernel == "rbf":
        # training: exp(-gamma * (|x|^2 + |z|^2 - 2<x, z>)); prediction: exp(-gamma * sum((x - z)^2))
        dist = (fold.sq_train[:, None] + fold.sq_train[None, :]) - 2.0 * fold.gram
        return np.exp(-gamma * dist), np.exp(-gamma * fold.dist_val)
    if kernel == "sigmoid":
        return np.tanh(gamma * fold.gram + coef0), np.tanh(gamma * fold.gram_val + coef0)
    if kernel == "poly":
        return _powi(gamma * fold.gram + coef0, degree), _powi(gamma * fold.gram_val + coef0, degree)
    raise ValueError(f"svm: no kernel {kernel!r}")


def _powi(base: np.ndarray, times: int) -> np.ndarray:
    """libsvm's powi: base ** times by repeated squaring, in its order of products."""
    out, tmp, t = np.ones_like(base), base, times
    while t > 0:
        if t % 2 == 1:
            out = out * tmp
        tmp = tmp * tmp
        t //= 2
    return out
