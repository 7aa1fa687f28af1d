"""Decoded pixels kept on disk, one uint8 [n, 3, H, W] .npy per (images, pixel stage, decoder), so that every model
with the same pixel stage (decode, resize, crop) reads them instead of decoding JPEGs again.

The key hashes what determines the bytes: the manifest's sha256, the split, the sizes and modification times of the
split's files (recorded in the manifest and checked against the disk before any pixel is read, so a changed image
changes the key: biobench/data_state.py), the pixel stage's description (with the Pillow and torchvision versions),
the decoder, and the source of the code that reads images. A file appears only complete (written beside, then
renamed); a file of the wrong shape or size is deleted and rebuilt. Only one job fills a given entry; another job
that wants it at the same time decodes for itself. The folder holds at most `max_gb`, counting the entries being
written: before an entry is written, the least recently used ones are deleted to make room (a job still reading a
deleted entry keeps its memory map), and so are the temporaries of jobs killed while writing (biobench/atomic.py).
The cache is not a Snakemake output: deleting it costs time, never results."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from biobench.atomic import atomic_path, sweep_temps

log = logging.getLogger(__name__)


class PixelCache:
    def __init__(self, directory: str | Path, max_gb: float):
        self.directory, self.max_bytes = Path(directory), max_gb * 2**30

    @staticmethod
    def key(*, manifest_sha256: str, split: str, files: str, pixel_stage: str, decoder: str) -> str:
        from biobench.keys import code_digest

        reader = code_digest("biobench.images", "biobench.jpeg")
        blob = json.dumps([manifest_sha256, split, files, pixel_stage, decoder, reader])
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npy"

    def read(self, key: str, n_images: int) -> np.ndarray | None:
        """The cached pixels as a read-only memory map, or None."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            pixels = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as err:
            log.warning("pixel cache %s is unreadable (%s); deleting it", path, err)
            path.unlink(missing_ok=True)
            return None
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or len(pixels) != n_images:
            log.warning("pixel cache %s holds %s %s, not %d images; deleting it", path, pixels.dtype,
                        pixels.shape, n_images)
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # the modification time orders entries by last use
        except OSError:
            pass
        return pixels

    def make_room(self, size: int) -> bool:
        """Delete the least recently used entries until `size` more bytes fit in max_gb, counting the entries being
        written (whose temporaries are swept first, see biobench/atomic.py, if their writer died); False if they
        cannot fit."""
        if size > self.max_bytes:
            return False
        temps = sweep_temps(self.directory, recursive=False)
        for path, temp_size in temps.deleted:
            log.info("pixel cache: deleted %s (%.1f GiB), left by a job that died while writing it", path,
                     temp_size / 2**30)
        entries = []
        for path in self.directory.glob("*.npy"):
            try:
                stat = path.stat()
            except OSError:  # deleted meanwhile by another job
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        used = sum(entry[1] for entry in entries) + temps.live_bytes  # entries other jobs are writing count too
        for _, entry_size, path in sorted(entries):
            if used + size <= self.max_bytes:
                break
            log.info("pixel cache: deleting %s (%.1f GiB), the least recently used, to stay within "
                     "embed.pixel_cache_max_gb", path, entry_size / 2**30)
            path.unlink(missing_ok=True)
            used -= entry_size
        return used + size <= self.max_bytes

    def filler(self, key: str, n_images: int) -> "CacheFiller":
        return CacheFiller(self, key, n_images)


class CacheFiller:
    """Takes uint8 batches as they are decoded; `commit()` publishes the file once every image is in."""

    def __init__(self, cache: PixelCache, key: str, n_images: int):
        self.cache, self.key, self.n_images = cache, key, n_images
        self.pixels: np.ndarray | None = None
        self.filled = 0
        self.active = True
        self._lock = None
        self._atomic = None

    def add(self, index: np.ndarray, batch: np.ndarray) -> None:
        if not self.active:
            return
        if self.pixels is None and not self._start(batch.shape[1:]):
            return
        if batch.shape[1:] != self.pixels.shape[1:] or batch.dtype != np.uint8:
            log.warning("pixel cache: images of different sizes (%s, %s); not caching", batch.shape[1:],
                        self.pixels.shape[1:])
            self.abort()
            return
        self.pixels[index] = batch
        self.filled += len(index)

    def _start(self, shape: tuple[int, ...]) -> bool:
        size = self.n_images * math.prod(shape)
        try:
            self.cache.directory.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.cache.directory / f"{self.key}.lock", "w")
        except OSError as err:
            log.warning("pixel cache: cannot write in %s (%s); embedding without it. Fix embed.pixel_cache_dir or its "
                        "permissions, or set embed.pixel_cache_max_gb: 0 to turn the cache off", self.cache.directory,
                        err)
            self.abort()
            return False
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another job is filling this entry (or the file system cannot lock: then do without)
            self.abort()
            return False
        if not self.cache.make_room(size):
            log.info("pixel cache: %.1f GiB does not fit in embed.pixel_cache_max_gb (%.1f), counting entries other "
                     "jobs are writing; not caching", size / 2**30, self.cache.max_bytes / 2**30)
            self.abort()
            return False
        self._atomic = atomic_path(self.cache.path(self.key))
        tmp = self._atomic.__enter__()
        try:
            self.pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(self.n_images, *shape))
            with open(tmp, "r+b") as file:  # a full disk fails here, not as SIGBUS on a write into the memory map
                os.posix_fallocate(file.fileno(), 0, os.fstat(file.fileno()).st_size)
        except OSError as err:
            log.warning("pixel cache: cannot reserve %.1f GiB in %s (%s); embedding without it", size / 2**30,
                        self.cache.directory, err)
            self.abort()
            return False
        return True

    def commit(self) -> Path | None:
        if not self.active or self.pixels is None:
            return None
        if self.filled != self.n_images:
            self.abort()
            return None
        self.pixels.flush()
        self.pixels = None  # unmaps the file
        self._atomic.__exit__(None, None, None)
        self._atomic = None
        self._release()
        self.active = False
        log.info("pixel cache: wrote %s", self.cache.path(self.key))
        return self.cache.path(self.key)

    def abort(self) -> None:
        if self._atomic is not None:
            self.pixels = None
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)
            self._atomic = None
        self._release()
        self.active = False

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # the lock file stays: unlinking it would let two jobs lock different files
            self._lock = None
