"""Reading images from disk into the model's transform, with errors that name the file."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from biobench.errors import DatasetCorruptError

AS_IS = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}  # Pillow's convert("RGB") is right for these
WITH_ALPHA = {"LA", "La", "PA", "RGBA", "RGBa"}
SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N"}
HANDLED_MODES = AS_IS | WITH_ALPHA | SIXTEEN_BIT | {"I", "F"}


def open_rgb(path: str | Path) -> Image.Image:
    """Decode fully (so a truncated file fails here, not later), apply EXIF rotation, and convert to 8-bit RGB
    (`to_rgb`). An image over PIL.Image.MAX_IMAGE_PIXELS is refused before its pixels are decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, naming the file
            with Image.open(path) as image:
                width, height = image.size
                if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
                    raise _too_large(path, f"{width} x {height} = {width * height:,}")
                image.load()
                image = ImageOps.exif_transpose(image)
    except FileNotFoundError:
        raise DatasetCorruptError(
            f"image {path} is listed in the manifest but missing; re-run the task's download (snakemake prepare)"
        ) from None
    except Image.DecompressionBombError as err:  # over twice the limit: Pillow refuses it before we see its size
        declared = re.search(r"\((\d+) pixels\)", str(err))
        raise _too_large(path, f"{int(declared[1]):,}" if declared else "too many") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DatasetCorruptError(
            f"cannot read image {path}: {err}. The file is truncated or not an image; re-download the task "
            "(delete its data folder and run snakemake prepare) or remove the file from the dataset."
        ) from None
    return to_rgb(image, path)


def to_rgb(image: Image.Image, path: str | Path) -> Image.Image:
    """8-bit RGB from any of Pillow's modes. Grayscale becomes three equal channels; alpha is composited on white.

    - 16-bit integers (I;16, I;16B, I;16L, I;16N): the high byte, value >> 8 (32768 -> 128), as Pillow itself reduces
      16-bit RGB and RGBA PNGs, so the same picture saved as 16-bit grey and 16-bit colour gives the same pixels.
    - I (32-bit integers: 16-bit PNGs in older Pillow, integer TIFFs): read as 16-bit, clipped to 0..65535.
    - F (32-bit floats, e.g. float TIFFs): if every value lies in [0, 1] it is multiplied by 255, otherwise taken as
      0..255 and clipped; then rounded. NaN becomes 0.
    """
    mode = image.mode
    if mode in SIXTEEN_BIT or mode == "I":
        values = np.asarray(image).astype(np.int64)
        return _grey(np.clip(values, 0, 65535) >> 8)
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        if values.size and values.min() >= 0 and values.max() <= 1:
            values = values * 255
        return _grey(np.clip(np.rint(values), 0, 255))
    if mode in WITH_ALPHA or (mode == "P" and "transparency" in image.info):
        rgba = (image.convert("LA") if mode == "La" else image).convert("RGBA")  # Pillow has no La -> RGBA
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in AS_IS:
        return image.convert("RGB")
    raise DatasetCorruptError(
        f"cannot read image {path}: its pixel format (Pillow mode {mode!r}) is not one biobench converts to RGB "
        f"({', '.join(sorted(HANDLED_MODES))}). Convert the file to 8-bit RGB (PNG or JPEG) and update the dataset."
    )


def _grey(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.uint8)).convert("RGB")


def _too_large(path: str | Path, declared: str) -> DatasetCorruptError:
    return DatasetCorruptError(
        f"cannot read image {path}: it declares {declared} pixels, over the limit of {Image.MAX_IMAGE_PIXELS:,} "
        "(PIL.Image.MAX_IMAGE_PIXELS) that guards against decompression bombs, small files that decode to "
        "gigabytes. If the image is genuine, store a downscaled copy in the dataset (the model sees it resized to a "
        "few hundred pixels anyway); from Python, you can instead raise PIL.Image.MAX_IMAGE_PIXELS before embedding."
    )
