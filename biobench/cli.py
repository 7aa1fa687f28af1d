"""`biobench`: answers the everyday questions about results/biobench.duckdb without SQL.

  biobench scores [--task T] [--db PATH]
      overall scores, then each task's scores, with intervals, ranks and ties with the best
  biobench compare MODEL_A MODEL_B [--task T] [--examples N] [--db PATH]
      paired difference A - B per task and overall, its interval and p-value, and the test examples where exactly
      one of the two models is right
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import duckdb

from biobench import artifacts
from biobench.aggregate import OVERALL, SCHEMA_VERSION
from biobench.errors import BiobenchError
from biobench.tasks.base import BENCHMARK_TASKS, PRIOR_WORK_TASKS

DEFAULT_DB = Path("results/biobench.duckdb")
REBUILD = "re-run `snakemake --cores 8` to rebuild it (with `--forcerun aggregate` if snakemake has nothing to do)"
SETTINGS = ("n_resamples", "confidence")
TIE_MARK = "*"


class UsageError(BiobenchError):
    """A question the database cannot answer as asked."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with _connect(args.db) as con:
            try:
                text = args.command(con, args)
            except duckdb.Error as error:  # a table or column this biobench reads is missing or of another kind
                raise UsageError(f"{args.db} does not hold the tables this biobench reads "
                                 f"({artifacts.first_line(error)}); {REBUILD}") from None
    except BiobenchError as error:
        print(f"biobench: {error}", file=sys.stderr)
        return 2
    print(text)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biobench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    scores = commands.add_parser("scores", help="scores per task and overall, with intervals and ties")
    scores.set_defaults(command=scores_text)
    compare = commands.add_parser("compare", help="paired comparison of two models")
    compare.add_argument("model_a", metavar="MODEL_A")
    compare.add_argument("model_b", metavar="MODEL_B")
    compare.add_argument("--examples", type=int, default=10, metavar="N",
                         help="examples to list per task where exactly one model is right (default 10)")
    compare.set_defaults(command=compare_text)
    for sub in (scores, compare):
        sub.add_argument("--task", metavar="T", help="only this task")
        sub.add_argument("--db", type=Path, default=DEFAULT_DB, metavar="PATH", help=f"default {DEFAULT_DB}")
    return parser


def _connect(db: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a results database that this biobench can read."""
    if not db.is_file():
        raise UsageError(f"no results database at {db}: run `snakemake --cores 8` first, or pass --db PATH")
    if problem := artifacts.database_problem(db):
        raise UsageError(f"{db} is not a DuckDB database ({problem}): pass --db the results database that "
                         f"`snakemake` writes, or delete {db} and run `snakemake --cores 8` to rebuild it")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as error:
        raise UsageError(f"{db} cannot be opened ({artifacts.first_line(error)}); if another program holds it, "
                         "close that; if it is damaged, delete it and run `snakemake --cores 8` to rebuild it"
                         ) from None
    try:
        _check_schema(con, db)
    except duckdb.Error as error:
        con.close()
        raise UsageError(f"{db} cannot be read as biobench's results ({artifacts.first_line(error)}); delete it "
                         "and run `snakemake --cores 8` to rebuild it") from None
    except BaseException:
        con.close()
        raise
    return con


def _check_schema(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    has_settings = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'settings'").fetchall()[0][0]
    if not has_settings:
        raise UsageError(f"{db} is a DuckDB database but not biobench's results (it has no settings table): pass "
                         f"--db the results database that `snakemake` writes, or {REBUILD}")
    settings = _settings(con)
    version = settings.get("schema_version", "0")
    if not version.isdigit():
        raise UsageError(f"{db} records schema_version {version!r}, which biobench does not write; {REBUILD}")
    if int(version) < SCHEMA_VERSION:
        written = "without a schema version" if version == "0" else f"with results schema {version}"
        raise UsageError(f"{db} was written by an older biobench ({written}; this biobench reads schema "
                         f"{SCHEMA_VERSION}); {REBUILD}")
    if int(version) > SCHEMA_VERSION:
        raise UsageError(f"{db} was written by a newer biobench (results schema {version}; this biobench reads "
                         f"schema {SCHEMA_VERSION}): upgrade biobench, or {REBUILD} with this one")
    lacking = [key for key in SETTINGS if key not in settings]
    if lacking:
        raise UsageError(f"{db} lacks the settings {', '.join(lacking)}; {REBUILD}")


# ------------------------------------------------------------------------------------------------------ scores


def scores_text(con: duckdb.DuckDBPyConnection, args: argparse.Namespace) -> str:
    settings = _settings(con)
    tasks = _tasks(con)
    if args.task is not None:
        _check_name("task", args.task, [t for t, *_ in tasks])
    header = (f"{_percent(settings['confidence'])} intervals (percentile, centred on the score) from "
              f"{settings['n_resamples']} paired bootstrap resamples; {TIE_MARK} = tied with the best (not rejected "
              "as a best model by the step-down max test).")
    blocks = [header]
    if args.task is None:
        blocks.append(_overall_block(con, [t for t, _, _, benchmark in tasks if benchmark]))
    for task, metric, n, benchmark in tasks:
        if args.task in (None, task):
            rows = con.execute("SELECT rank, model, tied_with_best, value, ci_low, ci_high FROM task_scores "
                               "WHERE task = $task ORDER BY rank, model", {"task": task}).fetchall()
            role = "" if benchmark else " (prior work, not in the overall score)" if task in PRIOR_WORK_TASKS \
                else " (not in the overall score)"
            blocks.append(f"{task}: {metric}, n = {n}{role}" + "\n" + _table(
                ["rank", "model", "score", "interval"],
                [[r, _tie(model, tied), _num(v), _interval(lo, hi)] for r, model, tied, v, lo, hi in rows],
            ))
            blocks += _train_size_block(con, task)
    return "\n\n".join(blocks)


def _train_size_block(con: duckdb.DuckDBPyConnection, task: str) -> list[str]:
    """The task's scores at every training size, when it was fitted at more than one."""
    rows = con.execute("SELECT model, train_size, n_train, value, ci_low, ci_high FROM train_size_scores "
                       "WHERE task = $task ORDER BY model, train_size = 0, train_size", {"task": task}).fetchall()
    if len({size for _, size, *_ in rows}) < 2:
        return []
    return [f"{task} by training size (n_train; the largest is the score above)\n" + _table(
        ["model", "n_train", "rows", "score", "interval"],
        [[model, "all" if size == 0 else size, used, _num(v), _interval(lo, hi)]
         for model, size, used, v, lo, hi in rows],
    )]


def _overall_block(con: duckdb.DuckDBPyConnection, benchmark_tasks: list[str]) -> str:
    rows = con.execute("SELECT rank, model, tied_with_best, value, ci_low, ci_high, note FROM overall_scores "
                       "ORDER BY rank NULLS LAST, model").fetchall()
    missing = [t for t in BENCHMARK_TASKS if t not in benchmark_tasks]
    total = len(benchmark_tasks) + len(missing)
    if not benchmark_tasks:
        title = (f"overall: none of BioBench's {total} benchmark tasks ({', '.join(missing)}) is in this run, so "
                 "there is no overall score")
    elif missing:
        title = (f"overall: PARTIAL mean over {len(benchmark_tasks)} of BioBench's {total} benchmark tasks "
                 f"({', '.join(benchmark_tasks)}); missing: {', '.join(missing)}")
    else:
        title = f"overall: unweighted mean over the {total} benchmark tasks ({', '.join(benchmark_tasks)})"
    return title + "\n" + _table(
        ["rank", "model", "score", "interval"],
        [[rank, _tie(model, tied), _num(v), _interval(lo, hi)] if v is not None else ["-", model, "-", note]
         for rank, model, tied, v, lo, hi, note in rows],
    )


# ----------------------------------------------------------------------------------------------------- compare


def compare_text(con: duckdb.DuckDBPyConnection, args: argparse.Namespace) -> str:
    a, b = args.model_a, args.model_b
    models = [m for (m,) in con.execute("SELECT DISTINCT model FROM runs ORDER BY model").fetchall()]
    for model in (a, b):
        _check_name("model", model, models)
    if a == b:
        raise UsageError(f"compare needs two different models; both are {a!r}")
    tasks = [t for t, *_ in _tasks(con)]
    if args.task is not None:
        _check_name("task", args.task, tasks)
    settings = _settings(con)
    wanted = [args.task] if args.task is not None else [*tasks, OVERALL]
    rows = con.execute(
        """SELECT p.task, coalesce(s.metric, 'mean of benchmark tasks'), coalesce(sa.value, oa.value),
                  coalesce(sb.value, ob.value), p.diff, p.ci_low, p.ci_high, p.p_value
        FROM pairwise p
        LEFT JOIN task_scores sa ON sa.task = p.task AND sa.model = p.model_a
        LEFT JOIN task_scores sb ON sb.task = p.task AND sb.model = p.model_b
        LEFT JOIN (SELECT DISTINCT task, metric FROM task_scores) s ON s.task = p.task
        LEFT JOIN overall_scores oa ON p.task = $overall AND oa.model = p.model_a
        LEFT JOIN overall_scores ob ON p.task = $overall AND ob.model = p.model_b
        WHERE p.model_a = $a AND p.model_b = $b AND list_contains($wanted, p.task)""",
        {"a": a, "b": b, "wanted": wanted, "overall": OVERALL},
    ).fetchall()
    by_task = {row[0]: row for row in rows}
    floor = 2 / (int(settings["n_resamples"]) + 1)  # the smallest p-value the resamples can show
    table = [[_task_name(task), metric, _num(va), _num(vb), _num(d, signed=True), _interval(lo, hi, signed=True),
              _p(p, floor)]
             for task, metric, va, vb, d, lo, hi, p in (by_task[t] for t in wanted if t in by_task)]
    if not table:
        raise UsageError(f"{a!r} and {b!r} have no task in common" +
                         (f" (or one lacks {args.task!r})" if args.task else ""))
    blocks = [
        f"{a} vs {b}: difference = {a} - {b}, paired over the same {settings['n_resamples']} bootstrap resamples; "
        f"{_percent(settings['confidence'])} percentile interval; two-sided bootstrap p-value (<= marks the smallest "
        "p-value these resamples can show).",
        _table(["task", "metric", a, b, "difference", "interval", "p"], table),
    ]
    missing = [t for t in wanted if t not in by_task]
    if missing:
        blocks.append("not compared: " + "; ".join(_why_missing(con, t, a, b) for t in missing))
    if args.examples > 0:
        blocks += [_disagreements(con, task, a, b, args.examples)
                   for task in wanted if task in by_task and task != OVERALL]
    return "\n\n".join(blocks)


def _why_missing(con: duckdb.DuckDBPyConnection, task: str, a: str, b: str) -> str:
    if task != OVERALL:
        have = {m for (m,) in con.execute("SELECT model FROM runs WHERE task = $t", {"t": task}).fetchall()}
        return f"{task} ({' and '.join(m for m in (a, b) if m not in have)} not evaluated)"
    notes = con.execute("SELECT model, note FROM overall_scores WHERE model IN ($a, $b) AND value IS NULL "
                        "AND note IS NOT NULL ORDER BY model", {"a": a, "b": b}).fetchall()
    return "overall (" + "; ".join(f"{model}: {note}" for model, note in notes) + ")"


def _disagreements(con: duckdb.DuckDBPyConnection, task: str, a: str, b: str, limit: int) -> str:
    rows = con.execute(
        """SELECT e.example_id, lt.label, la.label, lb.label, ra.y_pred = ra.y_true AS a_right, e.path
        FROM prediction_rows ra
        JOIN prediction_rows rb ON rb.task = ra.task AND rb.example_index = ra.example_index AND rb.model = $b
                                AND rb.train_size = ra.train_size
        JOIN runs u ON u.model = ra.model AND u.task = ra.task AND u.train_size = ra.train_size AND u.headline
        JOIN examples e ON e.task = ra.task AND e.example_index = ra.example_index
        LEFT JOIN labels lt ON lt.task = ra.task AND lt.y = ra.y_true
        LEFT JOIN labels la ON la.task = ra.task AND la.y = ra.y_pred
        LEFT JOIN labels lb ON lb.task = ra.task AND lb.y = rb.y_pred
        WHERE ra.task = $task AND ra.model = $a AND (ra.y_pred = ra.y_true) <> (rb.y_pred = rb.y_true)
        ORDER BY e.example_index""",
        {"task": task, "a": a, "b": b},
    ).fetchall()
    a_only = sum(1 for row in rows if row[4])
    title = (f"{task}: {len(rows)} examples where exactly one model is right ({a} only: {a_only}, "
             f"{b} only: {len(rows) - a_only})" + (f"; the first {limit}:" if len(rows) > limit else ":"))
    if not rows:
        return title
    return title + "\n" + _table(
        ["example", "true", a, b, "right", "path"],
        [[ex, true, pa, pb, a if right else b, path or "-"] for ex, true, pa, pb, right, path in rows[:limit]],
    )


# ----------------------------------------------------------------------------------------------------- helpers


def _settings(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("SELECT key, value FROM settings").fetchall())


def _tasks(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int, bool]]:
    """(task, metric, n, benchmark) for every task, by name."""
    return con.execute("SELECT s.task, any_value(s.metric), any_value(s.n), bool_or(r.benchmark) FROM task_scores s "
                       "JOIN runs r ON r.model = s.model AND r.task = s.task AND r.headline "
                       "GROUP BY s.task ORDER BY s.task").fetchall()


def _task_name(task: str) -> str:
    return "overall" if task == OVERALL else task


def _check_name(kind: str, name: str, known: list[str]) -> None:
    if name not in known:
        raise UsageError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(known) or 'none'}")


def _tie(model: str, tied: bool | None) -> str:
    return f"{model} {TIE_MARK}" if tied else model


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _interval(low: float, high: float, signed: bool = False) -> str:
    return f"[{_num(low, signed)}, {_num(high, signed)}]"


def _p(p: float, floor: float) -> str:
    text = f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"
    return f"<={text}" if p <= floor * (1 + 1e-9) else text


def _percent(confidence: str) -> str:
    return f"{float(confidence) * 100:g}%"


def _table(header: list[str], rows: list[list[object]]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(_looks_numeric(row[i]) for row in cells[1:]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)).rstrip()
             for row in cells]
    return "\n".join(lines)


def _looks_numeric(text: str) -> bool:
    return text.lstrip("+-").replace(".", "", 1).replace("e-", "", 1).isdigit() or text == "-"


if __name__ == "__main__":
    sys.exit(main())
