"""Config values read into the frozen dataclasses they configure, with errors naming the key and the fix. Apart from
biobench.config (which validates the whole file) so that the jobs reading a task's options do not depend on the
classifier and model code the config check also runs."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from biobench.errors import ConfigError
from biobench.registry import UnknownNameError
from biobench.tasks import TASKS, TaskOptions


def task_options(task: str, raw: dict[str, Any]) -> TaskOptions:
    try:
        task_cls = TASKS.get(task)
    except UnknownNameError as err:
        raise ConfigError(f"config.yaml: tasks: {err}") from None
    raw = dict(raw or {})
    sizes = training_sizes(raw.pop("n_train", 0), where=f"tasks.{task}.n_train")
    return dataclasses.replace(dataclass_from(task_cls.Options, raw, where=f"tasks.{task}"), n_train=sizes)


def training_sizes(value: Any, where: str) -> tuple[int, ...]:
    """`n_train` as a tuple of distinct sizes, smallest first, 0 (all rows) last."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ConfigError(
            f"config.yaml: {where} must be an integer >= 0 (0 = every training row) or a list of them, e.g. "
            f"[1, 10, 100, 0]; got {value!r}"
        )
    return tuple(sorted(set(values), key=lambda v: (v == 0, v)))


def dataclass_from(cls: type, raw: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(unknown_keys_message(where, unknown, fields))
    for key, value in raw.items():
        expected = type(getattr(cls(), key)) if _has_default(fields[key]) else None
        if expected is not None and not _same_kind(value, expected):
            raise ConfigError(
                f"config.yaml: {where}.{key} must be {expected.__name__}, got {value!r} ({type(value).__name__})"
            )
    try:
        return cls(**raw)
    except ConfigError as err:  # the options' own range checks, which name the option
        raise ConfigError(f"config.yaml: {where}.{err}") from None


def _has_default(field: dataclasses.Field) -> bool:
    return field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING


def _same_kind(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def unknown_keys_message(where: str, unknown: list[str], allowed: Any) -> str:
    allowed = sorted(allowed)
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, allowed, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"config.yaml: unknown key {', '.join(hints)} in {where}; allowed keys: {', '.join(allowed)}"
