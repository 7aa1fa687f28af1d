"""Build a task's manifest from its on-disk data and write it as parquet."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from biobench import data_state
from biobench.atomic import atomic_path
from biobench.options import task_options
from biobench.errors import DatasetCorruptError, DatasetMissingError
from biobench.tasks import MANIFEST_COLUMNS, TASKS

log = logging.getLogger(__name__)


def write_manifest(task: str, options: dict[str, Any], data_dir: str | Path, out: str | Path) -> pd.DataFrame:
    """The manifest records its files' sizes and modification times, and a fingerprint of data_dir taken before
    reading it (so a file changed meanwhile makes the next run rebuild it): see biobench/data_state.py."""
    task_cls = TASKS.get(task)
    state = data_state.fingerprint(data_dir) if Path(data_dir).is_dir() else None
    frame = task_cls().build_manifest(task_options(task, options), Path(data_dir))  # a missing folder: its own error
    if state is None:
        raise DatasetMissingError(f"task {task}: no data folder {data_dir}; run snakemake prepare, or set the "
                                  f"task's datadir to where its data is")
    check_manifest(task, frame, task_cls.splits)
    frame = data_state.with_file_stats(frame)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                          data_state.METADATA_KEY: json.dumps(state).encode()})
    with atomic_path(out, keep_mtime_if_same=True) as tmp:
        pq.write_table(table, tmp)
    log.info("%s: %d examples, %s", task, len(frame), frame["split"].value_counts().to_dict())
    return frame


def check_manifest(task: str, frame: pd.DataFrame, splits: tuple[str, ...]) -> None:
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetCorruptError(f"task {task}: manifest lacks columns {missing} (a bug in the task module)")
    if frame["example_id"].duplicated().any():
        dup = frame.loc[frame["example_id"].duplicated(), "example_id"].iloc[0]
        raise DatasetCorruptError(f"task {task}: example_id {dup!r} appears twice in the manifest")
    empty = [s for s in splits if not (frame["split"] == s).any()]
    if empty:
        raise DatasetCorruptError(f"task {task}: no examples in split(s) {empty}; is the dataset complete?")
    paths = frame["frames"].explode() if "frames" in frame.columns else frame["path"]
    absent = [p for p in paths.dropna().unique() if not Path(p).exists()]
    if absent:
        raise DatasetCorruptError(
            f"task {task}: {len(absent)} file(s) listed in the manifest are missing, e.g. {absent[0]}; "
            "re-run the download (snakemake prepare) or fix the task's datadir"
        )
