"""HTML pages: the shared shell (CSS), the index page's sections, and the provenance footer."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from html import escape

import altair as alt
import vl_convert

from biobench.report.data import Results
from biobench.report.style import ACCENT, FONT, GRID, INK, NEUTRAL

CSS = f"""
:root {{ --ink: {INK}; --subtle: #64748b; --line: {GRID}; --accent: {ACCENT}; --accent-bg: #ccfbf1;
  --bg: #f8fafc; --neutral: {NEUTRAL}; --bad: #b91c1c; }}
* {{ box-sizing: border-box; }}
html {{ scroll-behavior: smooth; scroll-padding-top: 56px; }}
body {{ margin: 0; font: 14px/1.5 {FONT}; color: var(--ink); background: var(--bg); }}
.wrap {{ max-width: 1180px; margin: 0 auto; padding: 0 24px; }}
header.top {{ background: #0f172a; color: #f8fafc; padding: 18px 0 16px; }}
header.top h1 {{ margin: 0; font-size: 22px; font-weight: 650; letter-spacing: .2px; }}
header.top p {{ margin: 4px 0 0; color: #cbd5e1; }}
nav {{ position: sticky; top: 0; z-index: 5; background: #fff; border-bottom: 1px solid var(--line); }}
nav .wrap {{ display: flex; gap: 4px; overflow-x: auto; }}
nav a {{ color: var(--ink); text-decoration: none; padding: 10px 10px; white-space: nowrap; font-weight: 500;
  border-bottom: 2px solid transparent; }}
nav a:hover {{ border-bottom-color: var(--accent); color: var(--accent); }}
section.card {{ background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 18px 22px 20px;
  margin: 18px 0; }}
h2 {{ font-size: 18px; margin: 0 0 4px; }}
p.how {{ color: var(--subtle); margin: 0 0 14px; max-width: 110ch; }}
p.note {{ color: var(--subtle); font-size: 13px; margin: 10px 0 0; }}
p.empty {{ background: var(--neutral); border-radius: 8px; padding: 14px 16px; margin: 0; }}
.chart {{ min-height: 60px; overflow-x: auto; }}
.chart-error, .page-error {{ color: var(--bad); background: #fef2f2; border: 1px solid #fecaca; border-radius: 8px;
  padding: 10px 14px; }}
.table-scroll {{ overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; }}
table.leaderboard {{ border-collapse: separate; border-spacing: 0; width: 100%; font-variant-numeric: tabular-nums; }}
.leaderboard th, .leaderboard td {{ padding: 7px 12px; border-bottom: 1px solid var(--line); text-align: right;
  vertical-align: top; white-space: nowrap; }}
.leaderboard thead th {{ background: #f1f5f9; font-weight: 600; vertical-align: bottom; }}
.leaderboard thead small {{ display: block; font-weight: 400; color: var(--subtle); font-size: 11.5px; }}
.leaderboard tbody tr:last-child > * {{ border-bottom: 0; }}
.leaderboard tbody tr:hover > * {{ background-color: #f8fafc; }}
.leaderboard .rank {{ text-align: center; color: var(--subtle); width: 2.5em; }}
.leaderboard .model {{ text-align: left; font-weight: 600; position: sticky; left: 0; background: #fff; z-index: 1; }}
.leaderboard thead .model {{ background: #f1f5f9; }}
.leaderboard .overall {{ border-left: 2px solid #cbd5e1; border-right: 2px solid #cbd5e1; }}
.leaderboard td .v {{ display: block; font-size: 15px; }}
.leaderboard td .ci {{ display: block; font-size: 11.5px; color: var(--subtle); }}
.leaderboard td.best, .leaderboard tbody tr:hover > td.best {{ background: var(--accent-bg); }}
.leaderboard td.best .v {{ color: var(--accent); font-weight: 700; }}
.leaderboard td.missing {{ color: var(--subtle); }}
.leaderboard .why {{ display: block; white-space: normal; max-width: 24ch; margin-left: auto; font-size: 11.5px;
  font-style: italic; text-align: right; }}
.leaderboard .star {{ color: #b45309; font-size: 12px; margin-right: 4px; }}
.tag {{ display: inline-block; margin-top: 2px; padding: 0 6px; border-radius: 9px; background: #fef3c7;
  color: #92400e; font-size: 11px; font-weight: 500; }}
p.legend {{ font-size: 12.5px; color: var(--subtle); margin: 8px 0 0; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; border-radius: 3px; vertical-align: -1px; }}
.swatch.best {{ background: var(--accent-bg); border: 1px solid var(--accent); }}
table.plain {{ border-collapse: collapse; margin-top: 14px; font-variant-numeric: tabular-nums; font-size: 13px; }}
table.plain th, table.plain td {{ padding: 4px 12px; border-bottom: 1px solid var(--line); text-align: right; }}
table.plain th:first-child, table.plain td:first-child, table.plain th:last-child, table.plain td:last-child {{
  text-align: left; }}
.controls {{ display: flex; flex-wrap: wrap; gap: 14px; align-items: end; margin-bottom: 8px; }}
.controls label {{ display: flex; flex-direction: column; font-size: 12px; color: var(--subtle); gap: 2px; }}
.controls select, .controls button {{ font: inherit; color: var(--ink); padding: 5px 8px; border: 1px solid #cbd5e1;
  border-radius: 6px; background: #fff; min-width: 12em; }}
.controls button {{ min-width: 0; cursor: pointer; }}
.controls button:hover {{ border-color: var(--accent); color: var(--accent); }}
.ex-summary {{ margin: 6px 0 12px; }}
.thumbs {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(124px, 1fr)); gap: 10px; }}
figure.thumb {{ margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 6px; background: #fff; }}
figure.thumb img, figure.thumb .noimage {{ display: block; width: 100%; height: 96px; object-fit: contain;
  background: var(--neutral); border-radius: 4px; }}
figure.thumb .noimage {{ color: var(--subtle); font-size: 12px; line-height: 96px; text-align: center; }}
figure.thumb figcaption {{ font-size: 11.5px; line-height: 1.35; margin-top: 5px; overflow-wrap: anywhere; }}
figure.thumb .truth {{ display: block; color: var(--accent); font-weight: 600; }}
figure.thumb .wrong {{ display: block; color: var(--bad); }}
footer {{ color: var(--subtle); font-size: 12.5px; padding: 8px 0 32px; }}
footer dl {{ display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0 0; }}
footer dt {{ font-weight: 600; color: var(--ink); }}
footer dd {{ margin: 0; overflow-wrap: anywhere; }}
footer code {{ font-size: 12px; }}
"""

_EMBED = r"""
(function () {
  for (const el of document.querySelectorAll(".chart[data-spec]")) {
    const fail = (err) => {
      const p = document.createElement("p");
      p.className = "chart-error";
      p.textContent = "This chart failed to render: " + err;
      el.replaceChildren(p);
    };
    try {
      const spec = JSON.parse(document.getElementById(el.dataset.spec).textContent);
      vegaEmbed(el, spec, {renderer: "svg", actions: false}).catch(fail);
    } catch (err) { fail(err); }
  }
})();
"""

_ERRORS = r"""
window.addEventListener("error", (e) => {
  const box = document.getElementById("page-errors");
  box.hidden = false;
  box.append(document.createTextNode("Script error: " + e.message + " "));
});
"""


SETTINGS_FIRST = ("n_resamples", "confidence", "seed")  # shown before the other settings, which follow by name


@dataclasses.dataclass(frozen=True)
class Section:
    """One card of the index page."""

    name: str  # anchor and figure name
    title: str
    how: str  # how it was computed, in one or two sentences
    body: str  # HTML
    spec: dict | None = None  # Vega-Lite spec rendered into the card's .chart element


def document(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{CSS}</style>
<script>{_ERRORS}</script>
</head>
<body>
<div id="page-errors" class="page-error" hidden></div>
{body}
</body>
</html>
"""


def index_page(r: Results, sections: list[Section], db_name: str) -> str:
    nav = "".join(f'<a href="#{s.name}">{escape(s.title)}</a>' for s in sections)
    cards = "".join(_card(s) for s in sections)
    specs = "".join(
        f'<script type="application/json" id="spec-{s.name}">{script_json(s.spec)}</script>'
        for s in sections
        if s.spec is not None
    )
    scripts = f"<script>{vega_bundle()}</script>{specs}<script>{_EMBED}</script>" if specs else ""
    body = f"""
<header class="top"><div class="wrap"><h1>biobench report</h1><p>{escape(summary_line(r))}</p></div></header>
<nav><div class="wrap">{nav}</div></nav>
<main class="wrap">{cards}</main>
<footer><div class="wrap">{provenance_html(r, db_name)}</div></footer>
{scripts}
"""
    return document("biobench report", body)


def figure_page(section: Section, r: Results, db_name: str) -> str:
    """A stand-alone page for one HTML figure (leaderboard, example browser), for `snakemake --report`."""
    body = f"""<main class="wrap">{_card(section)}</main>
<footer><div class="wrap">{provenance_html(r, db_name)}</div></footer>"""
    return document(f"biobench: {section.title}", body)


def summary_line(r: Results) -> str:
    conf = r.confidence_label
    resamples = r.settings.get("n_resamples", "?")
    k = len(r.benchmark_tasks)
    total = k + len(r.missing_benchmark_tasks)
    overall = f"{k} of BioBench's {total} benchmark tasks" + (", a partial overall mean" if 0 < k < total else "")
    return (
        f"{len(r.models)} models · {len(r.tasks)} task{'s' if len(r.tasks) != 1 else ''} ({overall}) · "
        f"{conf} paired-bootstrap intervals from {resamples} resamples"
    )


def provenance_html(r: Results, db_name: str) -> str:
    commits = sorted({run.git_commit for run in r.runs if run.git_commit})
    devices = sorted({run.embed_device for run in r.runs if run.embed_device})
    hosts = sorted({run.host for run in r.runs if run.host})
    first = [k for k in SETTINGS_FIRST if k in r.settings]
    settings = [(k, r.settings[k]) for k in first + sorted(set(r.settings) - set(first))]
    rows = [
        ("results", f"<code>{escape(db_name)}</code>"),
        ("git commit", ", ".join(f"<code>{escape(c)}</code>" for c in commits) or "not recorded"),
        *((escape(k), f"<code>{escape(v)}</code>") for k, v in settings),
        ("devices", escape(", ".join(devices)) or "not recorded"),
        ("hosts", escape(", ".join(hosts)) or "not recorded"),
    ]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f"<strong>Provenance</strong><dl>{items}</dl>"


# Outside strings JSON has none of these characters; inside, the escapes mean the same. Without `<` the HTML parser
# meets no `</script` or `<!--` (which would end the element early or swallow the rest of the page); U+2028/9 are
# line breaks to older JavaScript.
_SCRIPT_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def script_json(value: object) -> str:
    """JSON that is safe inside a <script> element: no `<`, `>` or `&` in it at all."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_SCRIPT_ESCAPES)


@functools.cache
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script, from vl-convert (no CDN)."""
    return re.sub(r"</(script)", r"<\\/\1", vl_convert.javascript_bundle(vl_version=vl_version()), flags=re.I)


def vl_version() -> str:
    """The Vega-Lite version Altair writes specs for, as vl-convert names it (v6.4.1 -> v6_4)."""
    return "_".join(alt.SCHEMA_VERSION.split(".")[:2])


def _card(s: Section) -> str:
    chart = f'<div class="chart" id="chart-{s.name}" data-spec="spec-{s.name}"></div>' if s.spec is not None else ""
    return f"""
<section class="card" id="{s.name}">
  <h2>{escape(s.title)}</h2>
  <p class="how">{s.how}</p>
  {chart}{s.body}
</section>"""
