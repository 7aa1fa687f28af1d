"""Facts about the run recorded in every artifact's metadata: versions, git commit, host, time."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import socket
import subprocess
from pathlib import Path

PACKAGES = ("biobench", "torch", "torchvision", "timm", "open_clip_torch", "numpy", "scikit-learn", "pyarrow", "pillow")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str:
    """The commit of the biobench checkout in use, with '-dirty' when it has uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def record() -> dict[str, object]:
    return {
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "packages": package_versions(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
