"""The raw-pixel baseline: the resized image itself, flattened, is the feature."""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2

from biobench.errors import ConfigError
from biobench.models.base import ORGS, ModelSpec

DEFAULT_SIZE = 32


class RawPixels:
    def __init__(self, size: int):
        self.size = size

    def make_transform(self):
        return v2.Compose([
            v2.PILToTensor(),
            v2.Resize((self.size, self.size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
        ])

    def img_encode(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)

    def describe_transform(self) -> dict[str, Any]:
        return {"resize": [self.size, self.size], "scale": "[0, 1]", "normalize": None}

    def to(self, device: torch.device) -> "RawPixels":
        return self


@ORGS.register("pixels")
class PixelsOrg:
    def validate(self, spec: ModelSpec) -> None:
        for field in ("checkpoint", "weights", "pooling"):
            if getattr(spec, field):
                raise ConfigError(
                    f"config.yaml: models.{spec.name}.{field}: the pixels baseline has no {field}; remove the key"
                )

    def weights_identity(self, spec: ModelSpec) -> dict[str, Any]:
        return {}

    def load(self, spec: ModelSpec) -> RawPixels:
        return RawPixels(spec.image_size or DEFAULT_SIZE)
