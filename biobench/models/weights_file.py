"""A user's weights file (`weights: <path>`): read without unpickling objects, and matched to the model strictly, so
that a file whose keys do not fit fails instead of leaving the model partly or wholly random.

- The file is a safetensors file or a weights-only torch file holding a state dict, either at the top level or nested
  under one of NESTING_KEYS as training scripts save it (the EMA copy first, as timm's own loader prefers it).
- A prefix that every key carries (WRAPPER_PREFIXES: DDP's `module.`, Lightning's `model.`, torch.compile's
  `_orig_mod.`, also stacked) is removed only when that makes every key match the model's.
- Keys under the architecture's classifier head (the model is built without one) may be present and are dropped;
  BatchNorm's `num_batches_tracked` counters may be absent. Every other key must be in both, at the same shape."""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping, Sequence

import torch

from biobench.errors import ModelLoadError

NESTING_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
SHOWN = 5
BATCHNORM_COUNTER = ".num_batches_tracked"  # counts training steps; no part in eval features


def read_state_dict(path: str, where: str) -> dict[str, torch.Tensor]:
    try:
        if path.endswith(".safetensors"):
            import safetensors.torch

            contents = safetensors.torch.load_file(path, device="cpu")
        else:
            contents = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelLoadError(
            f"{where}: the file holds Python objects besides tensors, and biobench loads torch files weights_only "
            f"({err}). Save only the tensors: torch.save(model.state_dict(), ...) or a safetensors file."
        ) from None
    except Exception as err:  # noqa: BLE001 - torch and safetensors raise many kinds for a damaged or foreign file
        raise ModelLoadError(
            f"{where}: cannot read it as a safetensors or torch file ({type(err).__name__}: {err}); give a "
            "safetensors file or one written by torch.save(model.state_dict(), ...)"
        ) from None
    return _unnest(contents, where)


def _unnest(contents: object, where: str) -> dict[str, torch.Tensor]:
    if isinstance(contents, dict) and not _is_state_dict(contents):
        nested = [key for key in NESTING_KEYS if isinstance(contents.get(key), dict)]
        if nested:
            contents = contents[nested[0]]
    if not isinstance(contents, dict) or not _is_state_dict(contents):
        found = f" (top-level keys: {_first([str(key) for key in contents])})" if isinstance(contents, dict) else ""
        raise ModelLoadError(
            f"{where}: the file holds no state dict, a mapping of names to tensors, at the top level or under "
            f"{', '.join(NESTING_KEYS)}{found}; save torch.save(model.state_dict(), ...) or a safetensors file"
        )
    return contents


def _is_state_dict(contents: dict) -> bool:
    return bool(contents) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in contents.items())


def match_keys(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], where: str, fix: str,
               head: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """`state` with the keys of `expected`: a wrapper prefix removed where that makes every key match, the keys under
    the `head` modules dropped, absent BatchNorm counters taken from `expected`. Anything else left over or missing
    raises, naming the first few keys and `fix`."""
    closest = None
    for prefix, candidate in _unwrapped(state):
        kept = {key: value for key, value in candidate.items() if key in expected or not _under(key, head)}
        missing = [key for key in expected if key not in kept and not key.endswith(BATCHNORM_COUNTER)]
        unexpected = [key for key in kept if key not in expected]
        if not missing and not unexpected:
            return {key: kept.get(key, expected[key]) for key in expected}
        if closest is None or len(missing) + len(unexpected) < len(closest[1]) + len(closest[2]):
            closest = (prefix, missing, unexpected)
    prefix, missing, unexpected = closest
    problems = []
    if missing:
        problems.append(f"{len(missing)} of the model's {len(expected)} tensors are not in the file "
                        f"({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} keys of the file are not in the model ({_first(unexpected)})")
    compared = f", compared after removing the prefix {prefix!r} that every key carries" if prefix else ""
    dropped = f"; keys under the classifier head ({', '.join(head)}) are allowed and dropped" if head else ""
    raise ModelLoadError(
        f"{where}: the keys do not match the model: {' and '.join(problems)}{compared}{dropped}. {fix}"
    )


def _unwrapped(state: Mapping[str, torch.Tensor]) -> Iterator[tuple[str, Mapping[str, torch.Tensor]]]:
    """`state` as it is, then with each prefix that every key carries removed in turn (e.g. `module.model.`)."""
    removed = ""
    while True:
        yield removed, state
        shared = [p for p in WRAPPER_PREFIXES if all(key.startswith(p) and key != p for key in state)]
        if not shared:
            return
        removed += shared[0]
        state = {key[len(shared[0]):]: value for key, value in state.items()}


def _under(key: str, modules: Sequence[str]) -> bool:
    return any(key.startswith(module + ".") for module in modules)


def shape_mismatches(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> list[str]:
    return [f"{key} is {tuple(value.shape)} in the file, {tuple(expected[key].shape)} in the model"
            for key, value in state.items() if value.shape != expected[key].shape]


def shape_error(mismatches: Sequence[str], where: str, fix: str) -> ModelLoadError:
    return ModelLoadError(f"{where}: {len(mismatches)} tensors have another shape than the model's "
                          f"({_first(mismatches, sep='; ')}). {fix}")


def _first(items: Sequence[str], sep: str = ", ") -> str:
    more = f"{sep}... {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return sep.join(items[:SHOWN]) + more
