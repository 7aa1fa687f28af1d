"""A model's eval transform cut in two: the pixel stage (decode, resize, crop: PIL image -> uint8 [3, H, W]) and the
float stage (to float, normalise), which runs on whole batches on the embedding device.

Cutting there changes no value: ToTensor is `x.float() / 255` elementwise and Normalize is elementwise, so the batch
stage gives bit-identical tensors to the per-image transform. What it buys: a quarter of the bytes cross from the
loader workers and over PCIe, the uint8 pixels can be cached and shared by every model whose pixel stage is the same
(`PixelPlan.cache_key`), and where the pixel stage is plain resize and crop it can run on decoded tensors, so JPEGs can
be decoded on the GPU (`PixelPlan.tensor_ops`).

A transform with a step this module does not know keeps working: the whole transform runs in the workers, uncached.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import transforms as v1
from torchvision.transforms import v2

TO_FLOAT_NAMES = {"ToTensor", "MaybeToTensor"}  # torchvision's and timm/open_clip's: PIL uint8 -> float / 255
RGB_NO_OPS = {"MaybeConvertMode", "_convert_to_rgb"}  # open_clip's conversions to RGB; images arrive as RGB already
PIXEL_STEPS = (v1.Resize, v2.Resize, v1.CenterCrop, v2.CenterCrop, v1.PILToTensor, v2.PILToTensor, v2.ToImage)
CACHE_FORMAT = 2  # 2: 16-bit and float images scaled to 8 bits (biobench.images.to_rgb), no longer clipped


@dataclass(frozen=True)
class PixelPlan:
    pixels: Callable[[Any], torch.Tensor]  # PIL RGB image -> uint8 [3, H, W] (or, unsplit, the full float transform)
    finish: Callable[[torch.Tensor], torch.Tensor]  # batch from `pixels` on the device -> the model's input
    cache_key: str | None  # equal keys <=> equal pixel stages; None when the transform is not cut
    tensor_ops: tuple[Callable[[torch.Tensor], torch.Tensor], ...] | None  # the pixel stage on a decoded uint8 image
    description: tuple[str, ...]  # the pixel stage's steps, for logs and metadata


def plan(transform: Callable[[Any], torch.Tensor]) -> PixelPlan:
    """The cut of `transform` (a torchvision Compose, as timm, open_clip and torchvision build them)."""
    ops = list(getattr(transform, "transforms", []))
    cut = next((i for i, op in enumerate(ops) if _to_float(op) is not None), None)
    if cut is None or not all(_float_step(op) is not None for op in ops[cut:]):
        return _unsplit(transform)
    pixel_ops, float_ops = ops[:cut], [_float_step(op) for op in ops[cut:]]
    if not all(_name(op) in RGB_NO_OPS or isinstance(op, PIXEL_STEPS) for op in pixel_ops):
        return _unsplit(transform)  # an unknown step might not keep uint8 RGB, or have no stable description
    steps = tuple(_describe(op) for op in pixel_ops)
    return PixelPlan(
        pixels=_Pixels(tuple(pixel_ops)),
        finish=_Finish(tuple(float_ops)),
        cache_key=_key(steps),
        tensor_ops=_tensor_ops(pixel_ops),
        description=steps,
    )


def _unsplit(transform) -> PixelPlan:
    return PixelPlan(pixels=transform, finish=_identity, cache_key=None, tensor_ops=None,
                     description=(repr(transform),))


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class _Pixels:
    """Picklable for DataLoader workers."""

    def __init__(self, ops: tuple):
        self.ops = ops

    def __call__(self, image) -> torch.Tensor:
        for op in self.ops:
            image = op(image)
        if not isinstance(image, torch.Tensor):
            image = v2.functional.pil_to_tensor(image)
        return image


class _Finish:
    def __init__(self, steps: tuple):
        self.steps = steps

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            batch = step(batch)
        return batch


def _name(op) -> str:
    return getattr(op, "__name__", type(op).__name__)


def _to_float(op) -> Callable | None:
    if _name(op) in TO_FLOAT_NAMES:
        return _uint8_to_unit
    if isinstance(op, v2.ToDtype) and _dtype_of(op) == torch.float32 and op.scale:
        return op
    if isinstance(op, v1.ConvertImageDtype) and op.dtype == torch.float32:
        return op
    return None


def _float_step(op) -> Callable | None:
    """The batched equivalent of a step after the conversion to float."""
    if isinstance(op, (v1.Normalize, v2.Normalize)):
        return op
    return _to_float(op)


def _dtype_of(op: v2.ToDtype):
    dtype = op.dtype
    return dtype.get(torch.Tensor) if isinstance(dtype, dict) else dtype


def _uint8_to_unit(batch: torch.Tensor) -> torch.Tensor:
    return batch.to(torch.float32).div(255)  # torchvision's to_tensor, operation for operation


def _describe(op) -> str:
    return "rgb" if _name(op) in RGB_NO_OPS else f"{type(op).__module__}.{op!r}"


def _tensor_ops(pixel_ops: list) -> tuple | None:
    """The pixel stage as operations on batches of decoded uint8 tensor images, if it is only resizes and crops."""
    out, on_tensors = [], False  # whether the reference runs the step on a tensor (after PILToTensor) or on PIL
    for op in pixel_ops:
        if _name(op) in RGB_NO_OPS:
            continue
        if isinstance(op, (v1.PILToTensor, v2.PILToTensor, v2.ToImage)):
            on_tensors = True
        elif isinstance(op, (v1.CenterCrop, v2.CenterCrop)) or (on_tensors and isinstance(op, (v1.Resize, v2.Resize))):
            out.append(op)
        elif isinstance(op, (v1.Resize, v2.Resize)) and _mode(op) in PIL_LIKE:
            out.append(PilLikeResize(op.size, _mode(op), op.max_size))
        else:
            return None
    return tuple(out)


PIL_LIKE = ("bilinear", "bicubic")


def _mode(resize) -> str:
    return str(getattr(resize.interpolation, "value", resize.interpolation))


class PilLikeResize:
    """Resize uint8 [..., 3, h, w] as Pillow does (torchvision's Resize on PIL images): width first, rounded to uint8,
    then height. One 2-D float resample, as torchvision does on tensors, differs from Pillow by up to 9 levels;
    this differs by at most 1 (biobench/tests/test_embed_fast.py)."""

    def __init__(self, size, mode: str, max_size: int | None):
        self.size, self.mode, self.max_size = size, mode, max_size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        new_height, new_width = output_size((height, width), self.size, self.max_size)
        x = images.reshape(-1, *images.shape[-3:]).float()
        if new_width != width:
            x = _resample(x, (height, new_width), self.mode)
        if new_height != height:
            x = _resample(x, (new_height, new_width), self.mode)
        return x.to(torch.uint8).reshape(*images.shape[:-2], new_height, new_width)


def _resample(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    x = torch.nn.functional.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255)


def output_size(image: tuple[int, int], size, max_size: int | None) -> tuple[int, int]:
    """torchvision's Resize rule: (h, w) as given, or one number for the shorter side, keeping the aspect ratio."""
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    short_target = int(size[0] if isinstance(size, (list, tuple)) else size)
    height, width = image
    short, long = min(height, width), max(height, width)
    new_short, new_long = short_target, int(short_target * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_short, new_long) if height <= width else (new_long, new_short)


def _key(steps: tuple[str, ...]) -> str:
    import PIL
    import torchvision

    # The libraries that compute the pixels are part of what the key stands for.
    blob = json.dumps({"format": CACHE_FORMAT, "steps": steps, "pillow": PIL.__version__,
                       "torchvision": torchvision.__version__.split("+")[0]})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
