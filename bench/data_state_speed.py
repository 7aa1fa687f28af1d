"""Time the staleness checks of biobench/data_state.py on 100,000 files (issue 12).

- the fingerprint of a data folder, which the process that plans computes for each task on every run;
- the embed job's check of each image's size and modification time against the manifest.

Files are made in --dir (a temporary folder by default: point it at a network file system to measure one there),
in folders of 100 like an ImageFolder tree. Each check runs --repeats times with 1 and with data_state.THREADS
threads; the first run may find cold caches, so the minimum and the first are both printed."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from biobench import data_state
from biobench.pixel_sources import StringColumn


def make_files(root: Path, n: int, per_folder: int = 100) -> list[str]:
    paths = []
    for i in range(n):
        folder = root / f"class{i // per_folder:05d}"
        if i % per_folder == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:07d}.jpg"
        path.write_bytes(b"x" * (100 + i % 50))
        paths.append(str(path))
    return paths


def timed(label: str, repeats: int, fn) -> None:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    print(f"{label:48s} first {seconds[0]:6.3f} s   best {min(seconds):6.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to make the files (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        paths = make_files(root / "data", args.files)
        print(f"made {args.files} files in {time.perf_counter() - start:.1f} s under {root}")
        stats = data_state.with_file_stats(pd.DataFrame({"path": paths}))
        sizes, mtimes = stats[data_state.SIZE].to_numpy(), stats[data_state.MTIME].to_numpy()
        column = StringColumn(pa.array(paths))  # as the embed job holds them
        for threads in (1, data_state.THREADS):
            timed(f"fingerprint of the folder, {threads} thread(s)", args.repeats,
                  lambda: data_state.fingerprint(root / "data", threads=threads))
            timed(f"embed-time check of each file, {threads} thread(s)", args.repeats,
                  lambda: data_state.check_files("manifest", column, sizes, mtimes, threads=threads))


if __name__ == "__main__":
    main()
