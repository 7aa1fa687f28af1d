"""Open the report in headless Chromium with the network blocked; fail on a blank or broken page.

Without Chromium these tests fail (they never skip): the error says how to install it.
"""

from __future__ import annotations

import dataclasses
import html
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biobench.report import FIGURE_FILES, INDEX_FILE, build_report
from browser import PageLoad, open_page
from fixtures_results import GIT_COMMIT, write_results_db

pytestmark = pytest.mark.browser

CHARTS = {"task_scores", "pairwise", "train_sizes", "imagenet_vs_biology", "compute"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclasses.dataclass
class _Element:
    tag: str
    attrs: dict[str, str]
    text: list[str] = dataclasses.field(default_factory=list)
    has_drawing: bool = False


class _Dom(HTMLParser):
    """What the checks need from a rendered DOM: chart containers, error boxes, thumbnails, table rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[_Element] = []
        self.charts: dict[str, bool] = {}  # chart id -> an <svg> or <canvas> was drawn inside it
        self.errors: list[str] = []
        self.thumbnails = 0
        self.leaderboard_rows = 0

    def handle_starttag(self, tag, attrs):
        element = _Element(tag, {k: v or "" for k, v in attrs})
        classes = element.attrs.get("class", "").split()
        if tag in ("svg", "canvas"):
            for open_element in self.stack:
                open_element.has_drawing = True
        if tag == "img" and element.attrs.get("src", "").startswith("data:image/") and self._inside("ex-grid"):
            self.thumbnails += 1
        if tag == "tr" and self._inside_class("leaderboard") and any(e.tag == "tbody" for e in self.stack):
            self.leaderboard_rows += 1
        if tag not in VOID:
            element.attrs["_classes"] = " ".join(classes)
            self.stack.append(element)

    def handle_endtag(self, tag):
        while self.stack:
            element = self.stack.pop()
            classes = element.attrs["_classes"].split()
            if "chart" in classes:
                self.charts[element.attrs.get("id", "?")] = element.has_drawing
            if {"chart-error", "page-error"} & set(classes) and "".join(element.text).strip():
                self.errors.append("".join(element.text).strip())
            if element.tag == tag:
                break

    def handle_data(self, data):
        for element in self.stack:
            element.text.append(data)

    def _inside(self, element_id: str) -> bool:
        return any(e.attrs.get("id") == element_id for e in self.stack)

    def _inside_class(self, cls: str) -> bool:
        return any(cls in e.attrs["_classes"].split() for e in self.stack)


def page_problems(
    page: PageLoad, expected_charts: set[str], leaderboard_rows: int = 0, thumbnails: bool = False
) -> list[str]:
    """Everything that makes the page blank or broken; empty when it is fine."""
    problems = [f"the page tried to fetch {url}" for url in page.requests]
    pixels = np.asarray(Image.open(page.screenshot).convert("RGB")).reshape(-1, 3)
    _, counts = np.unique(pixels, axis=0, return_counts=True)
    if counts.max() / len(pixels) > 0.9 or pixels.std() < 10:
        problems.append(f"the screenshot {page.screenshot} is (nearly) uniform: blank page")
    dom = _Dom()
    dom.feed(page.dom)
    drawn = {name.removeprefix("chart-"): ok for name, ok in dom.charts.items()}
    if set(drawn) != expected_charts:
        problems.append(f"chart containers {sorted(drawn)} are not the expected {sorted(expected_charts)}")
    problems += [f"chart {name} drew no <svg> or <canvas>" for name, ok in drawn.items() if not ok]
    problems += [f"error shown on the page: {text}" for text in dom.errors]
    if thumbnails and dom.thumbnails == 0:
        problems.append("the example browser shows no thumbnails")
    if dom.leaderboard_rows != leaderboard_rows:
        problems.append(f"the leaderboard has {dom.leaderboard_rows} rows, not {leaderboard_rows}")
    return problems


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    db = write_results_db(root / "biobench.duckdb", root / "images", missing=[("pixels", "kabr")], missing_images=1,
                          train_sizes={"kabr": (10, 100, 0), "imagenet1k": (1000, 0)})
    build_report(db, root / "reports")
    return root / "reports"


def test_report_renders_offline_with_every_chart_drawn(report, tmp_path):
    page = open_page(report / INDEX_FILE, tmp_path / "index.png")
    assert page_problems(page, CHARTS, leaderboard_rows=3, thumbnails=True) == []


def test_example_browser_figure_renders_thumbnails_offline(report, tmp_path):
    page = open_page(report / FIGURE_FILES["examples"], tmp_path / "examples.png")
    assert page_problems(page, expected_charts=set(), thumbnails=True) == []


def test_blank_page_is_reported(tmp_path):
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    problems = page_problems(open_page(blank, tmp_path / "blank.png"), CHARTS, leaderboard_rows=3, thumbnails=True)
    for symptom in ("uniform", "chart containers", "no thumbnails", "leaderboard has 0 rows"):
        assert any(symptom in p for p in problems), (symptom, problems)


def test_page_without_vega_or_with_a_cdn_script_is_reported(report, tmp_path):
    """The same page with Vega swapped for a CDN <script src>: nothing draws, and the blocked fetch is seen."""
    shutil.copytree(report, tmp_path / "copy")
    index = tmp_path / "copy" / INDEX_FILE
    html = index.read_text()
    start = html.index("<script>", html.index("</main>"))
    end = html.index("</script>", start) + len("</script>")
    index.write_text(html[:start] + '<script src="https://cdn.jsdelivr.net/npm/vega-embed@7"></script>' + html[end:])
    problems = page_problems(open_page(index, tmp_path / "broken.png"), CHARTS, leaderboard_rows=3, thumbnails=True)
    assert any("tried to fetch https://cdn.jsdelivr.net" in p for p in problems), problems
    assert any("drew no <svg>" in p for p in problems) or any("error shown" in p for p in problems), problems


def test_score_against_training_size_renders_from_real_aggregation(tmp_path):
    """Predictions at three n_train settings -> the real aggregate step -> the report: the chart is drawn."""
    from biobench.aggregate import aggregate
    from biobench.stats import simulate

    rng = np.random.default_rng(0)
    n, y_true = 120, rng.integers(0, 4, 120)
    paths = []
    for size, right in ((4, 0.4), (40, 0.6), (0, 0.8)):
        predictions = {m: np.where(rng.random(n) < right + bonus, y_true, (y_true + 1) % 4)
                       for m, bonus in (("alpha", 0.0), ("beta", 0.1))}
        paths += simulate.write_task(tmp_path / "data", "kabr", metric="macro_f1", labels=list("abcd"),
                                     y_true=y_true, predictions=predictions, train_size=size)
    aggregate(paths, tmp_path / "biobench.duckdb", n_resamples=100)
    build_report(tmp_path / "biobench.duckdb", tmp_path / "reports")
    page = open_page(tmp_path / "reports" / INDEX_FILE, tmp_path / "sizes.png")
    expected = {"task_scores", "pairwise", "train_sizes", "compute"}
    assert page_problems(page, expected, leaderboard_rows=2) == []
    assert "Score against training size" in page.dom
    assert "partial mean over 1 of BioBench" in page.dom  # kabr alone: a partial overall mean, named as such


HOSTILE_MODELS = {"<!--<script>": 0.78, "</script><script>alert(1)</script>": 0.72, "pixels -->": 0.41}
HOSTILE_TASKS = ("plankton <!--", "kabr \u2028-->", "imagenet1k")
HOSTILE_LABELS = ("<!--<script>", "</script><script>alert(1)</script>", "<!--", "-->", "line\u2028separator")


def hostile_report(root: Path) -> Path:
    """Model, task, label and setting names that are markup, in every place the report shows them."""
    import duckdb

    db = write_results_db(root / "biobench.duckdb", root / "images", models=HOSTILE_MODELS, tasks=HOSTILE_TASKS,
                          train_sizes={HOSTILE_TASKS[1]: (10, 100, 0)})
    with duckdb.connect(str(db)) as con:
        for y, label in enumerate(HOSTILE_LABELS):
            con.execute("UPDATE labels SET label = ? WHERE y = ?", [label, y])
        con.execute("INSERT INTO settings VALUES ('note', '<!--<script>')")
    build_report(db, root / "reports")
    return root / "reports"


def test_names_that_are_markup_leave_the_browser_and_the_footer_working(tmp_path):
    from xml.etree import ElementTree

    reports = hostile_report(tmp_path)
    svg = ElementTree.parse(reports / FIGURE_FILES["task_scores"])
    assert "</script><script>alert(1)</script>" in "".join(svg.getroot().itertext())
    page = open_page(reports / INDEX_FILE, tmp_path / "hostile.png")
    assert page_problems(page, CHARTS, leaderboard_rows=3, thumbnails=True) == []
    assert "<script>alert(1)</script>" not in page.dom  # no element was injected
    footer = page.dom[page.dom.index("<footer>"):]
    assert "Provenance" in footer and GIT_COMMIT in footer and "&lt;!--&lt;script&gt;" in footer
    summary = page.dom[page.dom.index('id="ex-summary"'):page.dom.index('id="ex-grid"')]
    assert "&lt;!--&lt;script&gt;</b> is right and <b>&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;</b>" \
        in summary  # the browser's script ran on the parsed data: names as text, in the summary it wrote
    assert any(f"✓ {html.escape(label, quote=False)}" in page.dom for label in HOSTILE_LABELS)
