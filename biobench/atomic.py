"""Write-then-rename, so that no reader ever sees (or trusts) a half-written artifact.

A temporary is named `.{name}.XXXXXXXX.tmp{suffix}` beside its artifact, and its writer holds an exclusive flock on
it for as long as it exists. A process killed with SIGKILL cannot delete its temporary, but the kernel drops its lock,
so `sweep_temps` deletes a temporary only when it can take that lock itself (the writer is gone) and the file has not
been modified for a while: a minute on a local disk (the moment between creating the file and locking it), a day on a
network file system, where a lock may be local to one machine or lost when the server restarts."""

from __future__ import annotations

import contextlib
import fcntl
import filecmp
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp[^/]*")
LOCAL_STALE_S = 60
NETWORK_STALE_S = 24 * 3600
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "glusterfs", "9p",
              "afs", "fuse", "panfs", "wekafs", "vast")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", keep_mtime_if_same: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    With `keep_mtime_if_same`, rewriting identical bytes keeps the old modification time, so Snakemake does not
    re-run everything downstream of a step that re-ran (e.g. after a code edit) but produced the same content."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=final.parent)
    tmp_path = Path(tmp)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until the file is renamed or deleted: tells sweep_temps we are alive
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes files private; artifacts are shared like any file
        if keep_mtime_if_same and final.is_file() and filecmp.cmp(final, tmp_path, shallow=False):
            old = final.stat()
            os.utime(tmp_path, ns=(old.st_atime_ns, old.st_mtime_ns))
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


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


def is_temp(name: str) -> bool:
    return TEMP_NAME.fullmatch(name) is not None


@dataclass
class Sweep:
    deleted: list[tuple[Path, int]] = field(default_factory=list)  # (path, bytes) of temporaries of dead writers
    live: list[tuple[Path, int]] = field(default_factory=list)  # temporaries still being written (or too young)

    @property
    def live_bytes(self) -> int:
        return sum(size for _, size in self.live)


def sweep_temps(directory: str | os.PathLike, recursive: bool = True, min_age_s: float | None = None) -> Sweep:
    """Delete the temporaries under `directory` whose writer is dead (see the module docstring); report the rest.
    `min_age_s` overrides the age a temporary must reach, which otherwise depends on the file system."""
    sweep = Sweep()
    root = Path(directory)
    if not root.is_dir():
        return sweep
    age = min_age_s if min_age_s is not None else (NETWORK_STALE_S if on_network_fs(root) else LOCAL_STALE_S)
    paths = root.rglob(".*.tmp*") if recursive else root.glob(".*.tmp*")
    for path in paths:
        if not is_temp(path.name):
            continue
        outcome = _delete_if_dead(path, age)
        if outcome is not None:
            (sweep.deleted if outcome[0] else sweep.live).append((path, outcome[1]))
    return sweep


def _delete_if_dead(path: Path, min_age_s: float) -> tuple[bool, int] | None:
    """(deleted, size), or None when the file is gone already or is not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:  # another user's (mkstemp files are private), or a link: not ours to judge
        return None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return None
        if time.time() - before.st_mtime < min_age_s:
            return False, before.st_size
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its writer holds the lock (or this file system cannot lock: then nobody can tell)
            return False, before.st_size
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:  # renamed onto its artifact or deleted meanwhile
            return None
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            return None
        path.unlink(missing_ok=True)
        return True, before.st_size
    finally:
        os.close(fd)


def on_network_fs(path: Path) -> bool:
    """True unless /proc/self/mountinfo shows `path` on a local file system."""
    try:
        kind = _fs_type(os.stat(path).st_dev)
    except OSError:
        return True
    return kind is None or kind.split(".")[0] in NETWORK_FS


@cache
def _fs_type(device: int) -> str | None:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        major, _, minor = line.split()[2].partition(":")
        if os.makedev(int(major), int(minor)) == device and " - " in line:
            return line.split(" - ", 1)[1].split()[0]
    return None
