"""Small JPEG thumbnails of example images, as data: URIs, so the page carries its images inside itself."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

THUMBNAIL_PX = 96  # longest side
JPEG_QUALITY = 80


def thumbnail_uri(path: str | Path, px: int = THUMBNAIL_PX) -> str | None:
    """A data: URI of the image at `path` shrunk to fit `px`×`px`, or None if it is missing or unreadable."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (2 * px, 2 * px))  # JPEG: decode at a reduced scale, much faster for big photos
            image.load()
            rgb = _to_rgb(image)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    rgb.thumbnail((px, px), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # microscopy/scientific: stretch to 8 bits
        array = np.asarray(image, dtype=np.float64)
        lo, hi = np.percentile(array, [0.5, 99.5])
        array = np.clip((array - lo) / max(hi - lo, 1e-12) * 255, 0, 255).astype(np.uint8)
        return Image.fromarray(array).convert("RGB")
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
