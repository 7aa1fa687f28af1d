"""The report's Altair charts, built from Results. Each builder returns a Chart, or the reason there is none."""

from __future__ import annotations

import dataclasses

import altair as alt
import pandas as pd

from biobench.report.data import OVERALL, Results, compute_totals, timed_runs
from biobench.report.style import ACCENT, DIVERGING, FONT, GRID, INK, MUTED, NEUTRAL, SUBTLE

CONTENT_WIDTH = 1080  # px available to a chart on the page (readable on a 1366 px wide laptop screen)
TIED, BELOW = "tied with the best", "significantly below the best"


@dataclasses.dataclass(frozen=True)
class ChartFigure:
    """A chart, or the sentence that says why there is none; `notes` are shown under it."""

    chart: alt.TopLevelMixin | None
    empty_reason: str | None = None
    notes: tuple[str, ...] = ()


def task_scores(r: Results) -> ChartFigure:
    fmt = r.format
    rows = [
        {
            "model": s.model,
            "task": _task_label(r, s.task),
            "value": s.value * fmt.factor,
            "lo": s.ci_low * fmt.factor,
            "hi": s.ci_high * fmt.factor,
            "interval": fmt.interval(s.ci_low, s.ci_high),
            "rank": s.rank,
            "status": TIED if s.tied_with_best else BELOW,
        }
        for s in r.scores
        if s.value is not None
    ]
    columns = min(3, len(r.tasks))
    base = alt.Chart(pd.DataFrame(rows)).encode(
        y=alt.Y("model:N", sort=list(r.models), title=None),
        color=_status_color(),
        tooltip=[
            alt.Tooltip("model:N"),
            alt.Tooltip("task:N"),
            alt.Tooltip("value:Q", format=f".{fmt.digits}f", title=fmt.axis("score")),
            alt.Tooltip("interval:N", title=f"{r.confidence_label} interval"),
            alt.Tooltip("rank:O"),
        ],
    )
    whiskers = base.mark_rule(strokeWidth=2.5).encode(
        x=alt.X("lo:Q", scale=alt.Scale(zero=False, nice=True), title=fmt.axis("score"), axis=alt.Axis(tickCount=6)),
        x2="hi:Q",
    )
    dots = base.mark_point(filled=True, size=70, opacity=1).encode(x="value:Q")
    chart = (
        alt.layer(whiskers, dots)
        .properties(width=_shared_axis_width(columns, _label_px(r.models)), height=_band_height(len(r.models)))
        .facet(facet=alt.Facet("task:N", sort=[_task_label(r, t) for t in r.tasks], title=None), columns=columns)
        .resolve_scale(x="independent")
    )
    return ChartFigure(finish(chart))


def pairwise(r: Results) -> ChartFigure:
    fmt, alpha = r.format, r.alpha
    panels = [OVERALL] if any(p.task == OVERALL for p in r.pairs) else []
    panels += [t for t in r.tasks if any(p.task == t for p in r.pairs)]
    if not panels:
        return ChartFigure(None, "There is only one model, so there are no pairs to compare.")
    rows = [
        {
            "task": _panel_label(r, p.task),
            "row": p.model_a,
            "column": p.model_b,
            "diff": p.diff * fmt.factor,
            "label": fmt.diff(p.diff),
            "interval": fmt.interval(p.ci_low, p.ci_high),
            "p": p.p_value,
            "significant": p.p_value < alpha,
        }
        for p in r.pairs
    ]
    df = pd.DataFrame(rows)
    extent = max(abs(df["diff"]).max(), 1e-9)
    models = [m for m in r.models if m in set(df["row"])]
    columns = min(3 if len(models) <= 6 else 2, len(panels))
    cell = max(26, min(56, (_facet_width(columns, label_px=_label_px(models)) // max(len(models), 1))))
    axis = {"domain": False, "ticks": False}
    base = alt.Chart().encode(
        y=alt.Y("row:N", sort=models, title="model A (row)", axis=alt.Axis(**axis)),
        x=alt.X("column:N", sort=models, title="model B (column)", axis=alt.Axis(labelAngle=-35, **axis)),
        tooltip=[
            alt.Tooltip("task:N"),
            alt.Tooltip("row:N", title="model A"),
            alt.Tooltip("column:N", title="model B"),
            alt.Tooltip("label:N", title=f"A − B ({fmt.diff_unit})"),
            alt.Tooltip("interval:N", title=f"{r.confidence_label} interval"),
            alt.Tooltip("p:Q", format=".3g", title="p-value"),
        ],
    )
    background = base.mark_rect(color=NEUTRAL, stroke="white", strokeWidth=1.5)
    colored = base.mark_rect(stroke="white", strokeWidth=1.5).encode(
        color=alt.Color(
            "diff:Q",
            scale=alt.Scale(scheme=DIVERGING, domain=[-extent, extent]),
            legend=alt.Legend(
                title=f"A − B ({fmt.diff_unit}), coloured where p < {alpha:g}",
                orient="top",
                gradientLength=240,
                titleLimit=480,
            ),
        )
    ).transform_filter("datum.significant")
    text = base.mark_text(fontSize=10 if cell < 40 else 11).encode(
        text="label:N",
        color=alt.condition(
            f"datum.significant && abs(datum.diff) > {0.55 * extent}", alt.value("white"), alt.value(INK)
        ),
        opacity=alt.condition("datum.significant", alt.value(1.0), alt.value(0.55)),
    )
    chart = (
        alt.layer(background, colored, text, data=df)
        .properties(width=alt.Step(cell), height=alt.Step(cell))
        .facet(facet=alt.Facet("task:N", sort=[_panel_label(r, t) for t in panels], title=None), columns=columns)
        .resolve_scale(x="independent", y="independent")
    )
    return ChartFigure(finish(chart))


def imagenet_vs_biology(r: Results) -> ChartFigure:
    imagenet = r.imagenet_task
    if imagenet is None:
        return ChartFigure(
            None,
            f"ImageNet-1K is not among this run's tasks ({', '.join(r.tasks)}), so there is no ImageNet score to "
            "compare with; add the imagenet1k task to config.yaml to get this figure.",
        )
    fmt = r.format
    rows, left_out = [], []
    for model in r.models:
        s, o = r.score(model, imagenet), r.overall_of(model)
        if s is None or s.value is None or o is None or o.value is None:
            left_out.append(f"{model} ({'no ImageNet score' if s is None or s.value is None else 'no overall score'})")
            continue
        rows.append(
            {
                "model": model,
                "imagenet": s.value * fmt.factor,
                "imagenet_lo": s.ci_low * fmt.factor,
                "imagenet_hi": s.ci_high * fmt.factor,
                "biology": o.value * fmt.factor,
                "biology_lo": o.ci_low * fmt.factor,
                "biology_hi": o.ci_high * fmt.factor,
                "imagenet_text": f"{fmt.value(s.value)} {fmt.interval(s.ci_low, s.ci_high)}",
                "biology_text": f"{fmt.value(o.value)} {fmt.interval(o.ci_low, o.ci_high)}",
            }
        )
    notes = (f"Not shown: {', '.join(left_out)}.",) if left_out else ()
    if r.is_benchmark(imagenet):
        notes += ("ImageNet-1K is a benchmark task in this run, so it is part of the overall score on the y axis.",)
    if r.benchmark_tasks and r.missing_benchmark_tasks:
        notes += (f"The overall biology score is a partial mean over {', '.join(r.benchmark_tasks)}; BioBench's "
                  f"{', '.join(r.missing_benchmark_tasks)} are missing.",)
    if not rows:
        return ChartFigure(None, "No model has both an ImageNet-1K score and an overall biology score.", notes)
    partial = " (partial mean)" if r.missing_benchmark_tasks else ""
    x_title, y_title = fmt.axis(f"ImageNet-1K {r.metric(imagenet)}"), fmt.axis(f"overall biology score{partial}")
    base = alt.Chart(pd.DataFrame(rows)).encode(
        tooltip=[
            alt.Tooltip("model:N"),
            alt.Tooltip("imagenet_text:N", title=x_title),
            alt.Tooltip("biology_text:N", title=y_title),
        ]
    )
    x_scale, y_scale = alt.Scale(zero=False, nice=True, padding=24), alt.Scale(zero=False, nice=True, padding=24)
    chart = alt.layer(
        base.mark_rule(color=MUTED, strokeWidth=1.5).encode(
            x=alt.X("imagenet_lo:Q", scale=x_scale, title=x_title), x2="imagenet_hi:Q", y="biology:Q"
        ),
        base.mark_rule(color=MUTED, strokeWidth=1.5).encode(
            y=alt.Y("biology_lo:Q", scale=y_scale, title=y_title), y2="biology_hi:Q", x="imagenet:Q"
        ),
        base.mark_point(filled=True, size=90, color=ACCENT, opacity=1).encode(x="imagenet:Q", y="biology:Q"),
        base.mark_text(align="left", dx=8, dy=-8, fontSize=12, color=INK).encode(
            x="imagenet:Q", y="biology:Q", text="model:N"
        ),
    ).properties(width=560, height=380)
    return ChartFigure(finish(chart), notes=notes)


def train_sizes(r: Results) -> ChartFigure:
    fmt = r.format
    tasks = [t for t in r.tasks if len({s.train_size for s in r.train_sizes if s.task == t}) > 1]
    if not tasks:
        return ChartFigure(
            None,
            "Every task was fitted at a single training size. List several in config.yaml, e.g. tasks: {kabr: "
            "{n_train: [1, 10, 100, 0]}} (0 = every training row), to see score against training size.",
        )
    rows = [
        {
            "model": s.model,
            "task": _task_label(r, s.task),
            "rows": s.n_train,
            "setting": "all" if s.train_size == 0 else str(s.train_size),
            "value": s.value * fmt.factor,
            "lo": s.ci_low * fmt.factor,
            "hi": s.ci_high * fmt.factor,
            "interval": fmt.interval(s.ci_low, s.ci_high),
        }
        for s in r.train_sizes
        if s.task in tasks and s.n_train
    ]
    models = [m for m in r.models if any(row["model"] == m for row in rows)]
    color = alt.Color("model:N", sort=models, scale=alt.Scale(scheme="tableau10"),
                      legend=alt.Legend(orient="top", title=None))
    x = alt.X("rows:Q", scale=alt.Scale(type="log", nice=False, padding=12), title="training examples (log scale)",
              axis=alt.Axis(format="~s"))
    base = alt.Chart().encode(
        x=x,
        color=color,
        tooltip=[
            alt.Tooltip("model:N"),
            alt.Tooltip("task:N"),
            alt.Tooltip("setting:N", title="n_train"),
            alt.Tooltip("rows:Q", format=",", title="training examples"),
            alt.Tooltip("value:Q", format=f".{fmt.digits}f", title=fmt.axis("score")),
            alt.Tooltip("interval:N", title=f"{r.confidence_label} interval"),
        ],
    )
    columns = min(3, len(tasks))
    chart = (
        alt.layer(
            base.mark_rule(strokeWidth=2, opacity=0.55).encode(
                y=alt.Y("lo:Q", scale=alt.Scale(zero=False, nice=True), title=fmt.axis("score")), y2="hi:Q"),
            base.mark_line(strokeWidth=1.5).encode(y="value:Q"),
            base.mark_point(filled=True, size=60, opacity=1).encode(y="value:Q"),
            data=pd.DataFrame(rows),
        )
        .properties(width=_facet_width(columns, label_px=60), height=220)
        .facet(facet=alt.Facet("task:N", sort=[_task_label(r, t) for t in tasks], title=None), columns=columns)
        .resolve_scale(y="independent")
    )
    return ChartFigure(finish(chart))


def compute(r: Results) -> ChartFigure:
    timed = timed_runs(r)
    unrecorded = sorted({(run.model, run.task) for run in r.runs} - {(run.model, run.task) for run in timed})
    notes = (
        ("No embedding time or throughput recorded for: " + ", ".join(f"{m} on {t}" for m, t in unrecorded) + ".",)
        if unrecorded
        else ()
    )
    if not timed:
        return ChartFigure(None, "No run recorded its embedding time and throughput.", notes)
    df = pd.DataFrame(
        [
            {"model": run.model, "task": run.task, "seconds": run.embed_seconds, "device": run.embed_device or "?"}
            for run in timed
        ]
    )
    unit, per = _time_unit(df.groupby("model")["seconds"].sum().max())
    df["time"] = df["seconds"] / per
    df["task_order"] = [r.tasks.index(t) if t in r.tasks else len(r.tasks) for t in df["task"]]
    totals = pd.DataFrame(
        [
            {"model": c.model, "throughput": c.throughput, "images": c.images, "device": ", ".join(c.devices)}
            for c in compute_totals(r)
        ]
    )
    models = [m for m in r.models if m in set(df["model"])]
    y = alt.Y("model:N", sort=models, title=None)
    height = _band_height(len(models))
    speed = (
        alt.Chart(totals)
        .mark_bar(color=ACCENT, height={"band": 0.7})
        .encode(
            y=y,
            x=alt.X("throughput:Q", title="embedding throughput (images/s, all tasks)"),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("throughput:Q", format=",.0f", title="images/s"),
                alt.Tooltip("images:Q", format=",.0f", title="images embedded"),
                alt.Tooltip("device:N"),
            ],
        )
        .properties(width=380, height=height)
    )
    time = (
        alt.Chart(df)
        .mark_bar(height={"band": 0.7}, stroke="white", strokeWidth=0.5)
        .encode(
            y=alt.Y("model:N", sort=models, title=None, axis=alt.Axis(labels=False, ticks=False)),
            x=alt.X("sum(time):Q", title=f"{_time_title(df['device'])} ({unit}), stacked by task"),
            color=alt.Color(
                "task:N",
                sort=list(r.tasks),
                scale=alt.Scale(scheme="tableau10"),
                legend=alt.Legend(orient="right", title="task"),
            ),
            order=alt.Order("task_order:Q"),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("task:N"),
                alt.Tooltip("time:Q", format=",.2f", title=unit),
                alt.Tooltip("device:N"),
            ],
        )
        .properties(width=420, height=height)
    )
    return ChartFigure(finish(alt.hconcat(speed, time, spacing=24)), notes=notes)


def notice(sentence: str) -> alt.TopLevelMixin:
    """A chart that only says why the figure is empty (for the figure files, which must always exist)."""
    lines = _wrap(sentence, 90)
    df = pd.DataFrame({"line": lines, "i": range(len(lines))})
    chart = (
        alt.Chart(df)
        .mark_text(align="left", baseline="top", fontSize=14, color=INK)
        .encode(text="line:N", y=alt.Y("i:O", axis=None), x=alt.value(0))
        .properties(width=720, height=22 * len(lines))
    )
    return finish(chart)


def finish(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    """The one look shared by every chart."""
    return (
        chart.configure(font=FONT, background="white", padding=8)
        .configure_view(stroke=None)
        .configure_axis(
            labelColor=INK,
            titleColor=INK,
            labelFontSize=12,
            titleFontSize=12,
            titleFontWeight="normal",
            gridColor=GRID,
            domainColor=SUBTLE,
            tickColor=SUBTLE,
            labelLimit=220,
        )
        .configure_header(labelFontSize=13, labelFontWeight="bold", labelColor=INK, labelLimit=320)
        .configure_legend(labelFontSize=12, titleFontSize=12, titleFontWeight="normal", labelColor=INK, titleColor=INK)
        .configure_point(strokeWidth=0)
    )


def _status_color() -> alt.Color:
    return alt.Color(
        "status:N",
        scale=alt.Scale(domain=[TIED, BELOW], range=[ACCENT, MUTED]),
        legend=alt.Legend(orient="top", title=None),
    )


def _task_label(r: Results, task: str) -> str:
    suffix = "" if r.is_benchmark(task) else ", prior work" if r.is_prior_work(task) else ", not in overall"
    return f"{task} ({r.metric(task)}{suffix})"


def _panel_label(r: Results, task: str) -> str:
    if task != OVERALL:
        return _task_label(r, task)
    return "overall (partial mean of benchmark tasks)" if r.missing_benchmark_tasks else "overall (benchmark tasks)"


def _label_px(models) -> int:
    return min(220, 7 * max((len(m) for m in models), default=8) + 16)


def _facet_width(columns: int, label_px: int) -> int:
    return max(160, (CONTENT_WIDTH - columns * (label_px + 30)) // columns)


def _shared_axis_width(columns: int, label_px: int) -> int:
    """Width of each facet when only the first column carries the y labels."""
    return max(160, (CONTENT_WIDTH - label_px - 28 * columns) // columns)


def _band_height(n: int) -> int:
    return max(60, 24 * n)


def _time_unit(max_seconds: float) -> tuple[str, float]:
    for unit, per in (("hours", 3600.0), ("minutes", 60.0)):
        if max_seconds >= 2 * per:
            return unit, per
    return "seconds", 1.0


def _time_title(devices: pd.Series) -> str:
    on_gpu = not any(d.lower().startswith("cpu") or d == "?" for d in devices)
    return "GPU time for embedding" if on_gpu else "embedding time on the device"


def _wrap(sentence: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in sentence.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line] if line else lines

