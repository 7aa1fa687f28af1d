"""What a task's files looked like when its manifest was built, so that a changed file is never served stale.

The manifest records it twice:
- columns `file_size` and `file_mtime_ns` for every image it lists (lists aligned with `frames` for tasks whose
  examples are clips). They make the manifest's sha256 change with any listed file, and so the embeddings (which
  record that sha256) and the pixel cache's key; the embed job checks them before reading pixels (`check_files`).
- in its parquet metadata, a fingerprint of the whole data directory: a sha256 over the sorted (relative path, size,
  mtime_ns) of every regular file under it, symlinks followed, biobench's bookkeeping (the download stamp,
  temporaries of atomic writes) left out. It covers what the manifest is built from but does not list, such as
  annotation files. The process that plans the workflow recomputes it and writes a small file that the manifest
  rule takes as input (`refresh_state`): it is made newer than the manifest when the data changed since the
  manifest was built, so Snakemake plans the manifest and everything made from it.

The check is cheap because it trusts size and modification time: a file rewritten with the same size and the same
mtime to the nanosecond goes unnoticed, and a copy that does not keep modification times (`cp` without `-p`) looks
changed, which costs a rebuild of that task's embeddings. Any change under the data directory rebuilds the manifest,
even of a file the task does not read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from biobench.atomic import is_temp, write_text
from biobench.errors import BiobenchError

METADATA_KEY = b"biobench_data"
SIZE, MTIME = "file_size", "file_mtime_ns"
DOWNLOAD_STAMP = ".download-complete"
THREADS = 8  # stat calls overlap on network file systems; on a local disk they cost little either way
SHOWN = 5


def fingerprint(root: str | os.PathLike, threads: int = THREADS) -> dict[str, Any]:
    """{"fingerprint": sha256, "folders": {relative folder: short hash}, "files": count} of the files under root."""
    folders = {}
    count = 0
    for folder, files in _walk(Path(root), threads):
        listing = "".join(f"{name}\0{size}\0{mtime_ns}\n" for name, size, mtime_ns in sorted(files))
        folders[folder] = hashlib.sha256(listing.encode()).hexdigest()[:16]
        count += len(files)
    total = hashlib.sha256(json.dumps(sorted(folders.items())).encode()).hexdigest()
    return {"fingerprint": total, "folders": dict(sorted(folders.items())), "files": count}


def _walk(root: Path, threads: int):
    """(relative folder, [(name, size, mtime_ns)]) for root and every folder below it, in no particular order. A
    folder reached twice through symlinks is listed twice (deterministically); one linking back up is skipped."""
    top = root.stat()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        pending = [pool.submit(_scan, root, root, frozenset({(top.st_dev, top.st_ino)}))]
        while pending:
            folder, files, subfolders = pending.pop().result()
            yield folder, files
            pending += [pool.submit(_scan, root, Path(path), ancestors) for path, ancestors in subfolders]


def _scan(root: Path, folder: Path, ancestors: frozenset):
    relative = folder.relative_to(root).as_posix()
    files, subfolders = [], []
    try:
        entries = list(os.scandir(folder))
    except OSError as err:  # recorded, so that the folder becoming readable counts as a change
        return relative, [(f"\0unreadable: {err.strerror}", -1, -1)], []
    for entry in entries:
        try:
            stat = entry.stat()  # follows symlinks
        except OSError:  # a dangling link, or deleted meanwhile
            continue
        if entry.is_dir():
            key = (stat.st_dev, stat.st_ino)
            if key not in ancestors:
                subfolders.append((entry.path, ancestors | {key}))
        elif entry.is_file() and not _bookkeeping(relative, entry.name):
            files.append((entry.name, stat.st_size, stat.st_mtime_ns))
    return relative, files, subfolders


def _bookkeeping(folder: str, name: str) -> bool:
    return (folder == "." and name == DOWNLOAD_STAMP) or is_temp(name)


def with_file_stats(frame: pd.DataFrame, threads: int = THREADS) -> pd.DataFrame:
    """`frame` with SIZE and MTIME columns: each `path`'s, or lists of each of `frames`'s when it has frames."""
    clips = "frames" in frame.columns
    paths = [p for clip in frame["frames"] for p in clip] if clips else list(frame["path"])
    stats = _stat_all(paths, threads)
    sizes, mtimes = stats[:, 0], stats[:, 1]
    out = frame.copy()
    if clips:
        ends = np.cumsum([len(clip) for clip in frame["frames"]])[:-1]
        sizes, mtimes = np.split(sizes, ends), np.split(mtimes, ends)
        out[SIZE], out[MTIME] = [list(s) for s in sizes], [list(m) for m in mtimes]
    else:
        out[SIZE], out[MTIME] = sizes, mtimes
    return out


def _stat_all(paths: Sequence[str], threads: int) -> np.ndarray:
    """int64 [n, 2]: each file's size and mtime_ns; -1 for a file that cannot be read."""

    def one(path: str) -> tuple[int, int]:
        try:
            stat = os.stat(path)
        except OSError:
            return -1, -1
        return stat.st_size, stat.st_mtime_ns

    chunk = max(1, len(paths) // (4 * max(1, threads)) + 1)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        parts = pool.map(lambda start: [one(paths[i]) for i in range(start, min(start + chunk, len(paths)))],
                         range(0, len(paths), chunk))
        rows = [row for part in parts for row in part]
    return np.array(rows, dtype=np.int64).reshape(len(paths), 2)


def check_files(manifest: str | os.PathLike, paths: Sequence[str], sizes: np.ndarray, mtimes_ns: np.ndarray,
                threads: int = THREADS) -> None:
    """Raise unless every file still has the size and modification time the manifest recorded for it."""
    now = _stat_all(paths, threads)
    bad = np.flatnonzero((now[:, 0] != sizes) | (now[:, 1] != mtimes_ns))
    if len(bad):
        first = int(bad[0])
        what = "is missing" if now[first, 0] < 0 else "changed"
        raise BiobenchError(
            f"{paths[first]} {what} since {manifest} was built ({len(bad)} of {len(paths)} files differ from what it "
            "recorded); its pixels would not be the ones the manifest names. Re-run snakemake: it rebuilds the "
            "manifest and everything made from it."
        )


def split_stats(manifest: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The recorded (sizes, mtimes_ns) of a split's images, flattened like its paths; None if not recorded."""
    if not {SIZE, MTIME} <= set(pq.read_schema(manifest).names):
        return None
    table = pq.read_table(manifest, columns=[SIZE, MTIME], filters=[("split", "==", split)])
    columns = []
    for name in (SIZE, MTIME):
        column = table.column(name).combine_chunks()
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            column = column.flatten()
        columns.append(column.to_numpy(zero_copy_only=False).astype(np.int64))
    return columns[0], columns[1]


def recorded(manifest: str | os.PathLike) -> dict[str, Any] | None:
    """The fingerprint stored in a manifest, or None if it has none (or cannot be read)."""
    try:
        metadata = pq.read_schema(manifest).metadata or {}
        return json.loads(metadata[METADATA_KEY])
    except (OSError, ValueError, KeyError):
        return None


def stale_reason(manifest: str | os.PathLike, data_dir: str | os.PathLike,
                 now: dict[str, Any] | None = None) -> str | None:
    """Why the manifest no longer describes the files under data_dir, or None if it still does."""
    before = recorded(manifest)
    if before is None:
        return "it records no fingerprint of its files (made by an older biobench, or unreadable)"
    now = now or fingerprint(data_dir)
    if now["fingerprint"] == before["fingerprint"]:
        return None
    changed = _changed_listed_files(manifest)
    folders = sorted(f for f in before["folders"].keys() | now["folders"].keys()
                     if before["folders"].get(f) != now["folders"].get(f))
    parts = [f"{before['files']} files then, {now['files']} now"]
    if changed:
        parts.append(f"{len(changed)} listed file(s) changed or went missing: {', '.join(changed[:SHOWN])}")
    parts.append(f"folders with added, removed or changed files: {', '.join(folders[:SHOWN])}"
                 + (f" and {len(folders) - SHOWN} more" if len(folders) > SHOWN else ""))
    return "; ".join(parts)


def _changed_listed_files(manifest: str | os.PathLike) -> list[str]:
    frame = pd.read_parquet(manifest)
    if SIZE not in frame.columns:
        return []
    if "frames" in frame.columns:
        paths = [p for clip in frame["frames"] for p in clip]
        sizes = np.concatenate([np.asarray(s, np.int64) for s in frame[SIZE]])
        mtimes = np.concatenate([np.asarray(m, np.int64) for m in frame[MTIME]])
    else:
        paths, sizes, mtimes = list(frame["path"]), frame[SIZE].to_numpy(), frame[MTIME].to_numpy()
    now = _stat_all(paths, THREADS)
    return [paths[i] for i in np.flatnonzero((now[:, 0] != sizes) | (now[:, 1] != mtimes))]


def refresh_state(task: str, data_dir: str | os.PathLike, manifest: str | os.PathLike, state: str | os.PathLike,
                  warn: Callable[[str], None]) -> bool:
    """Write `state`, the manifest rule's input that stands for the files under data_dir: newer than the manifest
    when those files changed since it was built (True, said through `warn`), else no newer than it.

    Deleting the stale manifest would not do: Snakemake does not rebuild a missing intermediate file whose
    consumers are up to date (as with temp() files)."""
    data_dir, manifest, state = Path(data_dir), Path(manifest), Path(state)
    now = fingerprint(data_dir) if data_dir.is_dir() else None
    content = json.dumps({"task": task, "data_dir": str(data_dir), "fingerprint": now and now["fingerprint"],
                          "files": now and now["files"]}) + "\n"
    reason = stale_reason(manifest, data_dir, now) if manifest.is_file() and now is not None else None
    if reason is not None:
        warn(f"task {task}: the files in {data_dir} changed since {manifest} was built ({reason}); it will be "
             "rebuilt, and everything made from it")
        write_text(state, content)
        return True
    if not state.is_file() or state.read_text() != content:
        write_text(state, content)
    if manifest.is_file() and state.stat().st_mtime_ns > manifest.stat().st_mtime_ns:
        made = manifest.stat().st_mtime_ns
        os.utime(state, ns=(made, made))
    return False
