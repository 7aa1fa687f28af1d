"""The report built from a synthetic results database: files, self-containment, content, size, errors."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from biobench.errors import BiobenchError
from biobench.report import FIGURE_FILES, INDEX_FILE, build_report
from biobench.report.data import connect, load_results
from biobench.report.examples import browser_data, per_section_cap
from biobench.report.thumbnails import THUMBNAIL_PX, thumbnail_uri
from fixtures_results import write_results_db

URL_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "poster", "action", "formaction", "data", "background"}


class _References(HTMLParser):
    """Every attribute or CSS value through which a page could fetch something."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        if tag in ("link", "iframe", "object", "embed", "base"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name in URL_ATTRIBUTES and value and not value.startswith(("data:", "#")):
                self.found.append(f"{tag} {name}={value[:80]}")
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.found += re.findall(r"@import[^;]*|url\((?!\s*['\"]?data:)[^)]*\)", data)


def external_references(html_text: str) -> list[str]:
    parser = _References()
    parser.feed(html_text)
    return parser.found


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("report")
    db = write_results_db(root / "biobench.duckdb", root / "images", missing=[("pixels", "kabr")], missing_images=2)
    out = root / "reports"
    return db, out, build_report(db, out)


def test_writes_index_and_one_file_per_figure_with_fixed_names(built):
    _, out, paths = built
    assert paths == {name: out / rel for name, rel in FIGURE_FILES.items()}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        [INDEX_FILE, *FIGURE_FILES.values()]
    ), "no other file (in particular no leftover temporary file) is written"
    for path in [out / INDEX_FILE, *paths.values()]:
        assert path.stat().st_size > 1000, path


@pytest.mark.parametrize("name", [INDEX_FILE, *FIGURE_FILES.values()])
def test_every_page_is_self_contained(built, name):
    _, out, _ = built
    assert external_references((out / name).read_text()) == []


def test_self_containment_check_catches_external_references():
    page = '<link rel="stylesheet" href="https://x/y.css"><img src="//cdn/x.png"><style>@import "a.css";</style>'
    assert external_references(page) == [
        "<link>",
        "link href=https://x/y.css",
        "img src=//cdn/x.png",
        '@import "a.css"',
    ]


def test_leaderboard_shows_intervals_ties_and_why_a_model_has_no_overall_score(built):
    db, out, _ = built
    page = (out / INDEX_FILE).read_text()
    with duckdb.connect(str(db), read_only=True) as con:
        note = con.execute("SELECT note FROM overall_scores WHERE value IS NULL").fetchall()[0][0]
        tied = con.execute(
            "SELECT (SELECT count(*) FROM task_scores WHERE tied_with_best)"
            " + (SELECT count(*) FROM overall_scores WHERE tied_with_best)"
        ).fetchall()[0][0]
        value, lo, hi = con.execute(
            "SELECT value, ci_low, ci_high FROM task_scores WHERE model = 'dinov2-vit-s14' AND task = 'plankton'"
        ).fetchall()[0]
    board = page[page.index('<table class="leaderboard">') : page.index("</table>")]
    assert note in board
    assert len(re.findall(r'<td class="(?:score|overall) best">', board)) == tied
    assert f"{100 * value:.1f}" in board and f"[{100 * lo:.1f}, {100 * hi:.1f}]" in board
    assert "not in overall" in board  # imagenet1k is not a benchmark task


def test_provenance_footer_shows_commit_and_settings(built):
    _, out, _ = built
    footer = (out / INDEX_FILE).read_text().split("<footer>")[1]
    for text in ("3f9c2b1d0e8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b", "n_resamples", "200", "confidence", "seed"):
        assert text in footer


def test_chart_figures_are_svg_and_the_page_embeds_their_specs(built):
    _, out, paths = built
    page = (out / INDEX_FILE).read_text()
    for name in ("task_scores", "pairwise", "imagenet_vs_biology", "compute"):
        assert paths[name].read_text().lstrip().startswith("<svg"), name
        assert f'id="spec-{name}"' in page and f'data-spec="spec-{name}"' in page


def test_figures_that_do_not_apply_still_exist_and_say_why(tmp_path):
    db = write_results_db(tmp_path / "r.duckdb", tmp_path / "images", tasks=("plankton", "kabr"), n_test=40)
    paths = build_report(db, tmp_path / "out")
    assert set(paths) == set(FIGURE_FILES)
    svg_text = " ".join(re.findall(r">([^<>]+)</text>", paths["imagenet_vs_biology"].read_text()))
    assert "ImageNet-1K is not among" in svg_text
    assert "ImageNet-1K is not among" in (tmp_path / "out" / INDEX_FILE).read_text()


def test_example_browser_shows_only_examples_a_gets_right_and_b_wrong(built):
    db, _, _ = built
    con = connect(db)
    data = browser_data(con, load_results(con), thumbnail=lambda path: None)
    truth = con.execute("SELECT model, task, example_id, y_true = y_pred, label_true FROM predictions").fetchall()
    con.close()
    right = {(m, t, e): ok for m, t, e, ok, _ in truth}
    label = {(t, e): lab for _, t, e, _, lab in truth}
    assert data["tasks"] and len(data["models"]) == 3
    for task, by_a in data["sections"].items():
        for a, by_b in by_a.items():
            for b, section in by_b.items():
                examples = [e for m, t, e in right if (m, t) == (a, task) and (b, task, e) in right]
                wins = sum(right[a, task, e] and not right[b, task, e] for e in examples)
                assert section["n"] == len(examples)
                assert section["wins"] == wins
                assert 0 < len(section["shown"]) <= min(wins, data["cap"])
                for _, example_id, label_true, _, _ in section["shown"]:
                    assert right[a, task, example_id] and not right[b, task, example_id]
                    assert label_true == label[task, example_id]
    assert "kabr" not in data["sections"] or "pixels" not in data["sections"]["kabr"]  # pixels never ran kabr


def test_missing_images_become_placeholders(built):
    db, out, _ = built
    page = (out / INDEX_FILE).read_text()
    assert "image file(s) could not be read" in page
    con = connect(db)
    data = browser_data(con, load_results(con))
    con.close()
    assert 0 < data["missing"] < len(data["thumbs"])


def test_page_stays_small_for_three_models_one_task_1000_examples(tmp_path):
    db = write_results_db(tmp_path / "r.duckdb", tmp_path / "images", tasks=("plankton",), n_test=1000)
    build_report(db, tmp_path / "out")
    size = (tmp_path / "out" / INDEX_FILE).stat().st_size
    assert size < 5_000_000, f"index.html is {size / 1e6:.1f} MB"


def test_thumbnail_budget_counts_each_image_once():
    shared = [(k, f"img{k}") for _ in range(50) for k in range(1, 25)]  # 50 sections showing the same 24 images
    assert per_section_cap(shared, budget=24) == 24
    distinct = [(k, f"s{s}-img{k}") for s in range(50) for k in range(1, 25)]
    assert per_section_cap(distinct, budget=500) == 10
    assert per_section_cap(distinct, budget=10) == 4  # never fewer than 4 per section


@pytest.mark.parametrize(
    "image",
    [
        Image.fromarray((np.arange(300 * 200).reshape(200, 300) * 7).astype(np.uint16)),
        Image.new("RGBA", (500, 400), (10, 200, 30, 128)),
        Image.new("L", (50, 60), 90),
        Image.new("P", (640, 480)),
    ],
    ids=["uint16", "rgba", "grey-small", "palette"],
)
def test_thumbnails_fit_the_box_whatever_the_image_mode(tmp_path, image):
    path = tmp_path / "x.png"
    image.save(path)
    uri = thumbnail_uri(path)
    assert uri is not None and uri.startswith("data:image/jpeg;base64,")
    thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert max(thumb.size) <= THUMBNAIL_PX and thumb.mode == "RGB"


def test_unreadable_or_missing_image_gives_no_thumbnail(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert thumbnail_uri(tmp_path / "bad.png") is None
    assert thumbnail_uri(tmp_path / "absent.jpg") is None


def test_missing_database_names_the_fix(tmp_path):
    with pytest.raises(BiobenchError, match="aggregate step"):
        build_report(tmp_path / "nope.duckdb", tmp_path / "out")


def test_database_without_the_schema_names_the_fix(tmp_path):
    db = tmp_path / "old.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE runs (model VARCHAR)")
    with pytest.raises(BiobenchError, match="lacks table.*re-run the aggregate step"):
        build_report(db, tmp_path / "out")
    assert not (tmp_path / "out" / INDEX_FILE).exists()


MARKUP_PAYLOADS = ("<!--<script>", "</script><script>alert(1)</script>", "<!--", "-->", "a\u2028b\u2029c", "&amp; <b>")


@pytest.mark.parametrize("payload", MARKUP_PAYLOADS)
def test_script_json_parses_back_and_has_no_markup_characters(payload):
    import json

    from biobench.report.page import script_json

    value = {"label": payload, payload: [payload, 1.5, None, {"nested": payload}]}
    text = script_json(value)
    assert json.loads(text) == value
    assert not set("<>&\u2028\u2029") & set(text)


def test_the_embedded_vega_bundle_cannot_end_its_script_element_early():
    from biobench.report.page import vega_bundle

    bundle = vega_bundle().lower()
    assert "</script" not in bundle and "<!--" not in bundle and "<script" not in bundle
