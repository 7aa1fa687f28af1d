"""Build reports/index.html and one file per figure (for `snakemake --report`) from the results database."""

from __future__ import annotations

from html import escape
from pathlib import Path

import vl_convert

from biobench.atomic import write_text
from biobench.report import charts
from biobench.report.charts import ChartFigure
from biobench.report.data import Results, connect, load_results
from biobench.report.examples import browser_data, browser_html
from biobench.report.page import Section, figure_page, index_page, vl_version

COVERS = ("Intervals cover test-set sampling only (training set and model fixed): the metric's expected value on test "
          "sets of this size drawn like this one. For macro-F1 over many rare classes that is macro-F1 of a test set "
          "of this size; the population value may be higher (README, Interval coverage).")
from biobench.report.tables import compute_table_html, leaderboard_html

# Figure name -> file under out_dir. Fixed names, whatever the data: the workflow declares them as outputs.
FIGURE_FILES: dict[str, str] = {
    "leaderboard": "figures/leaderboard.html",
    "task_scores": "figures/task_scores.svg",
    "pairwise": "figures/pairwise.svg",
    "train_sizes": "figures/train_sizes.svg",
    "imagenet_vs_biology": "figures/imagenet_vs_biology.svg",
    "compute": "figures/compute.svg",
    "examples": "figures/examples.html",
}
INDEX_FILE = "index.html"


def build_report(db_path: Path, out_dir: Path) -> dict[str, Path]:
    """Write out_dir/index.html and out_dir/<FIGURE_FILES>; return {figure name: path}."""
    db_path, out_dir = Path(db_path), Path(out_dir)
    con = connect(db_path)
    try:
        r = load_results(con)
        examples = browser_data(con, r)
    finally:
        con.close()
    chart_figures = {
        "task_scores": charts.task_scores(r),
        "pairwise": charts.pairwise(r),
        "train_sizes": charts.train_sizes(r),
        "imagenet_vs_biology": charts.imagenet_vs_biology(r),
        "compute": charts.compute(r),
    }
    sections = _sections(r, chart_figures, browser_html(examples), examples["cap"])
    paths = {name: out_dir / rel for name, rel in FIGURE_FILES.items()}
    for section in sections:
        if section.name in chart_figures:
            write_text(paths[section.name], _svg(chart_figures[section.name]))
        else:
            write_text(paths[section.name], figure_page(section, r, db_path.name))
    write_text(out_dir / INDEX_FILE, index_page(r, sections, db_path.name))
    return paths


def _svg(figure: ChartFigure) -> str:
    chart = figure.chart if figure.chart is not None else charts.notice(figure.empty_reason or "No data.")
    return vl_convert.vegalite_to_svg(_spec(chart), vl_version=vl_version())


def _spec(chart) -> dict:
    """The chart's Vega-Lite spec. Vega-Lite turns sort orders into expressions holding the names as string
    literals, which Vega's expression parser rejects if they contain U+2028 or U+2029: those become spaces here."""
    return _no_line_separators(chart.to_dict())


def _no_line_separators(value):
    if isinstance(value, str):
        return value.replace("\u2028", " ").replace("\u2029", " ")
    if isinstance(value, dict):
        return {_no_line_separators(k): _no_line_separators(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_line_separators(v) for v in value]
    return value


def _sections(r: Results, figures: dict[str, ChartFigure], examples_html: str, cap: int) -> list[Section]:
    conf, alpha = r.confidence_label, f"{r.alpha:g}"
    resamples = escape(r.settings.get("n_resamples", "?"))
    how = {
        "leaderboard": (
            f"Each task's score is its metric on all test examples; below it, the {conf} interval (percentile interval "
            f"centred on the score) over {resamples} paired bootstrap resamples of the test examples (the same "
            "resamples for every model). " + COVERS + " "
            "Overall = unweighted mean of the scores of BioBench's benchmark tasks in this run (prior-work tasks "
            "such as NeWT, iNat21 and ImageNet-1K are shown but not averaged; a run with only some of the "
            "benchmark tasks gets a partial mean, marked as such); its interval resamples each task "
            "independently and averages. Shaded cells are not significantly worse than the best "
            "(a step-down max test on the paired resamples: family-wise error at most 1 − confidence, however "
            "many models). A task fitted at several training sizes shows its largest."
        ),
        "task_scores": (
            f"Dot = score on the test set; whisker = {conf} paired-bootstrap interval, centred on the score "
            f"({resamples} resamples). Teal = best or tied with the best (step-down max test), grey = significantly "
            "below the best. " + COVERS
        ),
        "pairwise": (
            "Cell (row A, column B) = score(A) − score(B), overall and per task. Coloured when the two-sided "
            f"paired-bootstrap p-value is below {alpha} (blue: A better, red: B better; not corrected for multiple "
            f"comparisons); grey otherwise. Hover a cell for the {conf} interval of the difference and the p-value."
        ),
        "train_sizes": (
            "Score against the number of training examples the probe was fitted on (tasks.<task>.n_train: a "
            "seeded, class-balanced subsample of the training split; smaller sizes are subsets of larger ones). "
            f"The evaluation split is always whole. Whiskers: {conf} centred intervals over {resamples} "
            "bootstrap resamples of the test examples, the same resamples for every model and size. The "
            "classifier is not refitted on resamples, so the whiskers leave out the variation of drawing another "
            "training subsample."
        ),
        "imagenet_vs_biology": (
            "Each model's ImageNet-1K score (x) against its overall biology score (y, the unweighted mean over "
            f"the benchmark tasks, which exclude ImageNet); whiskers are {conf} paired-bootstrap intervals."
        ),
        "compute": (
            "From the embedding provenance of each run: throughput = images embedded ÷ embedding seconds, "
            "summed over the model's tasks (images embedded = recorded images/s × seconds); time = embedding "
            "wall-clock time on the device, stacked by task. Classifier fitting is listed in the table only. The "
            "table's precision is what the forward pass ran at, with the model's dtype where that differs (a half "
            "precision the device has no fast arithmetic for runs float32 under embed.precision: auto)."
        ),
        "examples": (
            "Where does model A beat model B? Test examples whose true label A predicts and B does not, with the "
            f"true label (✓) and B's prediction (✗). At most {cap} per task and pair, picked by a hash of the "
            "example id, so the same examples recur across pairs."
        ),
    }
    titles = {
        "leaderboard": "Leaderboard",
        "task_scores": "Scores per task",
        "pairwise": "Pairwise significance",
        "train_sizes": "Score against training size",
        "imagenet_vs_biology": "ImageNet vs biology",
        "compute": "Compute cost",
        "examples": "Example browser",
    }
    bodies = {name: _chart_body(fig) for name, fig in figures.items()}
    bodies["leaderboard"] = leaderboard_html(r)
    bodies["compute"] += compute_table_html(r)
    bodies["examples"] = examples_html
    return [
        Section(
            name=name,
            title=titles[name],
            how=how[name],
            body=bodies[name],
            spec=_spec(figures[name].chart) if name in figures and figures[name].chart is not None else None,
        )
        for name in FIGURE_FILES
    ]


def _chart_body(figure: ChartFigure) -> str:
    empty = "" if figure.chart is not None else f'<p class="empty">{escape(figure.empty_reason or "No data.")}</p>'
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in figure.notes)
    return empty + notes
