"""Decoding JPEGs on the embedding device (nvJPEG on a GPU, libjpeg-turbo on the CPU) with the semantics of
`biobench.images.open_rgb`: EXIF orientation applied, RGB out. Files this path cannot match exactly (not JPEG, CMYK
or other colour modes, no end-of-image marker, over PIL's pixel limit, a decoder error) are marked for `open_rgb`,
which decodes them or raises the error that names the file."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

ORIENTATION_TAG = 0x0112
DEVICE_MODES = {"RGB", "L"}  # what decode_jpeg(mode=RGB) turns into the same RGB as PIL's convert("RGB")


@dataclass(frozen=True)
class EncodedImage:
    data: torch.Tensor  # the file's bytes, uint8 [n]
    orientation: int  # EXIF orientation 1..8 (1 = as stored)
    on_device: bool  # False: decode with open_rgb instead


def read_encoded(path: str) -> EncodedImage:
    """The file's bytes and what the header says, without decoding pixels (cheap; runs in loader workers)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return EncodedImage(torch.empty(0, dtype=torch.uint8), 1, False)
    on_device, orientation = False, 1
    if len(data) > 4 and data[0] == 0xFF and data[1] == 0xD8 and data[-2] == 0xFF and data[-1] == 0xD9:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)  # open_rgb names the file and limit
                with Image.open(io.BytesIO(data.tobytes())) as image:
                    on_device = image.format == "JPEG" and image.mode in DEVICE_MODES
                    orientation = int(image.getexif().get(ORIENTATION_TAG, 1) or 1)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
            on_device = False
    if orientation not in range(1, 9):
        orientation = 1
    return EncodedImage(torch.from_numpy(data), orientation, on_device)


def decode(images: list[EncodedImage], device: torch.device) -> list[torch.Tensor | None]:
    """uint8 [3, h, w] on `device` for each image marked on_device, None for the others and for any the decoder
    rejects."""
    wanted = [i for i, image in enumerate(images) if image.on_device]
    out: list[torch.Tensor | None] = [None] * len(images)
    if not wanted:
        return out
    try:
        decoded = _decode([images[i].data for i in wanted], device)
    except RuntimeError:  # one bad file fails the whole batch: find it
        decoded = []
        for i in wanted:
            try:
                decoded.extend(_decode([images[i].data], device))
            except RuntimeError:
                decoded.append(None)
    for i, tensor in zip(wanted, decoded):
        out[i] = None if tensor is None else orient(tensor, images[i].orientation)
    return out


def _decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec, which has no batched nvJPEG decode
        warnings.filterwarnings("ignore", "The image decoding and encoding", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation to [c, h, w], as PIL's ImageOps.exif_transpose does."""
    if orientation in (2, 4, 5, 7):  # the mirrored ones: mirror left-right first
        image = image.flip(-1)
    turns = {1: 0, 2: 0, 3: 2, 4: 2, 5: 1, 6: 3, 7: 3, 8: 1}[orientation]  # quarter turns anticlockwise
    return torch.rot90(image, turns, dims=(-2, -1)) if turns else image
