"""Which accelerator a job uses, and how many a workstation has."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from biobench.errors import BiobenchError


def local_gpu_count() -> int:
    """GPUs visible on this machine, without initialising CUDA (cheap enough for DAG time)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def claim_device(name: str) -> Iterator[torch.device]:
    """Resolve `auto` to a device. Locally Snakemake runs at most one GPU job per GPU but does not say which GPU;
    each job claims the first GPU nobody else holds (an flock, released when the job ends)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        yield device
        return
    if not torch.cuda.is_available():
        raise BiobenchError(f"embed.device is {name!r} but this machine has no usable CUDA GPU; use 'auto' or 'cpu'")
    if device.index is not None or torch.cuda.device_count() == 1:
        yield torch.device("cuda", device.index or 0)
        return
    lock_dir = Path(tempfile.gettempdir()) / f"biobench-gpu-locks-{os.getuid()}"
    lock_dir.mkdir(exist_ok=True)
    for index in range(torch.cuda.device_count()):
        with open(lock_dir / f"gpu{index}.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            yield torch.device("cuda", index)
            return
    raise BiobenchError(
        f"all {torch.cuda.device_count()} GPUs are claimed by other biobench jobs; run with "
        "--resources gpu=N where N is at most the number of GPUs"
    )
