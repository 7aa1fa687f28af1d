"""Content-addressed artifact keys: a readable slug plus a short hash of everything that determines the artifact."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from biobench.models import ORGS, ModelSpec
from biobench.tasks import TASKS, TaskOptions

HASH_CHARS = 10


def short_hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-").lower() or "x"


def model_key(spec: ModelSpec, run_dtype: str | None = None) -> str:
    """Same spec, same key, whatever its display name: renaming a model recomputes nothing. `run_dtype` is the
    precision the forward pass runs at (biobench/precision.py); when it is not the spec's own dtype it joins the
    hash, so features made at different precisions never share a key, and a model that runs its own dtype keeps
    the key it always had."""
    identity = {**spec.identity(), "weights_identity": ORGS.get(spec.org)().weights_identity(spec)}
    if run_dtype is not None and run_dtype != spec.dtype:
        identity["run_dtype"] = run_dtype
    readable = slug(f"{spec.org}-{spec.checkpoint}" if spec.checkpoint else spec.org)
    return f"{readable}-{short_hash(identity)}"


def dataset_key(task: str, options: TaskOptions) -> str:
    return f"{slug(task)}-{short_hash(TASKS.get(task)().identity(options))}"


def classifier_key(name: str, params: dict[str, Any], seed: int) -> str:
    return f"{slug(name)}-{short_hash({'classifier': name, 'params': params, 'seed': seed})}"


def code_digest(*modules: str) -> str:
    """Hash of the source a rule runs: the named modules and every biobench module they take names from,
    transitively. Passed to Snakemake as a param, so editing that code re-runs the rule. A package's registration
    imports (`from biobench.models import pixels, timm_org` in biobench/models/__init__.py) are not followed:
    editing one model org re-runs only the jobs of that org. Any other module's `from biobench import x` is."""
    closure = sorted(set().union(*(_used_modules(m) for m in modules)))
    return short_hash([(m, _source_hash(m)) for m in closure])


@cache
def _used_modules(module: str) -> frozenset[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_direct_imports(name))
    return frozenset(seen)


def _direct_imports(module: str) -> list[str]:
    tree = ast.parse(_source_path(module).read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "biobench"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "biobench":
            submodules = [f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")]
            if len(submodules) < len(node.names):
                found.append(node.module)  # names taken from the module itself
            if node.module != module:  # a package's __init__ importing its own modules registers them
                found += submodules
    return found


def _is_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None if _parent_is_package(name) else False


def _parent_is_package(name: str) -> bool:
    parent = name.rpartition(".")[0]
    spec = importlib.util.find_spec(parent) if parent else None
    return spec is not None and spec.submodule_search_locations is not None


@cache
def _source_path(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    return Path(spec.origin)


@cache
def _source_hash(module: str) -> str:
    return hashlib.sha256(_source_path(module).read_bytes()).hexdigest()


def resource_digest(name: str) -> str:
    """Hash of a data file shipped in the package (e.g. the results schema), for a rule that reads it."""
    return hashlib.sha256((Path(__file__).parent / name).read_bytes()).hexdigest()[:HASH_CHARS]
