"""Images -> one feature vector per example, streamed to a parquet file with full provenance in its metadata."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from biobench import data_state, pixel_sources, preprocess, provenance
from biobench.atomic import atomic_path
from biobench.devices import claim_device, usable_cpus
from biobench.encoder import Encoder, OutOfGpuMemory, choose_batch_size, device_name
from biobench.errors import BiobenchError
from biobench.images import open_rgb
from biobench.models import ORGS, ModelSpec, load_backbone
from biobench.pixel_cache import PixelCache
from biobench.pixel_sources import StringColumn
from biobench.precision import Precision, as_record, describe_dtype, hardware_of, precision_for_job
from biobench.preprocess import PixelPlan

__all__ = ["EmbedJob", "OutOfGpuMemory", "embed", "read_embeddings", "read_metadata"]

log = logging.getLogger(__name__)
METADATA_KEY = b"biobench"
ROW_GROUP_ROWS = 8192
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
    decode: str = "auto"  # "auto": on the device when it is a GPU; "device"; "workers" (PIL in loader processes)
    pixel_cache: Path | None = None  # folder of the decoded-pixel cache (biobench/pixel_cache.py); None = no cache
    pixel_cache_max_gb: float = 20.0  # the cache's size: least recently used entries make room for new ones
    precision: str = "auto"  # embed.precision: "auto" or "as_requested" (biobench/precision.py)
    planned_dtype: str | None = None  # the dtype planned when the DAG was built (in the model key); None = plan now


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
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    precision = _choose_precision(job, device)
    example_ids, paths, owner = _split_images(job.manifest, job.split)
    manifest_sha256 = provenance.sha256_file(job.manifest)
    files = _checked_files(job.manifest, job.split, paths)

    backbone = load_backbone(job.spec)
    backbone.to(device)
    pixel_plan = preprocess.plan(backbone.make_transform())
    encoder = Encoder(backbone, device, DTYPES[precision.dtype], pixel_plan.finish, chunk=1)
    encoder.chunk = batch_size = choose_batch_size(job.spec.batch_size, encoder,
                                                   lambda: pixel_plan.pixels(open_rgb(paths[0])))
    source, batches, filler = _pixel_source(job, pixel_plan, paths, manifest_sha256, files, batch_size, device)

    started = time.perf_counter()
    progress = _Progress(len(paths), job.log_every_s)
    pooler = _FramePooler(example_ids, owner, job.frame_pooling)
    with atomic_path(job.out) as tmp:
        writer = _Writer(tmp)
        try:
            for batch, index in batches:
                if filler is not None:
                    filler.add(index, batch.cpu().numpy())
                for features, done_index in encoder.submit(batch, index):
                    writer.write(pooler.add(features, done_index))
                progress.update(len(index))
            for features, done_index in encoder.drain():
                writer.write(pooler.add(features, done_index))
            if filler is not None:
                filler.commit()
            seconds = time.perf_counter() - started
            metadata = {
                "model_spec": job.spec.identity(),
                "weights_identity": ORGS.get(job.spec.org)().weights_identity(job.spec),
                "transform": backbone.describe_transform(),
                **as_record(precision),
                "split": job.split,
                "manifest": str(job.manifest),
                "manifest_sha256": manifest_sha256,
                "n_examples": len(example_ids),
                "n_images": len(paths),
                "dim": writer.dim,
                "frame_pooling": job.frame_pooling,
                "device": device_name(device),
                "pixels": {"source": source, "pixel_stage": list(pixel_plan.description)},
                "batch_size": batch_size,
                "batch_size_at_end": encoder.chunk,
                "seconds": round(seconds, 3),
                "images_per_s": round(len(paths) / seconds, 2),
                "provenance": provenance.record(),
            }
            writer.finish({METADATA_KEY: json.dumps(metadata).encode()})
        finally:
            writer.close()
            if filler is not None:
                filler.abort()
    log.info("embedded %d images in %.1f s (%.1f images/s) on %s in %s, pixels from %s", len(paths), seconds,
             len(paths) / seconds, metadata["device"], describe_dtype(precision.dtype, precision.requested, None),
             source)
    return metadata


def _choose_precision(job: EmbedJob, device: torch.device) -> Precision:
    """The plan checked against the device this job got, said in the log before any work."""
    precision = precision_for_job(job.spec.dtype, job.planned_dtype, job.precision, hardware_of(device), job.spec.name)
    (log.warning if precision.slow else log.info)("%s", precision.describe(job.spec.name))
    return precision


def _split_images(manifest: Path, split: str) -> tuple[StringColumn, StringColumn, np.ndarray]:
    """The split's example ids, its image paths (several per example when it has frames), and each path's example."""
    columns = [c for c in ("example_id", "path", "frames") if c in pq.read_schema(manifest).names]
    table = pq.read_table(manifest, columns=columns, filters=[("split", "==", split)])
    if table.num_rows == 0:
        raise BiobenchError(f"{manifest}: split {split!r} has no examples")
    if "frames" in table.column_names:
        frames = table.column("frames").combine_chunks()
        paths, per_example = pc.list_flatten(frames), pc.list_value_length(frames).to_numpy()
    else:
        paths, per_example = table.column("path"), np.ones(table.num_rows, dtype=np.int64)
    owner = np.repeat(np.arange(table.num_rows), per_example)
    return StringColumn(table.column("example_id")), StringColumn(paths), owner


def _checked_files(manifest: Path, split: str, paths: StringColumn) -> str | None:
    """A digest of the split's file sizes and modification times, once they are checked against the manifest's
    record (biobench/data_state.py); None for a manifest that records none (then nothing is cached)."""
    stats = data_state.split_stats(manifest, split)
    if stats is None:
        log.warning("%s records no file sizes and modification times (it was not made by biobench.manifest); the "
                    "images cannot be checked against it and their pixels are not cached", manifest)
        return None
    started = time.perf_counter()
    data_state.check_files(manifest, paths, *stats)
    log.info("checked the size and modification time of %d files in %.2f s", len(paths),
             time.perf_counter() - started)
    return hashlib.sha256(stats[0].tobytes() + stats[1].tobytes()).hexdigest()


def _pixel_source(job: EmbedJob, plan: PixelPlan, paths: StringColumn, manifest_sha256: str, files: str | None,
                  batch_size: int, device: torch.device):
    """(name, batches, cache filler or None): cached pixels if there are any, else decoding as `job.decode` says."""
    on_device = job.decode == "device" or (job.decode == "auto" and device.type == "cuda")
    if on_device and plan.tensor_ops is None:
        if job.decode == "device":
            log.warning("embed.decode is 'device', but the transform's pixel stage (%s) is not plain resize and "
                        "crop; decoding with PIL in the loader workers", " | ".join(plan.description))
        on_device = False
    decoder = f"tensor-{device.type}" if on_device else "pil"
    cache = None
    if job.pixel_cache and job.pixel_cache_max_gb > 0 and plan.cache_key and files:
        cache = PixelCache(job.pixel_cache, job.pixel_cache_max_gb)
    pin = device.type == "cuda"
    filler = None
    if cache is not None:
        keys = {name: cache.key(manifest_sha256=manifest_sha256, split=job.split, files=files,
                                pixel_stage=plan.cache_key, decoder=name) for name in ("pil", decoder)}
        for candidate, key in keys.items():  # PIL's pixels are the reference; either decoder's are good to read
            pixels = cache.read(key, len(paths))
            if pixels is not None:
                log.info("pixels from the cache %s (%s)", cache.path(key), candidate)
                return f"cache ({candidate})", pixel_sources.from_cache(pixels, batch_size, pin), None
        filler = cache.filler(keys[decoder], len(paths))
    if on_device:
        batches = pixel_sources.from_device_decoder(paths, plan, batch_size, job.num_workers, device)
        return f"decoded on {device.type}", batches, filler
    return "PIL in workers", pixel_sources.from_workers(paths, plan, batch_size, job.num_workers, pin), filler


class _Writer:
    """The parquet file, opened at the first finished rows (their schema fixes the embedding's width), written in
    row groups of ROW_GROUP_ROWS: one group per batch would grow the footer, held in memory, with every batch."""

    def __init__(self, path: Path):
        self.path, self.parquet, self.dim = path, None, 0
        self.buffered: list[pa.Table] = []

    def write(self, tables: list[pa.Table]) -> None:
        for table in tables:
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.path, table.schema)
                self.dim = int(table.schema.field("embedding").type.list_size)
            self.buffered.append(table)
        if sum(len(t) for t in self.buffered) >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.buffered:
            self.parquet.write_table(pa.concat_tables(self.buffered), row_group_size=ROW_GROUP_ROWS * 2)
            self.buffered = []

    def finish(self, metadata: dict[bytes, bytes]) -> None:
        self._flush()
        self.parquet.add_key_value_metadata(metadata)

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()


class _FramePooler:
    """Collects per-image features into per-example rows, in manifest order, pooling multi-frame examples."""

    def __init__(self, example_ids: StringColumn, owner: np.ndarray, pooling: str):
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
