"""Validate config.yaml against the workflow's JSON schema, fill defaults, and turn it into frozen dataclasses."""

from __future__ import annotations

import copy
import json
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from biobench.classifiers import CLASSIFIERS
from biobench.errors import ConfigError
from biobench.models import ORGS, ModelSpec
from biobench.options import task_options, unknown_keys_message
from biobench.registry import UnknownNameError
from biobench.tasks import TASKS, TaskOptions


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int
    confidence: float
    seed: int
    macro_f1_classes: str


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
    for protocol, settings in filled["classifiers"].items():
        _check_classifier(protocol, settings, "accuracy", where=f"classifiers.{protocol}")
    boot = filled["bootstrap"]
    seed = filled["seed"]
    return Config(
        seed=seed,
        models=models,
        tasks=tasks,
        classifiers=filled["classifiers"],
        bootstrap=BootstrapSettings(boot["resamples"], boot["confidence"], seed if boot["seed"] is None else boot["seed"],
                                    boot["macro_f1_classes"]),
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
    return load(read_config_file(config_path) or {}, schema_path)


def check_config_files(paths: list[str | Path]) -> None:
    """Read each existing config file strictly, before Snakemake reads it leniently (it keeps the last of a repeated
    key and names no line for a syntax error)."""
    for path in paths:
        if Path(path).is_file():
            read_config_file(path)


def read_config_file(path: str | Path) -> Any:
    """The document in `path`, JSON or else YAML as Snakemake reads config files; ConfigError naming the file (and
    for YAML the line) of a syntax error or of a key given twice in one mapping."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique_json_keys(path, pairs))
    except json.JSONDecodeError:
        pass
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_yaml_error_message(path, err)) from None


def _unique_json_keys(path: str | Path, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = next((key for key in keys if keys.count(key) > 1), None)
    if repeated is not None:
        raise ConfigError(f"{path}: key {repeated!r} is given twice in one object; JSON readers keep only the last "
                          "one, so delete one of them")
    return dict(pairs)


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`, whose keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader refuses it below, with its line
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None, None,
                    f"key {key!r} is given twice (first on line {first_line[key]}); YAML would keep only the last "
                    "one, so delete one of them",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _yaml_error_message(path: str | Path, err: yaml.MarkedYAMLError) -> str:
    mark = err.problem_mark or err.context_mark
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
    context = ""
    if err.context and err.context_mark and err.problem_mark:
        context = f" ({err.context} on line {err.context_mark.line + 1})"
    elif err.context:
        context = f" ({err.context})"
    fix = "" if isinstance(err, yaml.constructor.ConstructorError) else (
        ". Fix the YAML there: indent with spaces, not tabs; close every bracket and quote; put a space after "
        "each colon"
    )
    return f"{where}: {err.problem}{context}{fix}"


def classifier_settings(cfg: Config) -> dict[str, dict[str, Any]]:
    """Each task's classifier settings: its reference protocol's, under config.yaml's `classifiers.<protocol>`,
    checked as the fit job's classifier will check them."""
    out = {}
    for task in cfg.tasks:
        task_cls = TASKS.get(task)
        settings = task_cls().classifier_settings(cfg.classifiers.get(task_cls.classifier, {}))
        _check_classifier(task_cls.classifier, settings, task_cls.metric,
                          where=f"classifiers.{task_cls.classifier} (as task {task} uses it)")
        out[task] = settings
    return out


SET_ELSEWHERE = {"seed": "the top-level `seed`", "device": "`embed.device`"}


def _check_classifier(protocol: str, settings: dict[str, Any], metric: str, where: str) -> None:
    """Build the classifier the fit job will build (cheap: nothing is fitted), so that its own parameter checks run
    before any job does."""
    try:
        cls = CLASSIFIERS.get(protocol)
    except UnknownNameError as err:
        raise ConfigError(f"config.yaml: classifiers: {err}") from None
    misplaced = sorted(set(settings) & set(SET_ELSEWHERE))
    if misplaced:
        key = misplaced[0]
        raise ConfigError(f"config.yaml: {where}.{key}: a classifier's {key} is {SET_ELSEWHERE[key]}; delete it here")
    try:
        cls(**{"metric": metric, **settings}, device="cpu")
    except ConfigError as err:
        raise ConfigError(f"config.yaml: {where}: {err}") from None


def _model_spec(name: str, raw: dict[str, Any]) -> ModelSpec:
    spec = ModelSpec(name=name, **raw)
    try:
        org = ORGS.get(spec.org)()
    except UnknownNameError as err:
        raise ConfigError(f"config.yaml: models.{name}.org: {err}") from None
    org.validate(spec)
    return spec


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
        return unknown_keys_message(where, unknown, allowed)
    if error.validator == "enum":
        choices = ", ".join(repr(c) for c in error.validator_value)
        return f"config.yaml: {where} is {error.instance!r}; allowed values: {choices}"
    if error.validator == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return (
            f"config.yaml: {where} must be {' or '.join(kinds)}, got {error.instance!r} "
            f"({type(error.instance).__name__})"
        )
    if error.validator == "pattern":
        return f"config.yaml: {where} is {error.instance!r}; allowed: {error.schema.get('description', error.message)}"
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
