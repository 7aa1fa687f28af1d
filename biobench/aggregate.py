"""The aggregate step: per-example prediction parquets -> results/biobench.duckdb and the leaderboard exports.

DuckDB loads the predictions (and each task's manifest, for example ids, image paths and sub-task groups) into the
tables of `biobench/results_schema.sql`; numpy then computes every number from the stored rows (`biobench.stats`)
and the results go into the same database. It is built in a temporary file beside `db_path` and renamed onto it,
so readers see the old results or the new ones, never a mixture.

Rows of a task are put in ascending `example_id` order (the `example_index` column) before resampling; the models of
a task must predict the same examples, once each, with the same true labels, or aggregation stops with an error.

Input checks, before any task is loaded or resampled (`check_predictions`); each problem names the task, the model
and the file, and all of them are reported together:
  - the evaluation split of the task's manifest must have examples, and every prediction file must have a row for
    each of them: a file with fewer rows is an error whether some models or all of them lack the examples (paired
    statistics need the same rows for every model, and scoring on the rows left would silently change n);
  - y_true and y_pred must be label ids (integers, or whole finite floats), score a finite number, and on a
    `mean_score` task a number in [0, 1].
A task with fewer than MIN_EXAMPLES evaluation examples is scored, but no significance is claimed for it: its
pairwise p-values are set to 1 (the bound every p-value satisfies) and every model is tied with the best; the
`warnings` table, the `warnings` setting and the log say so. Below about 30 examples the bootstrap distribution of a
score is too coarse and its tails too light to stand for the sampling distribution (at n = 1 every resample is the
observed sample, so any two different scores get the smallest p-value the resamples allow, 2/(B + 1)).

Training sizes. A task fitted at several training sizes (`n_train`) has one prediction file per model and size.
Every size is scored (table `train_size_scores`, the same paired resamples for every size); the task's headline
score, the one its leaderboard, comparisons and the overall score use, is its largest size (0 = every training
row counts as the largest).

Overall score. The unweighted mean over the benchmark tasks of the run (BioBench's BENCHMARK_TASKS; prior-work
tasks such as NeWT, iNat21 and ImageNet-1K are scored but not averaged). When the run has only some of BioBench's
benchmark tasks, the overall score is a partial mean: `partial` is true and `missing_tasks` names the others.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import importlib.resources
import io
import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from biobench import artifacts, atomic
from biobench.errors import BiobenchError
from biobench.stats import bootstrap, comparisons
from biobench.stats.bootstrap import Estimates
from biobench.stats.metrics import MACRO_F1_CLASSES, METRICS, Sample, scoring_metric
from biobench.tasks.base import BENCHMARK_TASKS

OVERALL = "__overall__"  # the task name of overall comparisons in the pairwise table
METADATA_KEY = "biobench"
PREDICTION_COLUMNS = ("example_id", "y_true", "y_pred", "score", "prob")
REQUIRED_METADATA = ("model", "model_key", "task", "dataset_key", "classifier_key", "metric", "benchmark", "labels",
                     "split", "manifest", "train_size")
# Must agree across every model of a task, or the models were not evaluated on the same examples the same way.
TASK_METADATA = ("dataset_key", "metric", "benchmark", "labels", "split", "manifest")
LEADERBOARD_COLUMNS = ("model", "model_key", "checkpoint", "task", "dataset", "metric", "value", "ci_low", "ci_high",
                       "confidence", "n", "git_commit", "date")
RERUN = "rerun `snakemake --cores 8`"
# The version of results_schema.sql, stored in the `settings` table; raise it when a table changes in a way that
# readers (the `biobench` command, the report) notice. Databases written before it existed count as version 0.
SCHEMA_VERSION = 1
MIN_EXAMPLES = 30  # fewer evaluation examples: scored, but no significance claimed (module docstring)
LABEL_COLUMNS = ("y_true", "y_pred")
NUMERIC_COLUMNS = ("y_true", "y_pred", "score", "prob")
log = logging.getLogger(__name__)


class PredictionsError(BiobenchError):
    """Prediction files that cannot be aggregated together."""


@dataclass(frozen=True)
class PredictionFile:
    path: Path
    meta: dict[str, Any]
    float_labels: bool = False  # y_true or y_pred stored as floats: check that they hold whole numbers

    @property
    def model(self) -> str:
        return self.meta["model"]

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def train_size(self) -> int:
        """The `n_train` setting the file was fitted with (0 = every training row)."""
        return int(self.meta["train_size"])


@dataclass(frozen=True)
class FileStats:
    """What `check_predictions` counts in one prediction file."""

    n_rows: int = 0
    bad_true: int = 0  # y_true values that are not label ids (missing, NaN, infinite or fractional)
    bad_pred: int = 0
    bad_score: int = 0  # missing, NaN or infinite scores
    outside: int = 0  # finite scores outside [0, 1]
    low: float | None = None  # smallest and largest finite score
    high: float | None = None


@dataclass(frozen=True)
class InputWarning:
    """A problem in one prediction file that did not stop aggregation (table `warnings`)."""

    task: str
    model: str
    train_size: int
    path: str
    reason: str

    @property
    def message(self) -> str:
        return f"task {self.task!r}, model {self.model!r}, {self.path}: {self.reason}"


@dataclass(frozen=True)
class TaskResult:
    task: str
    metric: str
    benchmark: bool
    n: int
    estimates: Estimates
    train_size: int = 0  # the `n_train` setting (0 = every training row)
    headline: bool = True  # the task's largest training size, whose scores the leaderboard and the overall use
    n_train: tuple[int, ...] = ()  # training rows each model's fit used, in the order of estimates.models


def headline_size(sizes: Sequence[int]) -> int:
    """The training size whose scores a task reports: the largest, 0 (every row) counting as the largest."""
    return 0 if 0 in sizes else max(sizes)


def aggregate(
    prediction_paths: list[Path],
    db_path: Path,
    *,
    n_resamples: int = bootstrap.DEFAULT_RESAMPLES,
    confidence: float = bootstrap.DEFAULT_CONFIDENCE,
    seed: int = 0,
    exports_dir: Path | None = None,
    macro_f1_classes: str = "eval_truth",
) -> None:
    if n_resamples < 1:
        raise BiobenchError(f"n_resamples must be at least 1, got {n_resamples}; fix it in config.yaml")
    if not 0 < confidence < 1:
        raise BiobenchError(f"confidence must be strictly between 0 and 1, got {confidence}; fix it in config.yaml")
    if seed < 0:
        raise BiobenchError(f"the bootstrap seed must be a non-negative integer, got {seed}; fix it in config.yaml")
    if macro_f1_classes not in MACRO_F1_CLASSES:
        raise BiobenchError(f"macro_f1_classes must be one of {sorted(MACRO_F1_CLASSES)}, got {macro_f1_classes!r}; "
                            "fix it in config.yaml")
    if not prediction_paths:
        raise PredictionsError("no prediction files to aggregate: list at least one model and one task in config.yaml")
    with duckdb.connect() as reader:
        files = read_prediction_files(reader, [Path(p) for p in prediction_paths])
        by_task = group_by_task(files)
        n_examples = check_predictions(reader, by_task)
    notes = few_examples_warnings(by_task, n_examples)
    for note in notes:
        log.warning("%s", note.message)
    with _new_database(Path(db_path)) as con:
        con.execute(importlib.resources.files("biobench").joinpath("results_schema.sql").read_text())
        results = score_tasks(con, by_task, seed=seed, n_resamples=n_resamples, macro_f1_classes=macro_f1_classes)
        insert_runs(con, files, {r.task: r.n for r in results})
        write_statistics(con, results, confidence)
        _insert(con, "warnings", pd.DataFrame(warning_rows(notes)))
        write_settings(con, n_resamples=n_resamples, confidence=confidence, seed=seed, notes=notes)
        leaderboard = con.execute(_LEADERBOARD_QUERY, {"confidence": confidence}).df()
    if exports_dir is not None:
        write_leaderboard(leaderboard, Path(exports_dir))


# ---------------------------------------------------------------------------------------------- reading and checks


def read_prediction_files(con: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> list[PredictionFile]:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise PredictionsError(f"prediction files not found: {', '.join(missing)}; {RERUN} to make them")
    unreadable = [artifacts.empty(p, problem) for p in paths if (problem := artifacts.parquet_problem(p))]
    if unreadable:
        raise PredictionsError("\n".join(map(str, unreadable)))
    names = [str(p) for p in paths]
    columns: dict[str, dict[str, str]] = defaultdict(dict)
    for name, column, kind, annotation in con.execute(
            "SELECT file_name, name, type, converted_type FROM parquet_schema($files)", {"files": names}).fetchall():
        columns[name][column] = _column_kind(kind, annotation)
    metadata = dict(con.execute(
        "SELECT file_name, value FROM parquet_kv_metadata($files) WHERE key = $key::BLOB",
        {"files": names, "key": METADATA_KEY},
    ).fetchall())
    files = []
    for path, name in zip(paths, names):
        not_ours = f"{name} was not written by biobench's fit rule"
        lacking = [c for c in PREDICTION_COLUMNS if c not in columns[name]]
        if lacking:
            raise PredictionsError(f"{not_ours} (no column {', '.join(lacking)}); delete it and {RERUN}")
        if name not in metadata:
            raise PredictionsError(f"{not_ours} (no {METADATA_KEY!r} parquet metadata); delete it and {RERUN}")
        meta = json.loads(metadata[name])
        lacking = [k for k in REQUIRED_METADATA if k not in meta]
        if lacking:
            raise PredictionsError(f"the {METADATA_KEY!r} metadata of {name} lacks {', '.join(lacking)}; "
                                   f"delete the file and {RERUN}")
        if meta["metric"] not in METRICS:
            raise PredictionsError(f"{name}: {METRICS.unknown_message(meta['metric'])} Register the metric in "
                                   "biobench/stats/metrics.py or fix the task's metric.")
        files.append(PredictionFile(path, meta, any(columns[name][c] == "float" for c in LABEL_COLUMNS)))
    _check_column_types(files, columns)
    return files


def _column_kind(kind: str | None, annotation: str | None) -> str:
    """'integer' or 'float' for a parquet column of numbers; otherwise what it holds, e.g. 'text (UTF8)'."""
    if kind in ("INT32", "INT64") and (annotation is None or annotation.startswith(("INT_", "UINT_"))):
        return "integer"
    if kind in ("FLOAT", "DOUBLE") and annotation is None:
        return "float"
    if annotation == "UTF8" or kind == "BYTE_ARRAY":
        return f"text ({annotation or kind})"
    return f"{annotation or kind or 'a nested group'} values"


def _check_column_types(files: Sequence[PredictionFile], columns: dict[str, dict[str, str]]) -> None:
    problems = [f"task {f.task!r}, model {f.model!r}: {f.path} stores {column} as {kind}, not numbers"
                for f in files for column in NUMERIC_COLUMNS
                if (kind := columns[str(f.path)][column]) not in ("integer", "float")]
    if problems:
        raise PredictionsError("\n".join(problems) + "\nbiobench's fit rule writes label ids (y_true, y_pred) as "
                               f"int64 and score and prob as floats: delete these files and {RERUN}")


def group_by_task(files: Sequence[PredictionFile]) -> dict[str, list[PredictionFile]]:
    """Files per task (tasks and models sorted by name), after checking that they can be compared."""
    seen: dict[tuple[str, str, int], PredictionFile] = {}
    for f in files:
        other = seen.setdefault((f.model, f.task, f.train_size), f)
        if other is not f:
            size = "" if f.train_size == 0 else f" with n_train {f.train_size}"
            raise PredictionsError(
                f"two prediction files for model {f.model!r} on task {f.task!r}{size}: {other.path} and {f.path}. "
                "Aggregate one file per (model, task, training size): drop the stale one from the list (or from "
                "results/)."
            )
    by_task: dict[str, list[PredictionFile]] = defaultdict(list)
    for f in files:
        by_task[f.task].append(f)
    for task, task_files in by_task.items():
        first = task_files[0]
        for f in task_files[1:]:
            for key in TASK_METADATA:
                if f.meta[key] != first.meta[key]:
                    raise PredictionsError(
                        f"task {task!r}: {first.path} and {f.path} disagree on {key!r} ({_short(first.meta[key])} vs "
                        f"{_short(f.meta[key])}), so their models were not evaluated the same way; {RERUN} so that "
                        "every model uses the current task data."
                    )
    return {task: sorted(by_task[task], key=lambda f: (f.train_size == 0, f.train_size, f.model))
            for task in sorted(by_task)}


def by_train_size(task_files: Sequence[PredictionFile]) -> dict[int, list[PredictionFile]]:
    """A task's files per training size, smallest size first (0, every row, last)."""
    sizes: dict[int, list[PredictionFile]] = defaultdict(list)
    for f in task_files:
        sizes[f.train_size].append(f)
    return {size: sizes[size] for size in sorted(sizes, key=lambda z: (z == 0, z))}


def check_predictions(con: duckdb.DuckDBPyConnection, by_task: dict[str, list[PredictionFile]]) -> dict[str, int]:
    """Each task's number of evaluation examples, after checking every prediction file's rows against it (module
    docstring). Runs before any task is loaded or resampled, and reports every problem found at once."""
    n_examples = {task: split_size(con, task_files[0]) for task, task_files in by_task.items()}
    stats = file_stats(con, [f for task_files in by_task.values() for f in task_files])
    problems = [problem for task, task_files in by_task.items()
                for problem in _task_problems(task, task_files, n_examples[task], stats)]
    if problems:
        raise PredictionsError("\n".join(problems))
    return n_examples


def split_size(con: duckdb.DuckDBPyConnection, first: PredictionFile) -> int:
    """The number of examples in the evaluation split of the manifest that `first` names."""
    manifest = Path(first.meta["manifest"])
    if not manifest.is_file():
        raise PredictionsError(f"task {first.task!r}: the manifest {manifest} named by {first.path} does not "
                               f"exist; {RERUN} to rebuild it")
    if problem := artifacts.parquet_problem(manifest):
        raise artifacts.empty(manifest, problem)
    with _naming_damaged_files([manifest]):
        manifest_types(con, first.task, manifest)
        return con.execute("SELECT count(*) FROM read_parquet($manifest) WHERE split = $split",
                           {"manifest": str(manifest), "split": first.meta["split"]}).fetchall()[0][0]


def manifest_types(con: duckdb.DuckDBPyConnection, task: str, manifest: Path) -> dict[str, str]:
    """The manifest's column types, after checking that it has the columns aggregation reads."""
    relation = con.read_parquet(str(manifest))
    types = {name: str(kind) for name, kind in zip(relation.columns, relation.types)}
    lacking = [c for c in ("example_id", "split", "path") if c not in types]
    if lacking:
        raise PredictionsError(f"task {task!r}: the manifest {manifest} lacks the columns {', '.join(lacking)}; "
                               f"{RERUN} to rebuild it")
    return types


def _label_id(column: str) -> str:
    return f"coalesce(isfinite({column}::DOUBLE) AND {column}::DOUBLE = trunc({column}::DOUBLE), false)"


_ROW_COUNTS_QUERY = """
SELECT filename, count(*), count(y_true), count(y_pred), count(score), min(score), max(score)
FROM read_parquet($files, filename = true, union_by_name = true)
GROUP BY filename
"""
_FILE_STATS_QUERY = f"""
SELECT filename, count(*), count(*) FILTER (WHERE NOT {_label_id("y_true")}),
       count(*) FILTER (WHERE NOT {_label_id("y_pred")}),
       count(*) FILTER (WHERE NOT coalesce(isfinite(score::DOUBLE), false)),
       count(*) FILTER (WHERE isfinite(score::DOUBLE) AND (score < 0 OR score > 1)),
       min(score::DOUBLE) FILTER (WHERE isfinite(score::DOUBLE)),
       max(score::DOUBLE) FILTER (WHERE isfinite(score::DOUBLE))
FROM read_parquet($files, filename = true, union_by_name = true)
GROUP BY filename
"""


def file_stats(con: duckdb.DuckDBPyConnection, files: Sequence[PredictionFile]) -> dict[str, FileStats]:
    """FileStats of every file (a file without rows has the default FileStats). One cheap scan of every file counts
    rows and nulls; only the files it finds suspect (float labels, nulls, scores outside [0, 1] or not finite) are
    scanned again for the counts that an error reports."""
    with _naming_damaged_files([f.path for f in files]):
        counts = {name: rest for name, *rest in con.execute(_ROW_COUNTS_QUERY,
                                                            {"files": [str(f.path) for f in files]}).fetchall()}
        suspects = [str(f.path) for f in files if _suspect(f, counts.get(str(f.path)))]
        detailed = ({name: FileStats(*rest) for name, *rest in
                     con.execute(_FILE_STATS_QUERY, {"files": suspects}).fetchall()} if suspects else {})
    return {str(f.path): detailed.get(str(f.path)) or FileStats(counts.get(str(f.path), [0])[0]) for f in files}


def _suspect(f: PredictionFile, counts: Sequence[Any] | None) -> bool:
    if counts is None:
        return False
    n_rows, n_true, n_pred, n_score, low, high = counts
    return f.float_labels or min(n_true, n_pred, n_score) < n_rows or not 0 <= low <= high <= 1  # NaN fails it


def _task_problems(task: str, task_files: Sequence[PredictionFile], n_examples: int,
                   stats: dict[str, FileStats]) -> list[str]:
    meta = task_files[0].meta
    split = f"split {meta['split']!r} of the manifest {meta['manifest']}"
    if n_examples == 0:
        listing = ", ".join(f"model {f.model!r}: {f.path}" for f in task_files)
        return [f"task {task!r}: {split} has no examples, so the task has nothing to score ({listing}); {RERUN} to "
                "rebuild the manifest and the predictions, or drop the task from config.yaml"]
    problems = []
    for size_files in by_train_size(task_files).values():
        everyone_short = all(stats[str(f.path)].n_rows < n_examples for f in size_files)
        for f in size_files:
            found = _file_problems(f, stats[str(f.path)], n_examples, split, everyone_short)
            problems += [f"task {task!r}, model {f.model!r}: {f.path} {problem}" for problem in found]
    return problems


def _file_problems(f: PredictionFile, stats: FileStats, n_examples: int, split: str,
                   everyone_short: bool) -> list[str]:
    if stats.n_rows == 0:
        return [f"holds no prediction rows for the {n_examples} examples of {split}; delete it and {RERUN}"]
    problems = []
    if stats.n_rows < n_examples:
        why = ("no model of the task has a row for every example, so the predictions were made from another "
               "version of the manifest; delete them and" if everyone_short else "delete it and")
        problems.append(f"has {stats.n_rows} prediction rows for the {n_examples} examples of {split}: every model "
                        f"must predict every example, once each, for paired comparisons; {why} {RERUN}")
    for column, bad in zip(LABEL_COLUMNS, (stats.bad_true, stats.bad_pred)):
        if bad:
            problems.append(f"has {bad} {column} value(s) that are not label ids (missing, NaN, infinite or "
                            f"fractional); biobench's fit rule writes integer label ids: delete it and {RERUN}")
    if stats.bad_score:
        problems.append(f"has {stats.bad_score} missing, NaN or infinite score value(s); every row needs a finite "
                        f"per-example score: fix the task's per-example score and {RERUN}")
    if f.meta["metric"] == "mean_score" and stats.outside:
        problems.append(f"has {stats.outside} score value(s) outside [0, 1] (from {stats.low:g} to {stats.high:g}); "
                        "the metric mean_score averages per-example scores in [0, 1]: fix the task's per-example "
                        f"score and {RERUN}")
    return problems


def few_examples_warnings(by_task: dict[str, list[PredictionFile]], n_examples: dict[str, int]
                          ) -> list[InputWarning]:
    """One warning per prediction file of each task with fewer than MIN_EXAMPLES evaluation examples."""
    return [InputWarning(task, f.model, f.train_size, str(f.path),
                         f"only {n_examples[task]} evaluation example(s), fewer than {MIN_EXAMPLES}: too few for the "
                         "paired bootstrap to tell models apart, so no significance is claimed (the task's pairwise "
                         "p-values are set to 1 and every model is tied with the best) and its intervals are "
                         f"unreliable; evaluate the task on at least {MIN_EXAMPLES} examples")
            for task, task_files in by_task.items() if n_examples[task] < MIN_EXAMPLES for f in task_files]


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------------- loading


@contextlib.contextmanager
def _new_database(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to a fresh database that replaces `db_path` only if the block succeeds."""
    with atomic.atomic_path(db_path) as tmp:
        tmp.unlink()  # DuckDB refuses to open an existing empty file
        try:
            with duckdb.connect(str(tmp)) as con:
                yield con
                con.execute("CHECKPOINT")
        finally:
            tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)


def load_task(con: duckdb.DuckDBPyConnection, task_files: Sequence[PredictionFile]) -> None:
    """Insert one task's examples (from its manifest), class names and prediction rows."""
    meta, task = task_files[0].meta, task_files[0].task
    manifest = Path(meta["manifest"])  # checked by check_predictions
    with _naming_damaged_files([manifest, *(f.path for f in task_files)]):
        _load_task(con, task_files, task, meta, manifest)


@contextlib.contextmanager
def _naming_damaged_files(paths: Sequence[Path]) -> Iterator[None]:
    """DuckDB's error on a file damaged inside -> an error that names the file, which is emptied to be rebuilt."""
    try:
        yield
    except duckdb.Error:
        for path in paths:
            if problem := artifacts.damage(path):
                raise artifacts.empty(path, problem) from None
        raise


def _load_task(con: duckdb.DuckDBPyConnection, task_files: Sequence[PredictionFile], task: str,
               meta: dict[str, Any], manifest: Path) -> None:
    types = manifest_types(con, task, manifest)
    first_path = "path[1]" if types["path"].endswith("[]") else "path"  # video clips list their frames
    group = '"group"' if "group" in types else "NULL"
    con.execute(
        f"""INSERT INTO examples
        SELECT $task, (row_number() OVER (ORDER BY example_id) - 1)::INTEGER, example_id, {first_path}, {group}
        FROM read_parquet($manifest) WHERE split = $split""",
        {"task": task, "manifest": str(manifest), "split": meta["split"]},
    )
    con.execute("INSERT INTO labels SELECT $task, unnest(range(len($labels))), unnest($labels)",
                {"task": task, "labels": [str(label) for label in meta["labels"]]})
    names = [str(f.path) for f in task_files]
    con.execute("CREATE OR REPLACE TEMP TABLE task_files AS "
                "SELECT unnest($files) AS filename, unnest($models) AS model, unnest($sizes) AS train_size",
                {"files": names, "models": [f.model for f in task_files],
                 "sizes": [f.train_size for f in task_files]})
    try:
        con.execute(
            """INSERT INTO prediction_rows
            SELECT f.model, $task, f.train_size, e.example_index, p.y_true, p.y_pred, p.score, p.prob
            FROM read_parquet($files, filename = true, union_by_name = true) p
            JOIN task_files f ON f.filename = p.filename
            JOIN examples e ON e.task = $task AND e.example_id = p.example_id""",
            {"task": task, "files": names},
        )
    except duckdb.ConstraintException as error:
        raise PredictionsError(f"task {task!r}: a prediction file has missing values ({error}); delete the task's "
                               f"prediction files ({', '.join(names)}) and {RERUN}") from None
    _check_rows_stored(con, task, names, manifest, meta["split"])


def _check_rows_stored(con: duckdb.DuckDBPyConnection, task: str, files: list[str], manifest: Path,
                       split: str) -> None:
    """Every prediction row must have matched exactly one example of the manifest's split."""
    mismatched = con.execute(
        """SELECT f.model, f.filename, m.num_rows, coalesce(s.stored, 0)
        FROM task_files f
        JOIN parquet_file_metadata($files) m ON m.file_name = f.filename
        LEFT JOIN (SELECT model, train_size, count(*) AS stored FROM prediction_rows WHERE task = $task
                   GROUP BY model, train_size) s
               ON s.model = f.model AND s.train_size = f.train_size
        WHERE m.num_rows <> coalesce(s.stored, 0)""",
        {"task": task, "files": files},
    ).fetchall()
    if not mismatched:
        return
    duplicates = con.execute("SELECT example_id FROM examples WHERE task = $task GROUP BY example_id "
                             "HAVING count(*) > 1 LIMIT 5", {"task": task}).fetchall()
    if duplicates:
        raise PredictionsError(f"task {task!r}: the manifest {manifest} lists example ids more than once in split "
                               f"{split!r} (e.g. {', '.join(d[0] for d in duplicates)}); {RERUN} to rebuild it")
    matched = "; ".join(f"{path}: {stored} of {rows} rows" for _, path, rows, stored in mismatched)
    raise PredictionsError(f"task {task!r}: predictions name examples that are not in split {split!r} of {manifest} "
                           f"({matched} match). They were made from another manifest: {RERUN}.")


def insert_runs(con: duckdb.DuckDBPyConnection, files: Sequence[PredictionFile], n_test: dict[str, int]) -> None:
    headline = {task: headline_size([f.train_size for f in files if f.task == task]) for task in n_test}
    rows = []
    for f in files:
        meta = f.meta
        spec, embedding, fit = meta.get("model_spec") or {}, meta.get("embedding") or {}, meta.get("fit") or {}
        provenance = meta.get("provenance") or {}
        rows.append({
            "model": f.model, "train_size": f.train_size, "headline": f.train_size == headline[f.task],
            "model_key": meta["model_key"], "org": spec.get("org"),
            "checkpoint": spec.get("checkpoint"), "model_spec": json.dumps(spec), "task": f.task,
            "dataset_key": meta["dataset_key"], "classifier_key": meta["classifier_key"],
            "classifier": json.dumps({**(meta.get("classifier") or {}), "fit": fit}),
            "metric": meta["metric"], "benchmark": bool(meta["benchmark"]), "n_train": meta.get("n_train"),
            "n_test": n_test[f.task], "manifest_sha256": meta.get("manifest_sha256"),
            "embed_device": embedding.get("device"), "embed_images_per_s": embedding.get("images_per_s"),
            "embed_dtype": embedding.get("dtype"),
            "embed_dtype_requested": embedding.get("dtype_requested") or spec.get("dtype"),
            "embed_dtype_reason": embedding.get("dtype_reason"),
            "embed_seconds": embedding.get("seconds"), "fit_seconds": fit.get("seconds"),
            "git_commit": provenance.get("git_commit"), "host": provenance.get("host"),
            "packages": json.dumps(provenance.get("packages") or {}),
            "created_at": _utc(provenance.get("created_at")), "predictions_path": str(f.path),
        })
    _insert(con, "runs", pd.DataFrame(rows).astype({
        "n_train": "Int64", "embed_images_per_s": "Float64", "embed_seconds": "Float64", "fit_seconds": "Float64",
    }))


def _utc(timestamp: str | None) -> datetime | None:
    """ISO-8601 -> naive UTC (the TIMESTAMP columns hold UTC)."""
    if not timestamp:
        return None
    moment = datetime.fromisoformat(timestamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


# -------------------------------------------------------------------------------------------------- statistics


def score_tasks(con: duckdb.DuckDBPyConnection, by_task: dict[str, list[PredictionFile]], *, seed: int,
                n_resamples: int, macro_f1_classes: str = "eval_truth") -> list[TaskResult]:
    """Load each task into the database and bootstrap it; a worker thread bootstraps one task while DuckDB loads
    the next (numpy, scipy and DuckDB release the GIL for most of their work)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bootstrap") as worker:
        pending: list[Future[TaskResult]] = []
        try:
            for task, task_files in by_task.items():
                load_task(con, task_files)
                sizes = by_train_size(task_files)
                headline = headline_size(list(sizes))
                for size, size_files in sizes.items():
                    sample = read_sample(con, task, size, [f.model for f in size_files])
                    pending.append(worker.submit(score_task, task, size_files, sample, seed=seed,
                                                 n_resamples=n_resamples, headline=size == headline,
                                                 macro_f1_classes=macro_f1_classes))
            return [future.result() for future in pending]
        except BaseException:
            worker.shutdown(cancel_futures=True)
            raise


def read_sample(con: duckdb.DuckDBPyConnection, task: str, train_size: int, models: Sequence[str]) -> Sample:
    rows = con.execute(
        "SELECT list_position($models, model) - 1 AS m, example_index, y_true, y_pred, score "
        "FROM prediction_rows WHERE task = $task AND train_size = $size",
        {"task": task, "size": train_size, "models": list(models)},
    ).fetchnumpy()
    n_examples = con.execute("SELECT count(*) FROM examples WHERE task = $task", {"task": task}).fetchall()[0][0]
    return assemble_sample(task, models, n_examples, {k: np.asarray(v) for k, v in rows.items()})


def score_task(task: str, task_files: Sequence[PredictionFile], sample: Sample, *, seed: int,
               n_resamples: int, headline: bool = True, macro_f1_classes: str = "eval_truth") -> TaskResult:
    """One training size of a task: the files' models on the same examples, resampled as every size of the task.
    macro_f1_classes: the class set of macro-F1 tasks (`biobench.stats.metrics.scoring_metric`)."""
    metric = scoring_metric(task_files[0].meta["metric"], macro_f1_classes)
    estimates = bootstrap.bootstrap_task(METRICS.get(metric), sample, [f.model for f in task_files], seed=seed,
                                         task=task, n_resamples=n_resamples)
    return TaskResult(task, metric, bool(task_files[0].meta["benchmark"]), sample.n_examples, estimates,
                      train_size=task_files[0].train_size, headline=headline,
                      n_train=tuple(int(f.meta.get("n_train") or 0) for f in task_files))


def assemble_sample(task: str, models: Sequence[str], n_examples: int, rows: dict[str, np.ndarray]) -> Sample:
    """(model, example_index) rows -> model x example arrays, after checking that the models are comparable."""
    m, index = rows["m"].astype(np.int64), rows["example_index"].astype(np.int64)
    counts = np.bincount(m * n_examples + index, minlength=len(models) * n_examples).reshape(len(models), n_examples)
    predicted = counts[0] > 0
    uneven = [f"{model} predicts {np.count_nonzero(c)}" + (f", one of them {int(c.max())} times" if c.max() > 1 else "")
              + ("" if np.array_equal(c > 0, predicted) else f", {np.count_nonzero(predicted & (c == 0))} of "
                 f"{models[0]}'s not at all") for model, c in zip(models, counts)]
    if any(c.max() > 1 or not np.array_equal(c > 0, predicted) for c in counts):
        raise PredictionsError(
            f"task {task!r}: every model must predict the same examples once each for paired comparisons, but "
            f"{'; '.join(uneven)}. {RERUN[0].upper() + RERUN[1:]}."
        )
    shape = (len(models), n_examples)
    y_true, y_pred, score = (np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64),
                             np.zeros(shape, dtype=np.float64))
    y_true[m, index], y_pred[m, index], score[m, index] = rows["y_true"], rows["y_pred"], rows["score"]
    disagree = np.flatnonzero((y_true != y_true[0]).any(axis=0))
    if len(disagree):
        raise PredictionsError(f"task {task!r}: models disagree on the true label of {len(disagree)} examples "
                               f"(example indices {disagree[:5].tolist()}); their labels come from different "
                               f"encodings: {RERUN}.")
    return Sample(y_true=y_true[0, predicted], y_pred=y_pred[:, predicted], score=score[:, predicted])


@dataclass(frozen=True)
class Summary:
    """Interval, rank, tie with the best and pairwise comparisons of one statistic across models."""

    ci_low: np.ndarray
    ci_high: np.ndarray
    rank: np.ndarray
    tied_with_best: np.ndarray
    pairs: comparisons.Pairwise


def summarize(estimates: Estimates, confidence: float) -> Summary:
    low, high = bootstrap.interval(estimates, confidence)
    pairs = comparisons.pairwise(estimates, confidence)
    return Summary(low, high, comparisons.competition_ranks(estimates.point),
                   comparisons.tied_with_best(estimates, 1 - confidence), pairs)


def without_significance(summary: Summary) -> Summary:
    """The summary of a task with too few examples (module docstring): p = 1 for every pair, every model tied."""
    pairs = summary.pairs
    return replace(summary, tied_with_best=np.ones_like(summary.tied_with_best),
                   pairs=comparisons.Pairwise(pairs.models, pairs.diff, pairs.ci_low, pairs.ci_high,
                                              np.ones_like(pairs.p_value)))


def write_statistics(con: duckdb.DuckDBPyConnection, results: Sequence[TaskResult], confidence: float) -> None:
    _insert(con, "train_size_scores", pd.DataFrame(train_size_rows(results, confidence)))
    results = [r for r in results if r.headline]
    task_rows, pair_frames = [], []
    for result in results:
        est, summary = result.estimates, summarize(result.estimates, confidence)
        if result.n < MIN_EXAMPLES:
            summary = without_significance(summary)
        for j, model in enumerate(est.models):
            task_rows.append({"model": model, "task": result.task, "metric": result.metric, "value": est.point[j],
                              "ci_low": summary.ci_low[j], "ci_high": summary.ci_high[j], "n": result.n,
                              "rank": int(summary.rank[j]), "tied_with_best": bool(summary.tied_with_best[j])})
        pair_frames.append(_pair_rows(result.task, summary.pairs))
    overall_rows, overall_pairs = overall_scores(results, confidence)
    if overall_pairs is not None:
        pair_frames.append(_pair_rows(OVERALL, overall_pairs))
    _insert(con, "task_scores", pd.DataFrame(task_rows))
    _insert(con, "overall_scores", pd.DataFrame(overall_rows))
    _insert(con, "pairwise", pd.concat(pair_frames, ignore_index=True))


def train_size_rows(results: Sequence[TaskResult], confidence: float) -> list[dict[str, Any]]:
    """Rows of train_size_scores: every training size of every task, with its interval (`bootstrap.interval`)."""
    rows = []
    for result in results:
        low, high = bootstrap.interval(result.estimates, confidence)
        for j, model in enumerate(result.estimates.models):
            rows.append({"model": model, "task": result.task, "train_size": result.train_size,
                         "n_train": result.n_train[j] if result.n_train else None, "headline": result.headline,
                         "metric": result.metric, "value": result.estimates.point[j], "ci_low": low[j],
                         "ci_high": high[j], "n": result.n})
    return rows


def overall_scores(
    results: Sequence[TaskResult], confidence: float
) -> tuple[list[dict[str, Any]], comparisons.Pairwise | None]:
    """Rows of overall_scores, and the overall comparisons among the models that have every benchmark task of the
    run. The mean is partial when the run lacks some of BioBench's benchmark tasks; `missing_tasks` names them (and
    any benchmark task of the run that the model lacks, which leaves it without a score)."""
    benchmark = [r for r in results if r.benchmark]
    run_tasks = [r.task for r in benchmark]
    not_run = [t for t in BENCHMARK_TASKS if t not in run_tasks]
    models = sorted({m for r in results for m in r.estimates.models})
    lacking = {m: [r.task for r in benchmark if m not in r.estimates.models] for m in models}
    complete = [m for m in models if benchmark and not lacking[m]]
    rows = {m: {"model": m, "value": None, "ci_low": None, "ci_high": None,
                "n_tasks": len(run_tasks) - len(lacking[m]), "tasks": [t for t in run_tasks if t not in lacking[m]],
                "missing_tasks": sorted(lacking[m] + not_run), "partial": bool(not_run), "rank": None,
                "tied_with_best": None, "note": None} for m in models}
    for m in models:
        if not benchmark:
            rows[m]["note"] = "no overall score: no benchmark task in this run"
        elif lacking[m]:
            rows[m]["note"] = f"no overall score: missing benchmark task(s) {', '.join(lacking[m])}"
        elif not_run:
            ran = len(BENCHMARK_TASKS) - len(not_run)
            rows[m]["note"] = (f"partial mean over {ran} of BioBench's {len(BENCHMARK_TASKS)} benchmark tasks; "
                               f"not run: {', '.join(not_run)}")
    if not complete:
        return list(rows.values()), None
    overall = bootstrap.mean_over_tasks([r.estimates for r in benchmark], complete)
    summary = summarize(overall, confidence)
    for j, m in enumerate(complete):
        rows[m].update(value=overall.point[j], ci_low=summary.ci_low[j], ci_high=summary.ci_high[j],
                       rank=int(summary.rank[j]), tied_with_best=bool(summary.tied_with_best[j]))
    return list(rows.values()), summary.pairs


def _pair_rows(task: str, pairs: comparisons.Pairwise) -> pd.DataFrame:
    a, b = np.nonzero(~np.eye(len(pairs.models), dtype=bool))
    names = np.array(pairs.models, dtype=object)
    return pd.DataFrame({"task": task, "model_a": names[a], "model_b": names[b], "diff": pairs.diff[a, b],
                         "ci_low": pairs.ci_low[a, b], "ci_high": pairs.ci_high[a, b], "p_value": pairs.p_value[a, b]})


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    con.register("frame", frame)
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM frame")
    con.unregister("frame")


def warning_rows(notes: Sequence[InputWarning]) -> list[dict[str, Any]]:
    return [{"task": n.task, "model": n.model, "train_size": n.train_size, "predictions_path": n.path,
             "message": n.message} for n in notes]


def warnings_setting(notes: Sequence[InputWarning]) -> str:
    """The `warnings` setting: one line per task and reason (the report shows every setting)."""
    if not notes:
        return "none"
    reasons = dict.fromkeys(f"task {n.task!r}: {n.reason}" for n in notes)
    return f"{len(notes)} (table warnings, one row per prediction file): " + "; ".join(reasons)


def write_settings(con: duckdb.DuckDBPyConnection, *, n_resamples: int, confidence: float, seed: int,
                   notes: Sequence[InputWarning] = ()) -> None:
    settings = {
        "n_resamples": str(n_resamples),
        "confidence": repr(confidence),
        "seed": str(seed),
        "interval": "centered: percentile interval of the resamples shifted by mean(resamples) - point, numpy.quantile "
                    "linear interpolation; covers the expected value on test sets of this size (biobench.stats.bootstrap)",
        "resampling": "paired per task: default_rng([seed, sha256(task)[:8] little-endian]).integers(0, n, n) "
                      "per resample, rows in example_id order (biobench.stats.bootstrap)",
        "p_value": "min(1, 2 (1 + min(#{d* <= 0}, #{d* >= 0})) / (B + 1)) (biobench.stats.comparisons)",
        "tied_with_best": "not rejected by the step-down max test of 'j is a best model' at 1 - confidence: "
                          "T_j = s_max - s_j against max_i e*_i - min_(remaining) e*_j, e* = s* - s "
                          "(biobench.stats.comparisons)",
        "overall": "unweighted mean of the headline scores of the run's benchmark tasks, resampled task by task; "
                   "partial when the run lacks some of BioBench's benchmark tasks: " + ", ".join(BENCHMARK_TASKS),
        "headline_train_size": "each task's largest n_train setting (0 = every training row)",
        "min_examples": f"{MIN_EXAMPLES}: a task with fewer evaluation examples is scored but claims no significance: "
                        "its pairwise p-values are 1 and every model is tied with the best (biobench.aggregate)",
        "warnings": warnings_setting(notes),
        "biobench_version": importlib.metadata.version("biobench"),
        "schema_version": str(SCHEMA_VERSION),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    con.executemany("INSERT INTO settings VALUES (?, ?)", list(settings.items()))


# ------------------------------------------------------------------------------------------------------ exports

_LEADERBOARD_QUERY = """
SELECT r.model, r.model_key, r.checkpoint, s.task, r.dataset_key AS dataset, s.metric, s.value, s.ci_low, s.ci_high,
       $confidence::DOUBLE AS confidence, s.n, r.git_commit, strftime(r.created_at, '%Y-%m-%dT%H:%M:%SZ') AS date
FROM task_scores s JOIN runs r ON r.model = s.model AND r.task = s.task AND r.headline
ORDER BY s.task, s.rank, s.model
"""


def write_leaderboard(leaderboard: pd.DataFrame, exports_dir: Path) -> None:
    """exports_dir/leaderboard.json (a list of records) and leaderboard.csv (the same records)."""
    records = [{column: _plain(value) for column, value in zip(LEADERBOARD_COLUMNS, row)}
               for row in leaderboard[list(LEADERBOARD_COLUMNS)].itertuples(index=False, name=None)]
    atomic.write_text(exports_dir / "leaderboard.json", json.dumps(records, indent=1) + "\n")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=LEADERBOARD_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    atomic.write_text(exports_dir / "leaderboard.csv", text.getvalue())


def _plain(value: Any) -> Any:
    """numpy/pandas scalars and missing values -> JSON-native values."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value
