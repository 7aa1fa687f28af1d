"""Where a batch of pixels comes from: the uint8 cache, JPEGs decoded on the embedding device, or PIL in loader
workers. Each yields (batch, image indices) in order; the batch is the pixel stage's output (uint8 [b, 3, H, W]
when the transform was cut, else the full transform's float output)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import torch

from biobench import jpeg
from biobench.images import open_rgb
from biobench.preprocess import PixelPlan

Batch = tuple[torch.Tensor, np.ndarray]


class StringColumn:
    """Strings in one Arrow buffer. A Python list would hold an object per string (about 100 bytes for a path), and
    forked loader workers would copy its pages one by one as they touch reference counts."""

    def __init__(self, strings: pa.Array | pa.ChunkedArray):
        self.strings = strings.combine_chunks() if isinstance(strings, pa.ChunkedArray) else strings

    def __len__(self) -> int:
        return len(self.strings)

    def __getitem__(self, i: int) -> str:
        return self.strings[int(i)].as_py()


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, paths: StringColumn, pixels):
        self.paths, self.pixels = paths, pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.pixels(open_rgb(self.paths[i])), i


class _Encoded(torch.utils.data.Dataset):
    def __init__(self, paths: StringColumn):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return jpeg.read_encoded(self.paths[i]), i


def _encoded_batch(items):
    return [image for image, _ in items], np.array([i for _, i in items])


def from_workers(paths: StringColumn, plan: PixelPlan, batch_size: int, num_workers: int, pin: bool) -> Iterator[Batch]:
    """PIL decoding and the pixel stage in `num_workers` processes."""
    loader = torch.utils.data.DataLoader(_Decoded(paths, plan.pixels), batch_size=batch_size, num_workers=num_workers,
                                         pin_memory=pin)
    for batch, index in loader:
        yield batch, index.numpy()


def from_device_decoder(paths: StringColumn, plan: PixelPlan, batch_size: int, num_workers: int,
                        device: torch.device) -> Iterator[Batch]:
    """Workers read the files; JPEGs are decoded, oriented, resized and cropped on `device` (nvJPEG on a GPU).
    Anything else takes the PIL path in this process. Images of the same decoded size are resized together."""
    loader = torch.utils.data.DataLoader(_Encoded(paths), batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=_encoded_batch)
    for encoded, index in loader:
        decoded = jpeg.decode(encoded, device)
        out: list[torch.Tensor | None] = [None] * len(decoded)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for k, image in enumerate(decoded):
            if image is None:
                out[k] = plan.pixels(open_rgb(paths[index[k]])).to(device)
            else:
                by_size.setdefault(tuple(image.shape), []).append(k)
        for members in by_size.values():
            group = torch.stack([decoded[k] for k in members])
            for op in plan.tensor_ops:
                group = op(group)
            for k, image in zip(members, group):
                out[k] = image
        yield torch.stack(out), index


def from_cache(pixels: np.ndarray, batch_size: int, pin: bool) -> Iterator[Batch]:
    """Slices of the cached uint8 array, read one batch ahead in a thread."""

    def batches() -> Iterator[Batch]:
        for start in range(0, len(pixels), batch_size):
            stop = min(start + batch_size, len(pixels))
            batch = torch.from_numpy(np.array(pixels[start:stop]))  # a copy: the map is read-only
            yield (batch.pin_memory() if pin else batch), np.arange(start, stop)

    return read_ahead(batches(), depth=2)


def read_ahead(items: Iterator, depth: int) -> Iterator:
    """`items`, produced by a thread up to `depth` ahead of the consumer; its exceptions re-raised here."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    end = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
            slots.put(end)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            slots.put(err)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
