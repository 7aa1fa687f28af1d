"""The example browser: for a chosen task and ordered pair (A, B), thumbnails of examples A gets right and B wrong.

Every (task, A, B) section is computed here; a small inline script shows the one picked in the select boxes.
Each section shows at most `cap` examples, the same ones whichever pair is chosen where possible (ordered by a
hash of the example id), and each image is stored once however many sections show it; `cap` is as large as the
budget of distinct images allows.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import duckdb

from biobench.report.data import Results
from biobench.report.page import script_json
from biobench.report.thumbnails import thumbnail_uri

MAX_PER_SECTION = 24
MIN_PER_SECTION = 4
THUMBNAIL_BUDGET = 1000  # distinct images in the page (~3-5 kB each): keeps big runs' pages a few MB

_COUNTS = """
SELECT a.task, a.model, b.model,
       count(*) FILTER (WHERE a.y_pred = a.y_true AND b.y_pred <> b.y_true),
       count(*)
FROM predictions a JOIN predictions b ON a.task = b.task AND a.example_id = b.example_id AND a.model <> b.model
GROUP BY ALL
"""

_SHOWN = """
SELECT a.task, a.model, b.model, a.example_id, coalesce(a.path, ''),
       coalesce(a.label_true, CAST(a.y_true AS VARCHAR)), coalesce(b.label_pred, CAST(b.y_pred AS VARCHAR)), a.grp,
       row_number() OVER (PARTITION BY a.task, a.model, b.model ORDER BY md5(a.example_id), a.example_id) AS k
FROM predictions a JOIN predictions b ON a.task = b.task AND a.example_id = b.example_id AND a.model <> b.model
WHERE a.y_pred = a.y_true AND b.y_pred <> b.y_true
QUALIFY k <= ?
ORDER BY a.task, a.model, b.model, k
"""


def per_section_cap(ranked_paths: list[tuple[int, str]], budget: int = THUMBNAIL_BUDGET) -> int:
    """The largest cap whose sections need at most `budget` distinct images (never below MIN_PER_SECTION).

    `ranked_paths` holds (rank within its section, image path) for every candidate example.
    """
    first_rank: dict[str, int] = {}
    for k, path in ranked_paths:
        first_rank[path] = min(k, first_rank.get(path, k))
    for cap in range(MAX_PER_SECTION, MIN_PER_SECTION, -1):
        if sum(k <= cap for k in first_rank.values()) <= budget:
            return cap
    return MIN_PER_SECTION


def browser_data(
    con: duckdb.DuckDBPyConnection, r: Results, thumbnail: Callable[[str], str | None] = thumbnail_uri
) -> dict:
    """JSON-able data for the browser: models, tasks, thumbnails by id, and sections[task][a][b]."""
    counts = con.execute(_COUNTS).fetchall()
    candidates = con.execute(_SHOWN, [MAX_PER_SECTION]).fetchall()
    cap = per_section_cap([(row[-1], row[4]) for row in candidates])
    sections: dict = {}
    for task, a, b, wins, n in counts:
        sections.setdefault(task, {}).setdefault(a, {})[b] = {"wins": wins, "n": n, "shown": []}
    thumbs: dict[str, str | None] = {}
    ids: dict[str, str] = {}
    for task, a, b, example_id, path, label_true, label_pred_b, grp, k in candidates:
        if k > cap:
            continue
        if path not in ids:
            ids[path] = f"t{len(ids)}"
            thumbs[ids[path]] = thumbnail(path) if path else None
        sections[task][a][b]["shown"].append([ids[path], example_id, label_true, label_pred_b, grp])
    models = [m for m in r.models if any(m in by_a for by_a in sections.values())]
    tasks = [t for t in r.tasks if t in sections]
    missing = sum(uri is None for uri in thumbs.values())
    return {"models": models, "tasks": tasks, "cap": cap, "thumbs": thumbs, "sections": sections, "missing": missing}


def browser_html(data: dict) -> str:
    """The browser's markup, its data and its script (no external resources)."""
    if len(data["models"]) < 2:
        return '<p class="empty">The example browser needs predictions from at least two models on one task.</p>'
    missing = (
        f'<p class="note">{data["missing"]} image file(s) could not be read; they are shown as grey boxes.</p>'
        if data["missing"]
        else ""
    )
    return f"""
<div class="examples" id="examples-browser">
  <div class="controls">
    <label>Task <select id="ex-task">{_options(data["tasks"])}</select></label>
    <label>Model A <select id="ex-a">{_options(data["models"])}</select></label>
    <label>Model B <select id="ex-b">{_options(data["models"])}</select></label>
    <button type="button" id="ex-swap" title="swap A and B">⇄ swap</button>
  </div>
  <p class="ex-summary" id="ex-summary"></p>
  <div class="thumbs" id="ex-grid"></div>
  {missing}
  <noscript><p class="empty">The example browser needs JavaScript (it runs inside this file; nothing is
  downloaded).</p></noscript>
</div>
<script type="application/json" id="examples-data">{script_json(data)}</script>
<script>{_SCRIPT}</script>
"""


def _options(items: list[str]) -> str:
    return "".join(f'<option value="{html.escape(x)}">{html.escape(x)}</option>' for x in items)


_SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById("examples-data").textContent);
  const $ = (id) => document.getElementById(id);
  const task = $("ex-task"), a = $("ex-a"), b = $("ex-b"), grid = $("ex-grid"), summary = $("ex-summary");
  if (data.models.length > 1) b.value = data.models[1];
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const pct = (k, n) => n ? " (" + (100 * k / n).toFixed(1) + "%)" : "";
  function render() {
    grid.replaceChildren();
    const A = a.value, B = b.value, T = task.value;
    if (A === B) { summary.textContent = "Choose two different models."; return; }
    const byA = data.sections[T] || {};
    const s = (byA[A] || {})[B];
    if (!s) { summary.textContent = "No shared predictions for " + A + " and " + B + " on " + T + "."; return; }
    const back = ((data.sections[T] || {})[B] || {})[A];
    summary.replaceChildren(
      el("b", "", A), document.createTextNode(" is right and "), el("b", "", B),
      document.createTextNode(" wrong on " + s.wins + " of " + s.n + " " + T + " examples" + pct(s.wins, s.n) +
        "; the reverse happens on " + (back ? back.wins : 0) + pct(back ? back.wins : 0, s.n) + ". " +
        (s.wins > s.shown.length ? "Showing " + s.shown.length + "." : "")));
    for (const [id, exampleId, truth, predB, grp] of s.shown) {
      const card = el("figure", "thumb");
      card.title = exampleId + (grp ? " (" + grp + ")" : "");
      const uri = data.thumbs[id];
      if (uri) {
        const img = el("img");
        img.src = uri; img.alt = truth;
        card.append(img);
      } else {
        card.append(el("div", "noimage", "image missing"));
      }
      const cap = el("figcaption");
      cap.append(el("span", "truth", "\u2713 " + truth), el("span", "wrong", "\u2717 " + B + ": " + predB));
      card.append(cap);
      grid.append(card);
    }
  }
  $("ex-swap").addEventListener("click", () => { const t = a.value; a.value = b.value; b.value = t; render(); });
  for (const s of [task, a, b]) s.addEventListener("change", render);
  render();
})();
"""
