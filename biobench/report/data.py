"""Read the results database (biobench/results_schema.sql) into the rows the report shows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from biobench.errors import BiobenchError
from biobench.precision import describe_dtype
from biobench.tasks.base import BENCHMARK_TASKS, PRIOR_WORK_TASKS

OVERALL = "__overall__"
TABLES = ("runs", "predictions", "task_scores", "train_size_scores", "overall_scores", "pairwise", "settings")
# Task names (lower case, punctuation removed) that mean ImageNet-1K.
IMAGENET_NAMES = frozenset({"imagenet", "imagenet1k", "in1k", "ilsvrc2012"})
DEFAULT_CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Run:
    model: str
    task: str
    metric: str
    benchmark: bool
    n_train: int | None
    n_test: int | None
    embed_device: str | None
    embed_images_per_s: float | None
    embed_seconds: float | None
    fit_seconds: float | None
    git_commit: str | None
    host: str | None
    created_at: dt.datetime | None
    embed_dtype: str | None = None  # the precision the embedding ran at
    embed_dtype_requested: str | None = None  # the model's dtype
    embed_dtype_reason: str | None = None


@dataclasses.dataclass(frozen=True)
class Score:
    model: str
    task: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    rank: int | None
    tied_with_best: bool


@dataclasses.dataclass(frozen=True)
class TrainSizeScore:
    model: str
    task: str
    train_size: int  # the n_train setting; 0 = every training row
    n_train: int | None  # training rows the fit used
    headline: bool
    value: float
    ci_low: float
    ci_high: float


@dataclasses.dataclass(frozen=True)
class Overall:
    model: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n_tasks: int
    tasks: tuple[str, ...] | None
    missing_tasks: tuple[str, ...] | None
    partial: bool
    rank: int | None
    tied_with_best: bool | None
    note: str | None


@dataclasses.dataclass(frozen=True)
class Pair:
    task: str
    model_a: str
    model_b: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclasses.dataclass(frozen=True)
class Results:
    runs: tuple[Run, ...]
    scores: tuple[Score, ...]
    overall: tuple[Overall, ...]
    pairs: tuple[Pair, ...]
    settings: dict[str, str]
    models: tuple[str, ...]  # display order: overall rank, then models without an overall score
    tasks: tuple[str, ...]  # benchmark tasks first, then prior work, then the others, each alphabetical
    train_sizes: tuple[TrainSizeScore, ...] = ()

    def run(self, model: str, task: str) -> Run | None:
        return next((r for r in self.runs if r.model == model and r.task == task), None)

    def score(self, model: str, task: str) -> Score | None:
        return next((s for s in self.scores if s.model == model and s.task == task), None)

    def overall_of(self, model: str) -> Overall | None:
        return next((o for o in self.overall if o.model == model), None)

    def is_benchmark(self, task: str) -> bool:
        return any(r.benchmark for r in self.runs if r.task == task)

    def metric(self, task: str) -> str:
        return next((r.metric for r in self.runs if r.task == task), "score")

    def n_test(self, task: str) -> int | None:
        return next((r.n_test for r in self.runs if r.task == task and r.n_test is not None), None)

    @staticmethod
    def is_prior_work(task: str) -> bool:
        return task in PRIOR_WORK_TASKS

    @property
    def benchmark_tasks(self) -> tuple[str, ...]:
        return tuple(t for t in self.tasks if self.is_benchmark(t))

    @property
    def missing_benchmark_tasks(self) -> tuple[str, ...]:
        """BioBench's benchmark tasks that this run lacks: the overall score is a partial mean without them."""
        return tuple(t for t in BENCHMARK_TASKS if t not in self.benchmark_tasks)

    @property
    def imagenet_task(self) -> str | None:
        return next((t for t in self.tasks if re.sub(r"[^a-z0-9]", "", t.lower()) in IMAGENET_NAMES), None)

    @property
    def confidence(self) -> float:
        """The intervals' confidence level, from the settings table (the design's default if it is absent)."""
        return _float_or_none(self.settings.get("confidence")) or DEFAULT_CONFIDENCE

    @property
    def confidence_label(self) -> str:
        return f"{self.confidence * 100:g}%"

    @property
    def alpha(self) -> float:
        return round(1 - self.confidence, 10)

    @property
    def format(self) -> ScoreFormat:
        bounds = [x for s in self.scores for x in (s.value, s.ci_low, s.ci_high) if x is not None]
        bounds += [x for o in self.overall for x in (o.value, o.ci_low, o.ci_high) if x is not None]
        return PERCENT if all(0.0 <= x <= 1.0 for x in bounds) else RAW


@dataclasses.dataclass(frozen=True)
class ScoreFormat:
    """How scores are shown: fractions in [0, 1] as percentages with one decimal, anything else as is."""

    factor: float
    digits: int
    unit: str
    diff_unit: str

    def value(self, x: float | None) -> str:
        return "—" if x is None else f"{x * self.factor:.{self.digits}f}"

    def interval(self, lo: float | None, hi: float | None) -> str:
        return "" if lo is None or hi is None else f"[{self.value(lo)}, {self.value(hi)}]"

    def diff(self, x: float) -> str:
        return f"{x * self.factor:+.{self.digits}f}".replace("-", "\u2212")

    def axis(self, label: str) -> str:
        return f"{label} ({self.unit})" if self.unit else label


PERCENT = ScoreFormat(factor=100.0, digits=1, unit="%", diff_unit="percentage points")
RAW = ScoreFormat(factor=1.0, digits=3, unit="", diff_unit="difference")


def connect(db_path: Path) -> duckdb.DuckDBPyConnection:
    """Open the results database read-only, checking that it has the tables the report reads."""
    if not Path(db_path).is_file():
        raise BiobenchError(
            f"results database {db_path} does not exist; run the workflow's aggregate step first "
            f"(e.g. `snakemake --cores 1 {db_path}`)."
        )
    con = duckdb.connect(str(db_path), read_only=True)
    present = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    missing = [t for t in TABLES if t not in present]
    if missing:
        con.close()
        raise BiobenchError(
            f"results database {db_path} lacks table(s) {', '.join(missing)} of biobench/results_schema.sql; "
            "it was written by another biobench version: delete it and re-run the aggregate step."
        )
    return con


def load_results(con: duckdb.DuckDBPyConnection) -> Results:
    runs = _rows(con, Run, "runs", "model, task", where="headline")
    scores = _rows(con, Score, "task_scores", "task, rank, model")
    overall = _rows(con, Overall, "overall_scores", "rank NULLS LAST, model")
    pairs = _rows(con, Pair, "pairwise", "task, model_a, model_b")
    train_sizes = _rows(con, TrainSizeScore, "train_size_scores", "task, model, train_size = 0, train_size")
    settings = dict(con.execute("SELECT key, value FROM settings ORDER BY key").fetchall())
    if not scores:
        raise BiobenchError(
            "the results database has no task scores, so there is nothing to report; "
            "check that config.yaml lists at least one model and one task and re-run the workflow."
        )
    benchmark = {r.task for r in runs if r.benchmark}
    tasks = sorted({s.task for s in scores}, key=lambda t: (t not in benchmark, t not in PRIOR_WORK_TASKS, t))
    models = _model_order(overall, scores)
    return Results(tuple(runs), tuple(scores), tuple(overall), tuple(pairs), settings, models, tuple(tasks),
                   tuple(train_sizes))


def _model_order(overall: Sequence[Overall], scores: Sequence[Score]) -> tuple[str, ...]:
    ranked = [o.model for o in overall if o.rank is not None]
    mean_rank: dict[str, list[int]] = {}
    for s in scores:
        mean_rank.setdefault(s.model, []).append(s.rank if s.rank is not None else 10**6)
    rest = sorted(set(mean_rank) - set(ranked), key=lambda m: (sum(mean_rank[m]) / len(mean_rank[m]), m))
    return tuple(ranked + rest)


T = TypeVar("T")


def _rows(con: duckdb.DuckDBPyConnection, cls: type[T], table: str, order: str, where: str = "true") -> list[T]:
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    result = con.execute(f"SELECT {', '.join(fields)} FROM {table} WHERE {where} ORDER BY {order}").fetchall()
    return [cls(**{k: _clean(v) for k, v in zip(fields, row)}) for row in result]


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, list):
        return tuple(v)
    return v


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class ComputeTotal:
    """One model's embedding cost over all its tasks, from the embed provenance."""

    model: str
    images: float  # images/s × seconds, summed over runs
    embed_seconds: float
    fit_seconds: float | None
    devices: tuple[str, ...]
    precisions: tuple[str, ...] = ()  # what ran, with the dtype asked for where it differs (precision.describe_dtype)

    @property
    def throughput(self) -> float:
        return self.images / self.embed_seconds if self.embed_seconds > 0 else float("nan")


def timed_runs(r: Results) -> list[Run]:
    """Runs that recorded both embedding seconds and throughput."""
    return [run for run in r.runs if run.embed_seconds is not None and run.embed_images_per_s is not None]


def compute_totals(r: Results) -> list[ComputeTotal]:
    totals = []
    for model in r.models:
        runs = [run for run in timed_runs(r) if run.model == model]
        if runs:
            fits = [run.fit_seconds for run in runs if run.fit_seconds is not None]
            totals.append(
                ComputeTotal(
                    model=model,
                    images=sum(run.embed_images_per_s * run.embed_seconds for run in runs),
                    embed_seconds=sum(run.embed_seconds for run in runs),
                    fit_seconds=sum(fits) if fits else None,
                    devices=tuple(sorted({run.embed_device or "unknown device" for run in runs})),
                    precisions=tuple(sorted({describe_dtype(run.embed_dtype, run.embed_dtype_requested,
                                                            run.embed_dtype_reason) for run in runs})),
                )
            )
    return totals
