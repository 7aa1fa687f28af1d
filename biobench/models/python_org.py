"""Your own backbone, without forking biobench: `org: python`, `checkpoint: "mypkg.mymodule:make_backbone"`.

`checkpoint` names a factory as `<module>:<attribute>`: a dotted module path, a colon, and a name in it (dotted for
a class method: `mypkg.models:Wrapper.create`). The module must be importable: an installed package (e.g. your
project installed with `pip install -e .`), a folder on PYTHONPATH, or a module in the directory Snakemake runs in
(biobench appends the working directory to the import path, both when checking the config and in the embed job).

biobench calls the factory with keyword arguments: every entry of `options`, plus `weights`, `image_size` and
`pooling` when the config sets them (`weights` must then be a local file). Whether the factory accepts exactly these
is checked before any job runs. `seed` seeds torch just before the call; `dtype` is applied by biobench (autocast
around `img_encode`). The factory returns an object with:

- `make_transform()` -> a callable: PIL RGB image -> float tensor [3, H, W], the same H, W for every image;
- `img_encode(images)` -> float tensor [batch, dim], one vector per image; `images` is a batch of transformed images
  on the job's device, and the call runs under `torch.inference_mode()` (and autocast for bfloat16/float16);
- optionally `describe_transform()` -> a JSON-serialisable dict, stored in the embedding's metadata (default: the
  factory path and the transform's repr);
- optionally `to(device)`, to move it to the job's device (a `torch.nn.Module` has it, and is put in eval mode);
  without it, `img_encode` receives images on the job's device (CUDA when there is one) and must cope.

The model key holds the sha256 of the factory's module file and of the `weights` file, so editing that module or
replacing the weights re-embeds; edits to other modules it imports are not seen (bump a `version` in options).
Load weights safely: safetensors, or `torch.load(..., weights_only=True)`, and strictly
(`load_state_dict(state, strict=True)`): biobench does not see inside the factory, so a file whose keys do not match
would otherwise run as a random model. `biobench.models.weights_file` reads and matches a file as the timm and
open-clip orgs do.

Example (`mybackbones.py` in the project directory; config: `checkpoint: "mybackbones:make_backbone"`,
`options: {width: 128}`):

    import torch
    from torchvision.transforms import v2

    class Backbone(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Conv2d(3, width, 7, 4), torch.nn.ReLU())

        def make_transform(self):
            return v2.Compose([v2.PILToTensor(), v2.Resize((64, 64)), v2.ToDtype(torch.float32, scale=True)])

        def img_encode(self, images):
            return self.net(images).amax((2, 3))

    def make_backbone(width: int = 64):
        return Backbone(width)
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from biobench.errors import BiobenchError, ConfigError, ModelLoadError
from biobench.models.base import ORGS, ModelSpec
from biobench.models.weights import check_file, file_identity

DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
PASSED_FIELDS = ("weights", "image_size", "pooling")
CONTRACT = "see the contract in biobench/models/python_org.py"


@dataclass(frozen=True)
class FactoryPath:
    module: str
    attribute: str

    def __str__(self) -> str:
        return f"{self.module}:{self.attribute}"


class PythonBackbone:
    """Adapts the user's object to the Backbone protocol, filling in the optional methods."""

    def __init__(self, inner: Any, factory: FactoryPath):
        self.inner = inner
        self.factory = factory

    def make_transform(self):
        return self.inner.make_transform()

    def img_encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner.img_encode(images)

    def describe_transform(self) -> dict[str, Any]:
        describe = getattr(self.inner, "describe_transform", None)
        if describe is not None:
            return describe()
        return {"factory": str(self.factory), "transform": repr(self.inner.make_transform())}

    def to(self, device: torch.device) -> "PythonBackbone":
        move = getattr(self.inner, "to", None)
        if move is not None:
            moved = move(device)
            self.inner = self.inner if moved is None else moved
        return self


@ORGS.register("python")
class PythonOrg:
    def validate(self, spec: ModelSpec) -> None:
        where = f"config.yaml: models.{spec.name}"
        clash = sorted(set(PASSED_FIELDS) & set(spec.options))
        if clash:
            raise ConfigError(f"{where}.options: {', '.join(clash)} are model keys of their own; set them there")
        if spec.weights:
            check_file(spec.weights, where, "or leave weights empty and pass what your factory needs in options")
        path = parse_factory_path(spec)
        factory = import_factory(path, where)
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):  # some builtins and C extensions have none; the call will tell
            return
        try:
            signature.bind(**factory_kwargs(spec))
        except TypeError as err:
            raise ConfigError(
                f"{where}: {path}{signature} cannot be called with {sorted(factory_kwargs(spec))} ({err}); "
                "change options (or weights, image_size, pooling) or the factory's parameters"
            ) from None

    def weights_identity(self, spec: ModelSpec) -> dict[str, Any]:
        path = parse_factory_path(spec)
        import_factory(path, f"config.yaml: models.{spec.name}")
        origin = importlib.util.find_spec(path.module).origin  # None for a namespace package: no single file
        identity = {"module_sha256": file_identity(origin)["sha256"] if origin and os.path.isfile(origin) else ""}
        if spec.weights:
            identity["weights_sha256"] = file_identity(spec.weights)["sha256"]
        return identity

    def load(self, spec: ModelSpec) -> PythonBackbone:
        path = parse_factory_path(spec)
        factory = import_factory(path, f"model {spec.name!r}")
        torch.manual_seed(spec.seed)
        try:
            inner = factory(**factory_kwargs(spec))
        except BiobenchError:
            raise
        except Exception as err:  # noqa: BLE001 - user code; report what it raised and where
            raise ModelLoadError(f"model {spec.name!r}: {path}(...) raised {type(err).__name__}: {err}") from err
        missing = [m for m in ("make_transform", "img_encode") if not callable(getattr(inner, m, None))]
        if missing:
            raise ModelLoadError(
                f"model {spec.name!r}: {path} returned a {type(inner).__name__} without {' and '.join(missing)}; "
                f"{CONTRACT}"
            )
        if isinstance(inner, torch.nn.Module):
            inner.eval()
        return PythonBackbone(inner, path)


def parse_factory_path(spec: ModelSpec) -> FactoryPath:
    module, colon, attribute = spec.checkpoint.partition(":")
    if not colon or not DOTTED.fullmatch(module) or not DOTTED.fullmatch(attribute):
        raise ConfigError(
            f"config.yaml: models.{spec.name}.checkpoint: {spec.checkpoint!r} is not a factory path; write "
            f"\"<module>:<function>\", e.g. \"mypkg.backbones:make_backbone\" ({CONTRACT})"
        )
    return FactoryPath(module, attribute)


def factory_kwargs(spec: ModelSpec) -> dict[str, Any]:
    passed = {field: getattr(spec, field) for field in PASSED_FIELDS if getattr(spec, field)}
    return {**spec.options, **passed}


def import_factory(path: FactoryPath, where: str):
    obj: Any = _import(path.module, where)
    for depth, part in enumerate(path.attribute.split(".")):
        if not hasattr(obj, part):
            owner = ".".join([path.module, *path.attribute.split(".")[:depth]])
            close = difflib.get_close_matches(part, [n for n in dir(obj) if not n.startswith("_")], n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{where}: {owner} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{where}: {path} is a {type(obj).__name__}, not a function or class to call; {CONTRACT}")
    return obj


def _import(module: str, where: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and (module == err.name or module.startswith(err.name + ".")):
            raise ConfigError(
                f"{where}: cannot import {module!r} ({err}); install the package that holds it (pip install -e "
                f"<your project>), add its folder to PYTHONPATH, or put it in the working directory {cwd}"
            ) from None
        raise ConfigError(f"{where}: importing {module!r} failed: {err}, a module it imports; install it") from None
    except Exception as err:  # noqa: BLE001 - user code; report what it raised
        raise ConfigError(f"{where}: importing {module!r} raised {type(err).__name__}: {err}; fix the module") from err
