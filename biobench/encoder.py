"""The forward pass over batches: the float stage of the transform and `img_encode` on the device, in chunks whose
size adapts to the GPU memory free, with the features copied back while the next batch computes."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import numpy as np
import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped

from biobench.errors import BiobenchError
from biobench.models import Backbone

log = logging.getLogger(__name__)
CPU_BATCH = 32  # "auto" on a CPU: larger batches gain nothing there
MAX_BATCH = 1024
MEMORY_SHARE = 0.6  # of the memory free at the start; the rest is room for a neighbour that grows


class OutOfGpuMemory(BiobenchError):
    pass


class Encoder:
    """`submit(batch, index)` starts a batch and returns the finished ones before it (on a GPU the device runs one
    batch ahead of the host); `drain()` returns the rest. Out of memory halves the chunk size for good, down to a
    single image, which then fails with advice."""

    def __init__(self, backbone: Backbone, device: torch.device, dtype: torch.dtype,
                 finish: Callable[[torch.Tensor], torch.Tensor], chunk: int):
        self.backbone, self.device, self.dtype, self.finish = backbone, device, dtype, finish
        self.chunk = chunk
        self.pending: deque = deque()

    def submit(self, batch: torch.Tensor, index: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        features = self._encode(batch)
        if self.device.type != "cuda":
            return [(features.numpy(), index)]
        host = torch.empty(features.shape, dtype=features.dtype, pin_memory=True)
        host.copy_(features, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        self.pending.append((host, done, index))
        return [self._pop() for _ in range(len(self.pending) - 1)]

    def drain(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self._pop() for _ in range(len(self.pending))]

    def _pop(self) -> tuple[np.ndarray, np.ndarray]:
        host, done, index = self.pending.popleft()
        done.synchronize()
        return host.numpy(), index

    def _encode(self, batch: torch.Tensor) -> torch.Tensor:
        parts, start = [], 0
        while start < len(batch):
            size = min(self.chunk, len(batch) - start)
            try:
                parts.append(self.forward(batch[start:start + size]))
            except RuntimeError as err:  # torch.cuda.OutOfMemoryError is one
                if not out_of_memory(err):
                    raise
                self._back_off(batch, size)
                continue
            start += size
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        images = self.finish(batch.to(self.device, non_blocking=True))
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype,
                                                    enabled=self.dtype != torch.float32):
            return _checked(self.backbone.img_encode(images)).float()

    def _back_off(self, batch: torch.Tensor, size: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if size == 1:
            raise OutOfGpuMemory(
                f"out of GPU memory on {device_name(self.device)} even for a single image "
                f"({tuple(batch.shape[1:])}); free the GPU of other jobs, or use a smaller image_size, dtype "
                "bfloat16, or a larger GPU"
            ) from None
        self.chunk = max(1, size // 2)
        log.warning("out of GPU memory at batch size %d; continuing with %d", size, self.chunk)


def out_of_memory(err: RuntimeError) -> bool:
    """The allocator's error, or cuDNN's and cuBLAS's when they cannot get workspace."""
    text = str(err)
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in text or "ALLOC_FAILED" in text


@jaxtyped(typechecker=beartype)
def _checked(features: Float[torch.Tensor, "b d"]) -> Float[torch.Tensor, "b d"]:
    return features


def choose_batch_size(requested: int | str, encoder: Encoder, sample: Callable[[], torch.Tensor]) -> int:
    """`requested` as is, or for "auto": on a CPU, CPU_BATCH; on a GPU, the most images whose activations fit in
    MEMORY_SHARE of the memory free now, measured by two trial forward passes of `sample()` (one image from the
    pixel stage), at most MAX_BATCH."""
    if requested != "auto":
        return int(requested)
    if encoder.device.type != "cuda":
        return CPU_BATCH
    sample = sample()
    free, _ = torch.cuda.mem_get_info(encoder.device)
    peaks = {}
    for size in (8, 32):
        torch.cuda.synchronize(encoder.device)
        torch.cuda.reset_peak_memory_stats(encoder.device)
        before = torch.cuda.memory_allocated(encoder.device)
        try:
            encoder.forward(sample.expand(size, *sample.shape).contiguous())
        except RuntimeError as err:
            if not out_of_memory(err):
                raise
            torch.cuda.empty_cache()
            return 1 if size == 8 else 8
        torch.cuda.synchronize(encoder.device)
        peaks[size] = torch.cuda.max_memory_allocated(encoder.device) - before
    torch.cuda.empty_cache()
    per_image = (peaks[32] - peaks[8]) / 24
    size = batch_size_for(free, per_image=per_image, fixed=peaks[8] - 8 * per_image)
    log.info("batch size %d: %.1f MiB per image, %.1f GiB free on %s", size, per_image / 2**20, free / 2**30,
             device_name(encoder.device))
    return size


def batch_size_for(free_bytes: float, *, per_image: float, fixed: float) -> int:
    """The largest batch, a multiple of 8 when above 8, whose memory fits in MEMORY_SHARE of `free_bytes`."""
    budget = MEMORY_SHARE * free_bytes - max(fixed, 0.0)
    fits = int(budget // max(per_image, 1.0)) if budget > 0 else 1
    fits = min(max(fits, 1), MAX_BATCH)
    return fits - fits % 8 if fits >= 8 else fits


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
