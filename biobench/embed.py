"""Images -> one feature vector per example, streamed to a parquet file with full provenance in its metadata."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped

from biobench import provenance
from biobench.atomic import atomic_path
from biobench.devices import claim_device, usable_cpus
from biobench.errors import BiobenchError
from biobench.images import open_rgb
from biobench.models import ORGS, Backbone, ModelSpec, load_backbone

log = logging.getLogger(__name__)
METADATA_KEY = b"biobench"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class OutOfGpuMemory(BiobenchError):
    pass


@dataclass(frozen=True)
class EmbedJob:
    manifest: Path
    split: str
    spec: ModelSpec
    out: Path
    device: str = "auto"
    num_workers: int = 2
    log_every_s: float = 10.0
    frame_pooling: str = ""  # for examples made of several frames: "max" or "mean"
    threads: int = 0  # torch threads for the forward pass on the CPU; 0 = every usable core


class _Images(torch.utils.data.Dataset):
    def __init__(self, paths: list[str], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(open_rgb(self.paths[i])), i


def embed(job: EmbedJob) -> dict[str, Any]:
    """Embed every example of `job.split`; returns the metadata it stored in the parquet file."""
    torch.set_flush_denormal(True)  # random-init networks produce denormals, which are very slow on CPUs
    try:
        with claim_device(job.device) as device:
            return _embed_on(job, device)
    finally:
        torch.set_flush_denormal(False)  # processor-wide state: leave it as torch starts


def _embed_on(job: EmbedJob, device: torch.device) -> dict[str, Any]:
    torch.set_num_threads(min(job.threads or usable_cpus(), usable_cpus()))
    manifest = pd.read_parquet(job.manifest)
    rows = manifest[manifest["split"] == job.split].reset_index(drop=True)
    if rows.empty:
        raise BiobenchError(f"{job.manifest}: split {job.split!r} has no examples")
    frames = rows["frames"].tolist() if "frames" in rows else [[p] for p in rows["path"]]
    paths = [p for example in frames for p in example]
    owner = np.repeat(np.arange(len(frames)), [len(f) for f in frames])

    backbone = load_backbone(job.spec)
    backbone.to(device)
    loader = torch.utils.data.DataLoader(
        _Images(paths, backbone.make_transform()), batch_size=job.spec.batch_size, num_workers=job.num_workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )
    started = time.perf_counter()
    progress = _Progress(len(paths), job.log_every_s)
    pooler = _FramePooler(rows["example_id"].tolist(), owner, job.frame_pooling)
    schema = None
    with atomic_path(job.out) as tmp:
        writer = None
        try:
            for images, index in loader:
                features = encode_with_backoff(backbone, images, device, DTYPES[job.spec.dtype])
                for table in pooler.add(features, index.numpy()):
                    if writer is None:
                        schema = table.schema
                        writer = pq.ParquetWriter(tmp, schema)
                    writer.write_table(table)
                progress.update(len(index))
            seconds = time.perf_counter() - started
            metadata = {
                "model_spec": job.spec.identity(),
                "weights_identity": ORGS.get(job.spec.org)().weights_identity(job.spec),
                "transform": backbone.describe_transform(),
                "dtype": job.spec.dtype,
                "split": job.split,
                "manifest": str(job.manifest),
                "manifest_sha256": provenance.sha256_file(job.manifest),
                "n_examples": len(rows),
                "n_images": len(paths),
                "dim": int(schema.field("embedding").type.list_size),
                "frame_pooling": job.frame_pooling,
                "device": device_name(device),
                "seconds": round(seconds, 3),
                "images_per_s": round(len(paths) / seconds, 2),
                "provenance": provenance.record(),
            }
            writer.add_key_value_metadata({METADATA_KEY: json.dumps(metadata).encode()})
        finally:
            if writer is not None:
                writer.close()
    log.info("embedded %d images in %.1f s (%.1f images/s) on %s", len(paths), seconds, len(paths) / seconds,
             metadata["device"])
    return metadata


def encode_with_backoff(backbone: Backbone, images: torch.Tensor, device: torch.device,
                        dtype: torch.dtype) -> np.ndarray:
    """Encode a batch; on running out of GPU memory, split it in halves and retry down to single images."""
    try:
        return _encode(backbone, images, device, dtype)
    except torch.cuda.OutOfMemoryError:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if len(images) == 1:
            raise OutOfGpuMemory(
                f"out of GPU memory on {device_name(device)} even for a single image "
                f"({tuple(images.shape[1:])}); use a smaller image_size, dtype bfloat16, or a larger GPU"
            ) from None
        half = len(images) // 2
        log.warning("out of GPU memory at batch %d; retrying in halves of %d", len(images), half)
        return np.concatenate([encode_with_backoff(backbone, images[:half], device, dtype),
                               encode_with_backoff(backbone, images[half:], device, dtype)])


def _encode(backbone: Backbone, images: torch.Tensor, device: torch.device, dtype: torch.dtype) -> np.ndarray:
    images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        features = _checked(backbone.img_encode(images))
    return features.float().cpu().numpy()


@jaxtyped(typechecker=beartype)
def _checked(features: Float[torch.Tensor, "b d"]) -> Float[torch.Tensor, "b d"]:
    return features


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


class _FramePooler:
    """Collects per-image features into per-example rows, in manifest order, pooling multi-frame examples."""

    def __init__(self, example_ids: list[str], owner: np.ndarray, pooling: str):
        self.example_ids, self.owner, self.pooling = example_ids, owner, pooling
        self.counts = np.bincount(owner, minlength=len(example_ids))
        self.pending: dict[int, list[np.ndarray]] = {}
        self.next_example = 0

    def add(self, features: np.ndarray, image_index: np.ndarray) -> list[pa.Table]:
        for feature, i in zip(features, image_index):
            self.pending.setdefault(int(self.owner[i]), []).append(feature)
        done_ids, done_vectors = [], []
        while self.next_example in self.pending and len(self.pending[self.next_example]) == self.counts[
                self.next_example]:
            stack = np.stack(self.pending.pop(self.next_example))
            done_vectors.append(stack.max(0) if self.pooling == "max" else stack.mean(0))
            done_ids.append(self.example_ids[self.next_example])
            self.next_example += 1
        if not done_ids:
            return []
        matrix = np.stack(done_vectors).astype(np.float32)
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), matrix.shape[1])
        return [pa.table({"example_id": pa.array(done_ids, pa.string()), "embedding": vectors})]


class _Progress:
    def __init__(self, total: int, every_s: float):
        self.total, self.every_s, self.done = total, every_s, 0
        self.started = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last < self.every_s and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate if rate else float("inf")
        log.info("%d/%d images (%.0f%%), %.1f images/s, %.0f s left", self.done, self.total,
                 100 * self.done / self.total, rate, left)


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """(example ids, float32 matrix [n, d], metadata) of an embedding parquet."""
    table = pq.read_table(path)
    metadata = read_metadata(path)
    column = table.column("embedding").combine_chunks()
    matrix = np.array(column.values.to_numpy().reshape(len(column), -1))  # writable: torch.from_numpy needs it
    return table.column("example_id").to_pylist(), matrix, metadata


def read_metadata(path: str | Path) -> dict[str, Any]:
    return json.loads(pq.ParquetFile(path).metadata.metadata[METADATA_KEY])
