"""HTML tables: the leaderboard (overall and per task, intervals, ties with the best) and the compute table."""

from __future__ import annotations

from html import escape

from biobench.report.data import Results, ScoreFormat, compute_totals


def leaderboard_html(r: Results) -> str:
    fmt = r.format
    conf = r.confidence_label
    head = "".join(_task_header(r, t) for t in r.tasks)
    body = "".join(_row(r, model, fmt) for model in r.models)
    return f"""
<div class="table-scroll">
<table class="leaderboard">
  <thead><tr><th class="rank">#</th><th class="model">Model</th>
    <th class="overall">{_overall_header(r)}</th>{head}</tr></thead>
  <tbody>{body}</tbody>
</table>
</div>
{_partial_note(r)}<p class="legend"><span class="swatch best"></span> best or tied with the best (not significantly worse,
step-down max test over all models) · <b>★</b> best point estimate · scores in
{escape(fmt.unit or "metric units")} with {conf} paired-bootstrap interval below · — no score.</p>
"""


def _overall_header(r: Results) -> str:
    k, total = len(r.benchmark_tasks), len(r.benchmark_tasks) + len(r.missing_benchmark_tasks)
    if not r.missing_benchmark_tasks:
        return f"Overall<small>mean of the {k} benchmark tasks</small>"
    if not k:
        return f"Overall<small>none of BioBench's {total} benchmark tasks ran</small>"
    tag = '<span class="tag">partial mean</span>' if k else ""
    return f"Overall<small>mean of {k} of BioBench's {total} benchmark tasks</small>{tag}"


def _partial_note(r: Results) -> str:
    missing = r.missing_benchmark_tasks
    if not missing:
        return ""
    if not r.benchmark_tasks:
        return (f'<p class="note">No overall biology score: none of BioBench\'s {len(missing)} benchmark tasks '
                f"({escape(', '.join(missing))}) is in this run. The tasks shown are scored on their own.</p>\n")
    return (f'<p class="note">The overall score is a partial mean over {len(r.benchmark_tasks)} of BioBench\'s '
            f"{len(r.benchmark_tasks) + len(missing)} benchmark tasks ({escape(', '.join(r.benchmark_tasks))}); "
            f"missing: {escape(', '.join(missing))}. It is not comparable with BioBench's full mean.</p>\n")


def _task_header(r: Results, task: str) -> str:
    n = r.n_test(task)
    details = escape(r.metric(task)) + (f" · n = {n:,}" if n else "")
    tag = ""
    if not r.is_benchmark(task):
        tag = '<span class="tag">prior work, not in overall</span>' if r.is_prior_work(task) \
            else '<span class="tag">not in overall</span>'
    return f'<th class="task">{escape(task)}<small>{details}</small>{tag}</th>'


def _row(r: Results, model: str, fmt: ScoreFormat) -> str:
    o = r.overall_of(model)
    rank = o.rank if o is not None and o.rank is not None else "–"
    if o is not None and o.value is not None:
        overall = _cell(fmt, o.value, o.ci_low, o.ci_high, o.rank, bool(o.tied_with_best), "overall")
    else:
        reason = (o.note if o is not None else None) or "no overall score recorded"
        overall = f'<td class="overall missing">—<span class="why">{escape(reason)}</span></td>'
    cells = ""
    for task in r.tasks:
        s = r.score(model, task)
        cells += (
            _cell(fmt, s.value, s.ci_low, s.ci_high, s.rank, s.tied_with_best, "score")
            if s is not None and s.value is not None
            else '<td class="score missing" title="not run">—</td>'
        )
    return f'<tr><td class="rank">{rank}</td><th class="model" scope="row">{escape(model)}</th>{overall}{cells}</tr>'


def _cell(fmt: ScoreFormat, value, lo, hi, rank, tied: bool, kind: str) -> str:
    classes = kind + (" best" if tied else "")
    star = '<b class="star" title="best point estimate">★</b>' if rank == 1 else ""
    return (
        f'<td class="{classes}"><span class="v">{star}{fmt.value(value)}</span>'
        f'<span class="ci">{fmt.interval(lo, hi)}</span></td>'
    )


def compute_table_html(r: Results) -> str:
    totals = compute_totals(r)
    if not totals:
        return ""
    rows = "".join(
        f"<tr><td>{escape(c.model)}</td><td>{c.throughput:,.0f}</td><td>{c.images:,.0f}</td>"
        f"<td>{_duration(c.embed_seconds)}</td><td>{_duration(c.fit_seconds)}</td>"
        f"<td>{escape(', '.join(c.devices))}</td><td>{escape(', '.join(c.precisions))}</td></tr>"
        for c in totals
    )
    return f"""
<table class="plain">
  <thead><tr><th>Model</th><th>images/s</th><th>images embedded</th><th>embedding time</th>
    <th>classifier fit time</th><th>device</th><th>precision</th></tr></thead>
  <tbody>{rows}</tbody>
</table>"""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"
