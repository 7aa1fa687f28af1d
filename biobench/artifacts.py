"""Artifacts that exist but cannot be read (cut short by a full disk, a killed copy, a crash of the machine).

Snakemake judges a file by its existence and modification time, so it would keep such a file forever; and it rebuilds
a missing file only when a file made from it is missing or outdated too. Where the DAG is built, `discard_run` looks
at every artifact a run would use and deletes the unreadable ones together with what was made from them, so that the
run rebuilds them all. That look is cheap (the first and last bytes and the footer; about 0.2 ms a file). Damage
inside a file shows only when a job reads it, and `read_parquet` then empties the file and says so: the next run's
look deletes it with what was made from it (a job deleting it would leave Snakemake nothing to notice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from biobench.errors import BiobenchError

T = TypeVar("T")
PARQUET_MAGIC = b"PAR1"
DUCKDB_MAGIC = b"DUCK"  # at byte 8 of a DuckDB database file, after the header's checksum
REBUILD = "re-running `snakemake --cores 8` rebuilds it"


class UnreadableArtifact(BiobenchError):
    """An artifact of the workflow that cannot be read; it has been deleted so that the next run rebuilds it."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


def parquet_problem(path: str | Path) -> str | None:
    """Why `path` is not a readable parquet file, judging by its first and last bytes and its footer; None if it
    looks whole."""
    with open(path, "rb") as f:
        head = f.read(4)
        size = f.seek(0, 2)
        f.seek(max(size - 4, 0))
        tail = f.read(4)
    if size < 12:
        return f"{size} bytes, too short for a parquet file"
    if head != PARQUET_MAGIC:
        return "it does not start as a parquet file does"
    if tail != PARQUET_MAGIC:
        return "it does not end as a parquet file does: it was cut short"
    try:
        pq.read_metadata(path)
    except (pa.ArrowInvalid, OSError) as err:
        if _system_error(err):
            raise
        return f"its footer is damaged: {first_line(err)}"
    return None


def database_problem(path: str | Path) -> str | None:
    """Why `path` is not a DuckDB database, judging by its header; None if it looks like one."""
    with open(path, "rb") as f:
        header = f.read(12)
    return None if header[8:12] == DUCKDB_MAGIC else "it is not a DuckDB database file"


def discard(path: str | Path, problem: str, fix: str = REBUILD) -> UnreadableArtifact:
    """Delete the unreadable artifact `path`; the error that says so."""
    Path(path).unlink(missing_ok=True)
    return UnreadableArtifact(f"{path} cannot be read ({problem}); biobench deleted it, and {fix}", Path(path))


def discard_unreadable(paths: Iterable[str | Path], problem_of: Callable[[Path], str | None] = parquet_problem,
                       fix: str = REBUILD) -> list[UnreadableArtifact]:
    """Delete each existing file of `paths` that `problem_of` finds unreadable; what was deleted, and why."""
    discarded = []
    for path in map(Path, paths):
        if path.is_file() and (problem := problem_of(path)) is not None:
            discarded.append(discard(path, problem, fix))
    return discarded


def discard_run(made_from: Mapping[str, Sequence[str]]) -> list[str]:
    """Delete each existing artifact of `made_from` (path -> the paths made from it) that cannot be read, and the
    existing files made from it; one message per unreadable artifact."""
    messages = []
    for path in made_from:
        problem_of = database_problem if path.endswith(".duckdb") else parquet_problem
        for error in discard_unreadable([path], problem_of, fix="snakemake rebuilds it"):
            made = [p for p in made_from[path] if Path(p).is_file()]
            for p in made:
                Path(p).unlink()
            also = f" It also deleted what was made from it, to be rebuilt: {', '.join(made)}." if made else ""
            messages.append(f"{error}.{also}")
    return messages


def empty(path: str | Path, problem: str) -> UnreadableArtifact:
    """Empty the unreadable artifact `path`, a job's input, so that the next run rebuilds it and what was made from
    it; the error that says so."""
    Path(path).write_bytes(b"")
    return UnreadableArtifact(f"{path} cannot be read ({problem}); biobench emptied it, and {REBUILD} and what was "
                              "made from it", Path(path))


def read_parquet(path: str | Path, read: Callable[[Path], T]) -> T:
    """`read(path)`; a parquet file it finds damaged is emptied, with an error that names it and the fix."""
    try:
        return read(Path(path))
    except (pa.ArrowInvalid, OSError) as err:
        if _system_error(err):
            raise
        raise empty(path, parquet_problem(path) or first_line(err)) from err


def damage(path: str | Path) -> str | None:
    """What keeps the parquet file `path` from being read in full; None if it reads. Reads the whole file: for the
    error path, to find which of several files a reader choked on."""
    problem = parquet_problem(path)
    if problem is not None:
        return problem
    try:
        pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        if _system_error(err):
            raise
        return first_line(err)
    return None


def _system_error(err: Exception) -> bool:
    """An error of the system (no permission, no such file, ...) rather than damage to the file's bytes."""
    return isinstance(err, OSError) and err.errno is not None


def first_line(err: Exception) -> str:
    """The first line of an error's message (pyarrow's and DuckDB's go on with context that the log need not repeat)."""
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
