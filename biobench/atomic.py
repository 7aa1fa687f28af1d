"""Write-then-rename, so that no reader ever sees (or trusts) a half-written artifact."""

from __future__ import annotations

import contextlib
import filecmp
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", keep_mtime_if_same: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    With `keep_mtime_if_same`, rewriting identical bytes keeps the old modification time, so Snakemake does not
    re-run everything downstream of a step that re-ran (e.g. after a code edit) but produced the same content."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes files private; artifacts are shared like any file
        if keep_mtime_if_same and final.is_file() and filecmp.cmp(final, tmp_path, shallow=False):
            old = final.stat()
            os.utime(tmp_path, ns=(old.st_atime_ns, old.st_mtime_ns))
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
