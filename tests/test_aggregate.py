"""aggregate(): prediction parquets -> results database and exports, checked against an independent recomputation."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from biobench.aggregate import OVERALL, PredictionsError, aggregate
from biobench.stats import simulate

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

N_RESAMPLES, SEED, CONFIDENCE = 200, 3, 0.9
MODELS = {"bioclip": 0.85, "dino": 0.8, "pixels": 0.45}
TASKS = {  # task: (metric, classes, benchmark)
    "kabr": ("macro_f1", 6, True),
    "newt": ("accuracy", 2, False),  # prior work, as in BioBench: scored, not averaged
    "plankton": ("balanced_accuracy", 5, True),
    "imagenet1k": ("accuracy", 10, False),
}
SKIPPED = {("pixels", "plankton")}
SKLEARN = {"accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score,
           "macro_f1": lambda t, p: f1_score(t, p, average="macro")}


def write_workspace(root: Path, n: int = 240, tasks=TASKS, skipped=SKIPPED) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for task, (metric, n_classes, benchmark) in tasks.items():
        prior = simulate.zipf_prior(n_classes)
        y_true = rng.choice(n_classes, size=n, p=prior)
        shared = rng.random(n)
        predictions = {}
        for model, skill in MODELS.items():
            if (model, task) not in skipped:
                classifier = simulate.Classifier(prior, np.full(n_classes, skill), prior)
                predictions[model] = classifier.predict(rng, y_true, simulate.correlated_uniforms(rng, shared, 0.7))
        groups = np.array([f"g{i % 4}" for i in range(n)], dtype=object) if task == "newt" else None
        paths += simulate.write_task(root, task, metric=metric, labels=[f"{task}-class-{c}" for c in range(n_classes)],
                                     y_true=y_true, predictions=predictions, benchmark=benchmark, groups=groups)
    return paths


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("agg")
    paths = write_workspace(root)
    aggregate(paths, root / "results" / "biobench.duckdb", n_resamples=N_RESAMPLES, confidence=CONFIDENCE, seed=SEED,
              exports_dir=root / "results")
    return root, paths


def query(root: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(root / "results" / "biobench.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


# ------------------------------------------------------------------------------ independent recomputation


@pytest.fixture(scope="module")
def ref(built) -> dict[str, dict]:
    return reference(built[1])


def reference(paths: list[Path]) -> dict[str, dict]:
    """Recompute everything from the parquet files with pandas, hashlib and scikit-learn (no biobench.stats)."""
    by_task: dict[str, dict] = {}
    for path in paths:
        meta = json.loads(pq.read_schema(path).metadata[b"biobench"])
        frame = pd.read_parquet(path).sort_values("example_id", kind="stable")
        task = by_task.setdefault(meta["task"], {"metric": meta["metric"], "benchmark": meta["benchmark"],
                                                 "models": {}})
        task["y_true"] = frame["y_true"].to_numpy()
        task["models"][meta["model"]] = frame["y_pred"].to_numpy()
    for name, task in by_task.items():
        n = len(task["y_true"])
        rng = np.random.default_rng([SEED, int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")])
        indices = [rng.integers(0, n, size=n) for _ in range(N_RESAMPLES)]
        fn = SKLEARN[task["metric"]]
        task["point"] = {m: fn(task["y_true"], p) for m, p in task["models"].items()}
        task["boot"] = {m: np.array([fn(task["y_true"][i], p[i]) for i in indices]) for m, p in task["models"].items()}
    return by_task


def interval(values: np.ndarray) -> tuple[float, float]:
    """The percentile interval (pairwise differences)."""
    return tuple(np.quantile(values, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2]))


def centered(values: np.ndarray, point: float) -> tuple[float, float]:
    """The centered interval (scores), as biobench/stats/bootstrap.py's docstring states it."""
    low, high = np.asarray(interval(values)) - (values.mean() - point)
    floor, ceiling = min(values.min(), point), max(values.max(), point)
    return min(float(np.clip(low, floor, ceiling)), point), max(float(np.clip(high, floor, ceiling)), point)


def p_value(diffs: np.ndarray) -> float:
    le, ge = np.sum(diffs <= 1e-12), np.sum(diffs >= -1e-12)
    return min(1.0, 2 * (1 + min(le, ge)) / (len(diffs) + 1))


def test_task_scores_intervals_and_p_values_match_an_independent_recomputation(built, ref):
    root, _ = built
    scores = query(root, "SELECT * FROM task_scores ORDER BY task, model")
    assert len(scores) == sum(len(t["models"]) for t in ref.values())
    for row in scores.itertuples():
        task = ref[row.task]
        assert row.metric == task["metric"] and row.n == len(task["y_true"])
        assert row.value == pytest.approx(task["point"][row.model], abs=1e-12)
        assert (row.ci_low, row.ci_high) == pytest.approx(centered(task["boot"][row.model], task["point"][row.model]),
                                                          abs=1e-12)
    pairs = query(root, f"SELECT * FROM pairwise WHERE task <> '{OVERALL}'")
    assert len(pairs) == sum(len(t["models"]) * (len(t["models"]) - 1) for t in ref.values())
    for row in pairs.itertuples():
        task = ref[row.task]
        diffs = task["boot"][row.model_a] - task["boot"][row.model_b]
        assert row.diff == pytest.approx(task["point"][row.model_a] - task["point"][row.model_b], abs=1e-12)
        assert (row.ci_low, row.ci_high) == pytest.approx(interval(diffs), abs=1e-12)
        assert row.p_value == pytest.approx(p_value(diffs), abs=1e-12)


def test_overall_scores_match_an_independent_recomputation(built, ref):
    root, _ = built
    benchmark = [t for t in sorted(ref) if ref[t]["benchmark"]]
    overall = query(root, "SELECT * FROM overall_scores ORDER BY model").set_index("model")
    complete = ["bioclip", "dino"]
    for model in complete:
        boot = np.mean([ref[t]["boot"][model] for t in benchmark], axis=0)
        point = np.mean([ref[t]["point"][model] for t in benchmark])
        assert overall.loc[model, "value"] == pytest.approx(point)
        assert (overall.loc[model, "ci_low"], overall.loc[model, "ci_high"]) == pytest.approx(centered(boot, point),
                                                                                                abs=1e-12)
        assert overall.loc[model, "n_tasks"] == len(benchmark)
    diffs = np.mean([ref[t]["boot"]["bioclip"] - ref[t]["boot"]["dino"] for t in benchmark], axis=0)
    pair = query(root, f"SELECT * FROM pairwise WHERE task = '{OVERALL}' AND model_a = 'bioclip' AND model_b = 'dino'")
    assert pair["p_value"].item() == pytest.approx(p_value(diffs), abs=1e-12)
    assert len(query(root, f"SELECT * FROM pairwise WHERE task = '{OVERALL}'")) == 2  # pixels has no overall score


def test_every_point_estimate_lies_inside_its_interval(built):
    root, _ = built
    for table in ("task_scores", "overall_scores"):
        outside = query(root, f"SELECT * FROM {table} WHERE value < ci_low OR value > ci_high")
        assert outside.empty, outside
    assert query(root, "SELECT * FROM pairwise WHERE diff < ci_low OR diff > ci_high").empty


def test_model_missing_a_benchmark_task_gets_no_overall_score_and_a_note(built):
    root, _ = built
    pixels = query(root, "SELECT * FROM overall_scores WHERE model = 'pixels'").iloc[0]
    assert pd.isna(pixels["value"]) and pd.isna(pixels["rank"]) and pd.isna(pixels["tied_with_best"])
    assert "plankton" in list(pixels["missing_tasks"])
    assert pixels["note"] == "no overall score: missing benchmark task(s) plankton"


def test_overall_over_some_benchmark_tasks_is_a_partial_mean_naming_the_missing_ones(built):
    root, _ = built
    overall = query(root, "SELECT * FROM overall_scores WHERE value IS NOT NULL ORDER BY model")
    assert list(overall["model"]) == ["bioclip", "dino"]
    missing = ["beluga", "ecdysis", "fishnet", "fungiclef", "herbarium19", "iwildcam", "mammalnet", "plantnet"]
    for row in overall.itertuples():
        assert row.partial and row.n_tasks == 2 and list(row.tasks) == ["kabr", "plankton"]
        assert list(row.missing_tasks) == missing
        assert row.note == "partial mean over 2 of BioBench's 10 benchmark tasks; not run: " + ", ".join(missing)


def test_prior_work_and_other_tasks_alone_give_no_overall_score(tmp_path):
    tasks = {"newt": ("accuracy", 2, False), "imagenet1k": ("accuracy", 10, False)}
    paths = write_workspace(tmp_path, n=60, tasks=tasks, skipped=set())
    aggregate(paths, tmp_path / "results" / "biobench.duckdb", n_resamples=100, seed=SEED)
    overall = query(tmp_path, "SELECT * FROM overall_scores")
    assert overall["value"].isna().all() and overall["n_tasks"].eq(0).all()
    assert overall["note"].eq("no overall score: no benchmark task in this run").all()
    assert query(tmp_path, f"SELECT * FROM pairwise WHERE task = '{OVERALL}'").empty


def test_ranks_and_ties_follow_point_estimates_and_the_step_down_test(built, ref):
    root, _ = built
    scores = query(root, "SELECT * FROM task_scores")
    for task, group in scores.groupby("task"):
        models = list(group["model"])
        s = np.array([ref[task]["point"][m] for m in models])
        e = np.stack([ref[task]["boot"][m] for m in models], axis=1) - s
        behind = np.where(s.max() - s <= 1e-12, 0.0, s.max() - s)
        tied = np.ones(len(models), dtype=bool)
        while True:  # reject every remaining model whose lag the remaining models' resampled spread rarely reaches
            widest = e.max(axis=1) - e[:, tied].min(axis=1)
            p = (1 + (widest[:, None] >= behind[None, :]).sum(axis=0)) / (len(e) + 1)
            if not (tied & (p <= 1 - CONFIDENCE)).any():
                break
            tied &= p > 1 - CONFIDENCE
        assert list(group["tied_with_best"]) == list(tied)
        assert list(group["rank"]) == [1 + int(np.sum(group["value"] > v)) for v in group["value"]]
        assert group.loc[group["rank"] == 1, "tied_with_best"].all()
    assert not scores["tied_with_best"].all()  # pixels (45%) is clearly worse somewhere


def test_stored_predictions_carry_labels_paths_and_groups(built):
    root, paths = built
    stored = query(root, "SELECT * FROM predictions WHERE task = 'newt' AND model = 'dino' ORDER BY example_id")
    source = pd.read_parquet(next(p for p in paths if "dino" in str(p) and "/newt-" in str(p)))
    assert list(stored["example_id"]) == sorted(source["example_id"])
    first = stored.iloc[0]
    assert first["path"] == "images/newt/0.jpg" and first["grp"] == "g0"
    assert first["label_true"] == f"newt-class-{first['y_true']}"
    n_rows = sum(len(pd.read_parquet(p)) for p in paths)
    assert query(root, "SELECT count(*) AS c FROM predictions")["c"].item() == n_rows
    runs = query(root, "SELECT * FROM runs ORDER BY task, model")
    assert len(runs) == len(paths) and set(runs["n_test"]) == {240}
    assert runs["created_at"].iloc[0] == pd.Timestamp("2026-01-02 03:04:05")
    settings = dict(query(root, "SELECT * FROM settings").itertuples(index=False))
    assert (settings["n_resamples"], settings["confidence"], settings["seed"]) == (str(N_RESAMPLES), "0.9", str(SEED))


def test_leaderboard_exports_one_record_per_model_and_task(built):
    root, _ = built
    records = json.loads((root / "results" / "leaderboard.json").read_text())
    with open(root / "results" / "leaderboard.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(records) == len(rows) == len(query(root, "SELECT * FROM task_scores"))
    assert {(r["model"], r["task"]) for r in records} == {(r["model"], r["task"]) for r in rows}
    record = next(r for r in records if r["model"] == "dino" and r["task"] == "kabr")
    assert set(record) == {"model", "model_key", "checkpoint", "task", "dataset", "metric", "value", "ci_low",
                           "ci_high", "confidence", "n", "git_commit", "date"}
    assert record["checkpoint"] == "synthetic/dino" and record["metric"] == "macro_f1" and record["n"] == 240
    assert record["dataset"].startswith("kabr-") and record["git_commit"] == "0" * 40
    assert record["date"] == "2026-01-02T03:04:05Z" and record["confidence"] == CONFIDENCE
    row = next(r for r in rows if r["model"] == "dino" and r["task"] == "kabr")
    assert float(row["value"]) == pytest.approx(record["value"])


# -------------------------------------------------------------------------------------------- errors, atomicity


def rewrite(path: Path, *, rows: slice | None = None, meta_update: dict | None = None) -> None:
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"biobench"])
    meta.update(meta_update or {})
    table = table.slice(rows.start or 0, (rows.stop or len(table)) - (rows.start or 0)) if rows else table
    pq.write_table(table.replace_schema_metadata({b"biobench": json.dumps(meta).encode()}), path)


def small_workspace(root: Path) -> list[Path]:
    return write_workspace(root, n=40, tasks={"kabr": TASKS["kabr"]}, skipped=set())


def test_two_files_for_one_model_and_task_is_an_error_naming_both(tmp_path):
    paths = small_workspace(tmp_path)
    copy = tmp_path / "copy.parquet"
    copy.write_bytes(paths[0].read_bytes())
    with pytest.raises(PredictionsError, match="two prediction files for model 'bioclip' on task 'kabr'") as error:
        aggregate([*paths, copy], tmp_path / "db.duckdb", n_resamples=10)
    assert str(paths[0]) in str(error.value) and str(copy) in str(error.value)


def test_failed_aggregation_leaves_the_previous_database_untouched(tmp_path):
    paths = small_workspace(tmp_path)
    db = tmp_path / "results" / "biobench.duckdb"
    aggregate(paths, db, n_resamples=10)
    before = db.read_bytes()
    rewrite(paths[1], rows=slice(0, 30))  # dino now lacks 10 examples
    with pytest.raises(PredictionsError, match="model 'dino': .* has 30 prediction rows for the 40 examples"):
        aggregate(paths, db, n_resamples=10)
    assert db.read_bytes() == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["biobench.duckdb"]  # no temporary files left


def test_models_evaluated_on_different_data_are_refused(tmp_path):
    paths = small_workspace(tmp_path)
    rewrite(paths[2], meta_update={"dataset_key": "kabr-deadbeef"})
    with pytest.raises(PredictionsError, match="disagree on 'dataset_key'"):
        aggregate(paths, tmp_path / "db.duckdb", n_resamples=10)


def test_examples_missing_from_the_manifest_are_refused(tmp_path):
    paths = small_workspace(tmp_path)
    manifest = tmp_path / "manifests" / "kabr.parquet"
    pq.write_table(pq.read_table(manifest).slice(5), manifest)
    with pytest.raises(PredictionsError, match="not in split 'test'.*35 of 40 rows"):
        aggregate(paths, tmp_path / "db.duckdb", n_resamples=10)


def test_unknown_metric_and_foreign_files_are_refused(tmp_path):
    paths = small_workspace(tmp_path)
    rewrite(paths[0], meta_update={"metric": "top5"})
    with pytest.raises(PredictionsError, match="unknown metric 'top5'; known: accuracy"):
        aggregate(paths, tmp_path / "db.duckdb", n_resamples=10)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pq.read_table(paths[1]).replace_schema_metadata({}), foreign)
    with pytest.raises(PredictionsError, match="not written by biobench's fit rule"):
        aggregate([foreign], tmp_path / "db.duckdb", n_resamples=10)


def test_missing_manifest_names_the_fix(tmp_path):
    paths = small_workspace(tmp_path)
    (tmp_path / "manifests" / "kabr.parquet").unlink()
    with pytest.raises(PredictionsError, match="does not exist; rerun `snakemake --cores 8`"):
        aggregate(paths, tmp_path / "db.duckdb", n_resamples=10)


def test_video_manifest_paths_use_the_first_frame(tmp_path):
    paths = small_workspace(tmp_path)
    manifest = tmp_path / "manifests" / "kabr.parquet"
    frame = pd.read_parquet(manifest)
    frame["path"] = [[f"clips/{i}/frame0.jpg", f"clips/{i}/frame1.jpg"] for i in range(len(frame))]
    frame.to_parquet(manifest)
    aggregate(paths, tmp_path / "db.duckdb", n_resamples=10)
    with duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True) as con:
        assert con.execute("SELECT path FROM examples WHERE example_index = 3").fetchall() == [("clips/3/frame0.jpg",)]


def test_every_training_size_is_scored_and_the_largest_is_the_headline(tmp_path):
    rng = np.random.default_rng(1)
    n, labels = 150, ["a", "b", "c"]
    y_true = rng.integers(0, 3, n)
    sizes = {3: 0.4, 30: 0.7, 0: 0.9}  # n_train setting -> share of examples right
    paths = []
    for size, right in sizes.items():
        predictions = {m: np.where(rng.random(n) < right + bonus, y_true, (y_true + 1) % 3)
                       for m, bonus in (("a", 0.0), ("b", 0.05))}
        paths += simulate.write_task(tmp_path, "kabr", metric="accuracy", labels=labels, y_true=y_true,
                                     predictions=predictions, train_size=size, seed=size)
    aggregate(paths, tmp_path / "results" / "biobench.duckdb", n_resamples=200, seed=SEED, confidence=CONFIDENCE)
    by_size = query(tmp_path, "SELECT * FROM train_size_scores ORDER BY model, train_size")
    assert sorted(set(by_size["train_size"])) == [0, 3, 30] and len(by_size) == 6
    assert by_size["n_train"].tolist() == [10 * n, 3, 30] * 2
    for path in paths:
        meta = json.loads(pq.read_schema(path).metadata[b"biobench"])
        frame = pd.read_parquet(path)
        row = by_size[(by_size.model == meta["model"]) & (by_size.train_size == meta["train_size"])].iloc[0]
        assert row.value == pytest.approx(accuracy_score(frame.y_true, frame.y_pred))
        assert row.ci_low <= row.value <= row.ci_high and row.headline == (meta["train_size"] == 0)
    headline = by_size[by_size.headline].set_index("model")
    scores = query(tmp_path, "SELECT * FROM task_scores").set_index("model")
    assert (scores["value"] == headline["value"]).all() and (scores["ci_low"] == headline["ci_low"]).all()
    assert query(tmp_path, "SELECT count(*) AS c FROM predictions")["c"].item() == 2 * n
    assert query(tmp_path, "SELECT count(*) AS c FROM runs")["c"].item() == 6


def test_unreadable_prediction_files_are_named_deleted_and_rebuilt_by_a_rerun(tmp_path):
    paths = small_workspace(tmp_path)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(PredictionsError) as error:
        aggregate(paths, tmp_path / "db.duckdb", n_resamples=10)
    assert str(error.value) == (f"{paths[1]} cannot be read (it does not end as a parquet file does: it was cut "
                                "short); biobench emptied it, and re-running `snakemake --cores 8` rebuilds it and "
                                "what was made from it")
    assert paths[1].read_bytes() == b"" and pq.read_table(paths[0])


@pytest.mark.parametrize("which", ["manifest", "predictions"])
def test_a_file_damaged_inside_is_named_when_duckdb_reads_it(tmp_path, which):
    paths = small_workspace(tmp_path)
    damaged = tmp_path / "manifests" / "kabr.parquet" if which == "manifest" else paths[2]
    data = bytearray(damaged.read_bytes())
    data[4:68] = bytes(64)  # the first page header; the footer stays whole
    damaged.write_bytes(bytes(data))
    with pytest.raises(Exception, match=f"^{damaged} cannot be read \\(.*deserialize.*made from it$"):
        aggregate(paths, tmp_path / "db.duckdb", n_resamples=10)
    assert damaged.read_bytes() == b""


def test_settings_record_the_schema_version(built):
    from biobench.aggregate import SCHEMA_VERSION

    root, _ = built
    assert query(root, "SELECT value FROM settings WHERE key = 'schema_version'")["value"].tolist() == [
        str(SCHEMA_VERSION)]
