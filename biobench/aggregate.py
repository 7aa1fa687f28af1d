"""The aggregate step: per-example prediction parquets -> results/biobench.duckdb and the leaderboard exports.

DuckDB loads the predictions (and each task's manifest, for example ids, image paths and sub-task groups) into the
tables of `biobench/results_schema.sql`; numpy then computes every number from the stored rows (`biobench.stats`)
and the results go into the same database. It is built in a temporary file beside `db_path` and renamed onto it,
so readers see the old results or the new ones, never a mixture.

Rows of a task are put in ascending `example_id` order (the `example_index` column) before resampling; the models of
a task must predict the same examples, once each, with the same true labels, or aggregation stops with an error.

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
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from biobench import atomic
from biobench.errors import BiobenchError
from biobench.stats import bootstrap, comparisons
from biobench.stats.bootstrap import Estimates
from biobench.stats.metrics import METRICS, Sample
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


class PredictionsError(BiobenchError):
    """Prediction files that cannot be aggregated together."""


@dataclass(frozen=True)
class PredictionFile:
    path: Path
    meta: dict[str, Any]

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
) -> None:
    if n_resamples < 1:
        raise BiobenchError(f"n_resamples must be at least 1, got {n_resamples}; fix it in config.yaml")
    if not 0 < confidence < 1:
        raise BiobenchError(f"confidence must be strictly between 0 and 1, got {confidence}; fix it in config.yaml")
    if seed < 0:
        raise BiobenchError(f"the bootstrap seed must be a non-negative integer, got {seed}; fix it in config.yaml")
    if not prediction_paths:
        raise PredictionsError("no prediction files to aggregate: list at least one model and one task in config.yaml")
    with duckdb.connect() as reader:
        files = read_prediction_files(reader, [Path(p) for p in prediction_paths])
    by_task = group_by_task(files)
    with _new_database(Path(db_path)) as con:
        con.execute(importlib.resources.files("biobench").joinpath("results_schema.sql").read_text())
        results = score_tasks(con, by_task, seed=seed, n_resamples=n_resamples)
        insert_runs(con, files, {r.task: r.n for r in results})
        write_statistics(con, results, confidence)
        write_settings(con, n_resamples=n_resamples, confidence=confidence, seed=seed)
        leaderboard = con.execute(_LEADERBOARD_QUERY, {"confidence": confidence}).df()
    if exports_dir is not None:
        write_leaderboard(leaderboard, Path(exports_dir))


# ---------------------------------------------------------------------------------------------- reading and checks


def read_prediction_files(con: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> list[PredictionFile]:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise PredictionsError(f"prediction files not found: {', '.join(missing)}; {RERUN} to make them")
    names = [str(p) for p in paths]
    columns: dict[str, set[str]] = defaultdict(set)
    for name, column in con.execute("SELECT file_name, name FROM parquet_schema($files)", {"files": names}).fetchall():
        columns[name].add(column)
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
        files.append(PredictionFile(path, meta))
    return files


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
    manifest = Path(meta["manifest"])
    if not manifest.is_file():
        raise PredictionsError(f"task {task!r}: the manifest {manifest} named by {task_files[0].path} does not "
                               f"exist; {RERUN} to rebuild it")
    relation = con.read_parquet(str(manifest))
    types = {name: str(kind) for name, kind in zip(relation.columns, relation.types)}
    lacking = [c for c in ("example_id", "split", "path") if c not in types]
    if lacking:
        raise PredictionsError(f"task {task!r}: the manifest {manifest} lacks the columns {', '.join(lacking)}; "
                               f"{RERUN} to rebuild it")
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
                n_resamples: int) -> list[TaskResult]:
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
                                                 n_resamples=n_resamples, headline=size == headline))
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
               n_resamples: int, headline: bool = True) -> TaskResult:
    """One training size of a task: the files' models on the same examples, resampled as every size of the task."""
    metric = task_files[0].meta["metric"]
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
    low, high = bootstrap.percentile_interval(estimates.resamples, confidence)
    pairs = comparisons.pairwise(estimates, confidence)
    return Summary(low, high, comparisons.competition_ranks(estimates.point),
                   comparisons.tied_with_best(estimates.point, pairs.p_value, 1 - confidence), pairs)


def write_statistics(con: duckdb.DuckDBPyConnection, results: Sequence[TaskResult], confidence: float) -> None:
    _insert(con, "train_size_scores", pd.DataFrame(train_size_rows(results, confidence)))
    results = [r for r in results if r.headline]
    task_rows, pair_frames = [], []
    for result in results:
        est, summary = result.estimates, summarize(result.estimates, confidence)
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
    """Rows of train_size_scores: every training size of every task, with its percentile interval."""
    rows = []
    for result in results:
        low, high = bootstrap.percentile_interval(result.estimates.resamples, confidence)
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


def write_settings(con: duckdb.DuckDBPyConnection, *, n_resamples: int, confidence: float, seed: int) -> None:
    settings = {
        "n_resamples": str(n_resamples),
        "confidence": repr(confidence),
        "seed": str(seed),
        "interval": "percentile, numpy.quantile linear interpolation (biobench.stats.bootstrap)",
        "resampling": "paired per task: default_rng([seed, sha256(task)[:8] little-endian]).integers(0, n, n) "
                      "per resample, rows in example_id order (biobench.stats.bootstrap)",
        "p_value": "min(1, 2 (1 + min(#{d* <= 0}, #{d* >= 0})) / (B + 1)) (biobench.stats.comparisons)",
        "overall": "unweighted mean of the headline scores of the run's benchmark tasks, resampled task by task; "
                   "partial when the run lacks some of BioBench's benchmark tasks: " + ", ".join(BENCHMARK_TASKS),
        "headline_train_size": "each task's largest n_train setting (0 = every training row)",
        "biobench_version": importlib.metadata.version("biobench"),
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
