"""What every classifier shares: the registry, parameter binding with clear errors, device choice, shape checks."""

from __future__ import annotations

import dataclasses
import difflib
import time
from typing import Any, ClassVar

import numpy as np
import torch
from beartype import beartype
from jaxtyping import Float32, Int, Int64, jaxtyped

from biobench import precision
from biobench.errors import ConfigError
from biobench.registry import Registry

SELECTION_METRICS = ("accuracy", "macro_f1")


class ClassifierParamsError(ConfigError, TypeError):
    """A classifier was given a parameter it does not have."""


class Classifier:
    """Subclass: set `name` and a frozen dataclass `Params` (its fields are the accepted parameters, with defaults),
    implement `_fit` and `_predict`, and register the class in CLASSIFIERS.

    `metric` is the task's metric; classifiers that choose hyperparameters select by it, the others ignore it, so
    that the caller can pass it to every classifier."""

    name: ClassVar[str]
    Params: ClassVar[type]

    def __init__(self, *, seed: int = 0, device: str = "auto", metric: str = "macro_f1", **params: Any):
        self.params = bind_params(self.name, self.Params, params)
        self.seed = seed
        self.device = resolve_device(device)
        self.metric = metric
        self._n_features: int | None = None
        self._record: dict[str, Any] = {}

    @jaxtyped(typechecker=beartype)
    def fit(self, x: Float32[np.ndarray, "n d"], y: Int[np.ndarray, " n"]) -> None:
        check_finite(x, "training features")
        start = time.perf_counter()
        self._record = dict(self._fit(x, y.astype(np.int64, copy=False)))
        self._record["fit_seconds"] = time.perf_counter() - start
        self._n_features = x.shape[1]

    @jaxtyped(typechecker=beartype)
    def predict(self, x: Float32[np.ndarray, "m d"]) -> tuple[Int64[np.ndarray, " m"], Float32[np.ndarray, " m"]]:
        """Predicted labels and the probability the classifier gives to each predicted label."""
        if self._n_features is None:
            raise RuntimeError(f"{self.name}: call fit() before predict()")
        if x.shape[1] != self._n_features:
            raise ValueError(
                f"{self.name}: fitted on {self._n_features}-dimensional features but asked to predict "
                f"{x.shape[1]}-dimensional ones; embed train and test rows with the same model"
            )
        check_finite(x, "test features")
        start = time.perf_counter()
        y_pred, prob = self._predict(x)
        self._record["predict_seconds"] = time.perf_counter() - start
        return y_pred, prob

    def summary(self) -> dict[str, Any]:
        """What was fitted and how long it took; JSON-serialisable."""
        return to_json(
            {
                "classifier": self.name,
                "params": dataclasses.asdict(self.params),
                "metric": self.metric,
                "seed": self.seed,
                "device": str(self.device),
                **self._record,
            }
        )

    def _fit(self, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """Fit on float32 [n, d] and int64 [n]; return facts for summary()."""
        raise NotImplementedError

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


CLASSIFIERS: Registry[type[Classifier]] = Registry("classifier")


def bind_params(name: str, params_cls: type, given: dict[str, Any]) -> Any:
    accepted = {f.name: f.default for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        listing = ", ".join(f"{k}={v!r}" for k, v in accepted.items())
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, accepted, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ClassifierParamsError(
            f"classifier {name!r} has no parameter(s) {', '.join(hints)}; it accepts (with defaults): "
            f"{listing}, plus seed, device and metric. Fix the classifier's params in config.yaml."
        )
    return params_cls(**given)


def resolve_device(device: str) -> torch.device:
    """'auto' is the first CUDA device when torch sees one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        out = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device {device!r} is not a torch device; use 'auto', 'cpu' or 'cuda[:i]'") from None
    if out.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but torch sees no CUDA device; use 'auto' or 'cpu'")
    return out


def bfloat16_is_fast(device: torch.device) -> bool:
    """Whether bfloat16 matrix products run faster than float32 ones here (biobench/precision.py decides, as it does
    for the embeddings): tensor cores, or a CPU with AVX512-BF16 or AMX that oneDNN and ATen may use."""
    return precision.is_fast("bfloat16", device)


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor on `device` holding `array`; shares memory on the CPU unless the array is read-only (as arrays
    read zero-copy from parquet are), which torch cannot share."""
    if array.flags.writeable:
        return torch.from_numpy(array).to(device)
    return torch.tensor(array, device=device)


def check_finite(x: np.ndarray, what: str) -> None:
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise ValueError(f"{bad} rows of the {what} contain NaN or inf; re-embed them (the embedding is broken)")


def check_metric(metric: str) -> None:
    if metric not in SELECTION_METRICS:
        raise ConfigError(f"cannot select hyperparameters by metric {metric!r}; use one of {list(SELECTION_METRICS)}")


def selection_score(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The task metric on validation rows; macro-F1 averages over the classes present in y_true or y_pred."""
    from sklearn.metrics import f1_score

    if metric == "accuracy":
        return float(np.mean(y_true == y_pred))
    return float(f1_score(y_true, y_pred, average="macro"))


def require_positive(name: str, value: Any, what: str) -> None:
    if not is_number(value) or not value > 0:
        raise ConfigError(f"{what}: {name} must be a number > 0, got {value!r}{yaml_hint(value)}")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def yaml_hint(value: Any) -> str:
    return " (YAML reads 1e-6 as text: write 1.0e-6)" if isinstance(value, str) else ""


def to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
