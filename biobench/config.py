"""Validate config.yaml against the workflow's JSON schema, fill defaults, and turn it into frozen dataclasses."""

from __future__ import annotations

import copy
import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from biobench.errors import ConfigError
from biobench.models import ORGS, ModelSpec
from biobench.registry import UnknownNameError
from biobench.tasks import TASKS, TaskOptions


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int
    confidence: float
    seed: int


@dataclass(frozen=True)
class EmbedSettings:
    device: str
    num_workers: int
    log_every_s: float
    decode: str
    pixel_cache_dir: str
    pixel_cache_max_gb: float
    precision: str = "auto"  # auto: a model's dtype where the device computes it fast, else float32; as_requested


@dataclass(frozen=True)
class Config:
    seed: int
    models: dict[str, ModelSpec]
    tasks: dict[str, TaskOptions]
    classifiers: dict[str, dict[str, Any]]
    bootstrap: BootstrapSettings
    embed: EmbedSettings


def load(raw: dict[str, Any], schema_path: str | Path) -> Config:
    """Check `raw` (the parsed config.yaml) before any job runs; every error names the key and what is allowed."""
    return from_filled(validate_and_fill(raw, schema_path))


def validate_and_fill(raw: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """A copy of `raw` with the schema's defaults filled in; ConfigError if it does not match the schema."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    filled = copy.deepcopy(dict(raw))
    _validate(filled, schema)
    return filled


def from_filled(filled: dict[str, Any]) -> Config:
    models = {name: _model_spec(name, spec) for name, spec in filled["models"].items()}
    tasks = {name: task_options(name, opts) for name, opts in filled["tasks"].items()}
    boot = filled["bootstrap"]
    seed = filled["seed"]
    return Config(
        seed=seed,
        models=models,
        tasks=tasks,
        classifiers=filled["classifiers"],
        bootstrap=BootstrapSettings(boot["resamples"], boot["confidence"], seed if boot["seed"] is None else boot["seed"]),
        embed=EmbedSettings(**filled["embed"]),
    )


def model_name_of(models: dict[str, dict[str, Any]], spec: ModelSpec) -> str:
    """The name config.yaml's `models` gives `spec` (a job gets its spec by model key; its messages name the entry),
    or spec.name if none has its identity."""
    for name, raw in models.items():
        if ModelSpec(name=name, **raw).identity() == spec.identity():
            return name
    return spec.name


def load_file(config_path: str | Path, schema_path: str | Path) -> Config:
    return load(yaml.safe_load(Path(config_path).read_text()) or {}, schema_path)


def task_options(task: str, raw: dict[str, Any]) -> TaskOptions:
    try:
        task_cls = TASKS.get(task)
    except UnknownNameError as err:
        raise ConfigError(f"config.yaml: tasks: {err}") from None
    raw = dict(raw or {})
    sizes = training_sizes(raw.pop("n_train", 0), where=f"tasks.{task}.n_train")
    return dataclasses.replace(_dataclass_from(task_cls.Options, raw, where=f"tasks.{task}"), n_train=sizes)


def training_sizes(value: Any, where: str) -> tuple[int, ...]:
    """`n_train` as a tuple of distinct sizes, smallest first, 0 (all rows) last."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ConfigError(
            f"config.yaml: {where} must be an integer >= 0 (0 = every training row) or a list of them, e.g. "
            f"[1, 10, 100, 0]; got {value!r}"
        )
    return tuple(sorted(set(values), key=lambda v: (v == 0, v)))


def _model_spec(name: str, raw: dict[str, Any]) -> ModelSpec:
    spec = ModelSpec(name=name, **raw)
    try:
        org = ORGS.get(spec.org)()
    except UnknownNameError as err:
        raise ConfigError(f"config.yaml: models.{name}.org: {err}") from None
    org.validate(spec)
    return spec


def _dataclass_from(cls: type, raw: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(_unknown_keys_message(where, unknown, fields))
    for key, value in raw.items():
        expected = type(getattr(cls(), key)) if _has_default(fields[key]) else None
        if expected is not None and not _same_kind(value, expected):
            raise ConfigError(
                f"config.yaml: {where}.{key} must be {expected.__name__}, got {value!r} ({type(value).__name__})"
            )
    return cls(**raw)


def _has_default(field: dataclasses.Field) -> bool:
    return field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING


def _same_kind(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _unknown_keys_message(where: str, unknown: list[str], allowed: Any) -> str:
    allowed = sorted(allowed)
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, allowed, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"config.yaml: unknown key {', '.join(hints)} in {where}; allowed keys: {', '.join(allowed)}"


def _validate(instance: dict[str, Any], schema: dict[str, Any]) -> None:
    validator = _validator_filling_defaults(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("\n".join(_describe(e) for e in errors))


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "top level"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        unknown = sorted(set(error.instance) - set(allowed))
        return _unknown_keys_message(where, unknown, allowed)
    if error.validator == "enum":
        choices = ", ".join(repr(c) for c in error.validator_value)
        return f"config.yaml: {where} is {error.instance!r}; allowed values: {choices}"
    if error.validator == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return (
            f"config.yaml: {where} must be {' or '.join(kinds)}, got {error.instance!r} "
            f"({type(error.instance).__name__})"
        )
    if error.validator == "anyOf":
        choices = " or ".join(_describe_choice(c) for c in error.validator_value)
        return f"config.yaml: {where} is {error.instance!r}; it must be {choices}"
    return f"config.yaml: {where}: {error.message}"


def _describe_choice(schema: dict[str, Any]) -> str:
    if "const" in schema:
        return repr(schema["const"])
    text = f"{'an' if schema.get('type') == 'integer' else 'a'} {schema.get('type', 'value')}"
    if "minimum" in schema:
        text += f" >= {schema['minimum']}"
    return text


def _validator_filling_defaults(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    base = jsonschema.Draft202012Validator

    def properties_with_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    cls = jsonschema.validators.extend(base, {"properties": properties_with_defaults})
    return cls(schema)
