"""Decoding images to the 8-bit RGB the models see: every Pillow mode, 16-bit and float data, oversized images."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from biobench import jpeg
from biobench.errors import DatasetCorruptError
from biobench.images import HANDLED_MODES, open_rgb, to_rgb

MID = (128, 128, 128)
WHITE = (255, 255, 255)


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes = b"") -> bytes:
    """A PNG written by hand, for what Pillow cannot save (16-bit colour) or a header that declares any size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def sixteen_bit_png(values: list[tuple[int, ...]], colour_type: int) -> bytes:
    """One row of 16-bit pixels; colour type 0 grey, 2 RGB, 4 grey + alpha, 6 RGBA."""
    row = b"\x00" + b"".join(struct.pack(f">{len(v)}H", *v) for v in values)
    return png_bytes(len(values), 1, 16, colour_type, row)


def pixels(image: Image.Image) -> list[tuple[int, int, int]]:
    assert image.mode == "RGB"
    return [image.getpixel((x, 0)) for x in range(image.width)]


def saved(tmp_path, image: Image.Image, fmt: str, **options):
    path = tmp_path / f"image.{fmt.lower()}"
    image.save(path, format=fmt, **options)
    return path


def two_pixels(mode: str, first, second) -> Image.Image:
    image = Image.new(mode, (2, 1))
    image.putpixel((0, 0), first)
    image.putpixel((1, 0), second)
    return image


def palette_image(transparent: bool) -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 9))
    image.putpixel((0, 0), 1)
    image.putpixel((1, 0), 2)
    if transparent:
        image.info["transparency"] = 2
    return image


def lab_grey() -> Image.Image:
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    return ImageCms.applyTransform(Image.new("RGB", (2, 1), MID), to_lab)


# mode: (how it is stored, the image, its two pixels as RGB, tolerance). Stored as a file where Pillow writes and
# reads back that mode; the rest exist only in memory (plugins and conversions produce them) and go to to_rgb.
CASES = {
    "1": ("PNG", lambda: two_pixels("1", 1, 0), [WHITE, (0, 0, 0)], 0),
    "L": ("PNG", lambda: two_pixels("L", 128, 7), [MID, (7, 7, 7)], 0),
    "LA": ("PNG", lambda: two_pixels("LA", (50, 255), (50, 0)), [(50, 50, 50), WHITE], 0),
    "La": (None, lambda: two_pixels("La", (50, 255), (0, 0)), [(50, 50, 50), WHITE], 0),
    "P": ("PNG", lambda: palette_image(False), [(10, 20, 30), (200, 100, 50)], 0),
    "P-transparent": ("PNG", lambda: palette_image(True), [(10, 20, 30), WHITE], 0),
    "PA": ("TIFF", lambda: palette_image(False).convert("PA"), [(10, 20, 30), (200, 100, 50)], 0),
    "RGB": ("PNG", lambda: two_pixels("RGB", (10, 20, 30), (200, 100, 50)), [(10, 20, 30), (200, 100, 50)], 0),
    "RGBA": ("PNG", lambda: two_pixels("RGBA", (10, 20, 30, 255), (10, 20, 30, 0)), [(10, 20, 30), WHITE], 0),
    "RGBa": (None, lambda: two_pixels("RGBa", (10, 20, 30, 255), (0, 0, 0, 0)), [(10, 20, 30), WHITE], 0),
    "RGBX": (None, lambda: two_pixels("RGBX", (10, 20, 30, 0), (200, 100, 50, 99)), [(10, 20, 30), (200, 100, 50)],
             0),
    "CMYK": ("TIFF", lambda: two_pixels("CMYK", (0, 0, 0, 0), (0, 255, 255, 0)), [WHITE, (255, 0, 0)], 0),
    "CMYK-jpeg": ("JPEG", lambda: Image.new("CMYK", (2, 1), (0, 255, 255, 0)), [(255, 0, 0)] * 2, 3),
    "YCbCr": ("TIFF", lambda: two_pixels("YCbCr", (128, 128, 128), (255, 128, 128)), [MID, WHITE], 1),
    "LAB": ("TIFF", lab_grey, [MID, MID], 1),
    "HSV": (None, lambda: two_pixels("HSV", (0, 0, 128), (0, 255, 255)), [MID, (255, 0, 0)], 0),
    "I": ("TIFF", lambda: Image.fromarray(np.array([[32768, 70000]], dtype=np.int32)), [MID, WHITE], 0),
    "I-negative": ("TIFF", lambda: Image.fromarray(np.array([[-5, 0x12FF]], dtype=np.int32)), [(0, 0, 0), (18,) * 3],
                   0),
    "I;16": ("PNG", lambda: Image.fromarray(np.array([[32768, 65535]], dtype=np.uint16)), [MID, WHITE], 0),
    "I;16-tiff": ("TIFF", lambda: Image.fromarray(np.array([[32768, 0]], dtype=np.uint16)), [MID, (0, 0, 0)], 0),
    "I;16B": ("TIFF", lambda: Image.fromarray(np.array([[32768, 0x12FF]], dtype=">u2")), [MID, (18,) * 3], 0),
    "I;16L": (None, lambda: Image.new("I;16L", (2, 1), 32768), [MID, MID], 0),
    "I;16N": (None, lambda: Image.new("I;16N", (2, 1), 32768), [MID, MID], 0),
    "F": ("TIFF", lambda: Image.fromarray(np.array([[0.5, 1.0]], dtype=np.float32)), [MID, WHITE], 0),
    "F-over-one": ("TIFF", lambda: Image.fromarray(np.array([[127.6, 300.0]], dtype=np.float32)), [MID, WHITE], 0),
    "F-nan": ("TIFF", lambda: Image.fromarray(np.array([[np.nan, -2.0]], dtype=np.float32)), [(0, 0, 0)] * 2, 0),
}


@pytest.mark.parametrize("case", CASES)
def test_every_mode_decodes_to_the_right_pixels(tmp_path, case):
    fmt, make, expected, tolerance = CASES[case]
    image = make()
    assert image.mode == case.split("-")[0]
    if fmt is None:
        rgb = to_rgb(image, "memory")
    else:
        path = saved(tmp_path, image, fmt)
        with Image.open(path) as stored:
            assert stored.mode == image.mode, "the file does not hold the mode this case tests"
        rgb = open_rgb(path)
    got = np.array(pixels(rgb), dtype=int)
    np.testing.assert_allclose(got, np.array(expected), atol=tolerance)


def test_the_cases_cover_every_pillow_mode():
    assert {case.split("-")[0] for case in CASES} == set(Image.MODES) == HANDLED_MODES


def test_a_mid_grey_sixteen_bit_png_is_mid_grey_not_white(tmp_path):
    path = tmp_path / "grey16.png"
    path.write_bytes(sixteen_bit_png([(32768,)] * 3, colour_type=0))
    assert pixels(open_rgb(path)) == [MID] * 3


def test_sixteen_bit_grey_and_colour_pngs_of_one_picture_agree(tmp_path):
    """Pillow keeps 16-bit grey (I;16) but reduces 16-bit colour to 8 bits itself, by the high byte."""
    values = [0, 0x00FF, 0x12FF, 0x5680, 32768, 65535]
    grey, colour = tmp_path / "grey.png", tmp_path / "colour.png"
    grey.write_bytes(sixteen_bit_png([(v,) for v in values], colour_type=0))
    colour.write_bytes(sixteen_bit_png([(v, v, v) for v in values], colour_type=2))
    with Image.open(grey) as g, Image.open(colour) as c:
        assert (g.mode, c.mode) == ("I;16", "RGB")
    assert pixels(open_rgb(grey)) == pixels(open_rgb(colour)) == [(v >> 8,) * 3 for v in values]


def test_sixteen_bit_alpha_pngs_composite_on_white(tmp_path):
    path = tmp_path / "rgba16.png"
    path.write_bytes(sixteen_bit_png([(32768, 65535, 0, 65535), (0, 0, 0, 0)], colour_type=6))
    assert pixels(open_rgb(path)) == [(128, 255, 0), WHITE]
    path.write_bytes(sixteen_bit_png([(32768, 65535), (0, 0)], colour_type=4))
    assert pixels(open_rgb(path)) == [MID, WHITE]


def test_a_mode_biobench_does_not_handle_is_refused_naming_file_and_mode():
    image = Image.new("L", (1, 1))
    image._mode = "I;32"  # no file or Pillow constructor gives such a mode today; a future Pillow might
    with pytest.raises(DatasetCorruptError, match=r"odd\.tif.*'I;32'.*Convert the file to 8-bit RGB"):
        to_rgb(image, "odd.tif")


def test_a_decompression_bomb_names_the_file_its_size_the_limit_and_the_fix(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(30000, 30000, 8, 0))  # 117 bytes declaring 900 megapixels
    with pytest.raises(DatasetCorruptError) as caught:
        open_rgb(path)
    message = str(caught.value)
    for part in ("bomb.png", "900,000,000 pixels", f"{Image.MAX_IMAGE_PIXELS:,}", "MAX_IMAGE_PIXELS", "downscaled"):
        assert part in message


def test_an_image_between_the_limit_and_twice_it_is_refused_before_decoding(tmp_path, monkeypatch):
    """Pillow only warns there, and would decode it; biobench refuses it like a bigger one."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = saved(tmp_path, Image.new("RGB", (12, 12)), "PNG")
    with pytest.raises(DatasetCorruptError, match=r"image\.png: it declares 12 x 12 = 144 pixels, over the limit of "
                                                   r"100 \(PIL\.Image\.MAX_IMAGE_PIXELS\)"):
        open_rgb(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 144)
    assert open_rgb(path).size == (12, 12)


@pytest.mark.parametrize(("side", "declared"), [(12, "12 x 12 = 144"), (20, "400")])  # over 100 pixels; over 200
def test_the_device_jpeg_path_leaves_oversized_images_to_open_rgb(tmp_path, monkeypatch, side, declared):
    path = saved(tmp_path, Image.new("RGB", (side, side), (10, 200, 30)), "JPEG")
    assert jpeg.read_encoded(str(path)).on_device
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert not jpeg.read_encoded(str(path)).on_device
    with pytest.raises(DatasetCorruptError, match=rf"image\.jpeg: it declares {declared} pixels"):
        open_rgb(path)


def test_the_device_jpeg_path_agrees_with_open_rgb_on_grey_jpegs(tmp_path):
    import torch

    path = saved(tmp_path, Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)), "JPEG")
    encoded = jpeg.read_encoded(str(path))
    assert encoded.on_device
    decoded = jpeg.decode([encoded], torch.device("cpu"))[0]
    assert torch.equal(decoded, torch.from_numpy(np.array(open_rgb(path))).permute(2, 0, 1))


def test_a_file_that_is_not_an_image_names_the_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_bytes(b"not an image at all")
    with pytest.raises(DatasetCorruptError, match=r"notes\.png.*not an image"):
        open_rgb(path)
