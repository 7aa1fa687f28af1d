"""Reading images from disk into the model's transform, with errors that name the file."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageOps

from biobench.errors import DatasetCorruptError


def open_rgb(path: str | Path) -> Image.Image:
    """Decode fully (so a truncated file fails here, not later), apply EXIF rotation, and convert to RGB
    (grayscale, CMYK, palette and alpha images all become 3-channel; alpha is composited on white)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
    except FileNotFoundError:
        raise DatasetCorruptError(
            f"image {path} is listed in the manifest but missing; re-run the task's download (snakemake prepare)"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as err:
        raise DatasetCorruptError(
            f"cannot read image {path}: {err}. The file is truncated or not an image; re-download the task "
            "(delete its data folder and run snakemake prepare) or remove the file from the dataset."
        ) from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
