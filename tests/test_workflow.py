"""The whole workflow, run by real Snakemake in a temporary directory, and what re-runs when something changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from biobench.embed import read_embeddings

from workflow_helpers import ROOT, copy_checkout, planned_jobs, seed_download, small_config, snakemake, write_config

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    return copy_checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, animals_data, checkout):
    workdir = tmp_path_factory.mktemp("workflow")
    write_config(workdir, small_config())
    seed_download(workdir, animals_data)
    snakemake(workdir, checkout=checkout)
    return workdir


def test_run_produces_every_artifact(finished):
    con = duckdb.connect(str(finished / "results/biobench.duckdb"), read_only=True)
    scores = dict(con.execute("SELECT model, value FROM task_scores WHERE task = 'animals'").fetchall())
    assert set(scores) == {"lite0-random", "pixels"}
    n, ci_ok = con.execute(
        "SELECT min(n), bool_and(ci_low <= value AND value <= ci_high) FROM task_scores").fetchall()[0]
    assert n == 100 and ci_ok
    assert con.execute("SELECT count(*) FROM predictions").fetchall()[0][0] == 200
    assert con.execute("SELECT count(*) FROM overall_scores").fetchall()[0][0] == 2
    assert (finished / "results/leaderboard.json").stat().st_size > 0
    html = (finished / "reports/index.html").read_text()
    assert "lite0-random" in html and "https://cdn" not in html


def test_second_run_has_nothing_to_do(finished, checkout):
    result = snakemake(finished, "-n", checkout=checkout)
    assert planned_jobs(result) == {}, result.stdout[-3000:]


def test_classifier_change_refits_without_embedding(finished, checkout):
    config = small_config(classifiers={"logreg": {"Cs": [0.1, 1.0]}})
    write_config(finished, config)
    try:
        jobs = planned_jobs(snakemake(finished, "-n", checkout=checkout))
    finally:
        write_config(finished, small_config())
    assert jobs == {"fit": 2, "aggregate": 1, "report": 1, "all": 1}


def test_added_model_runs_only_its_own_jobs(finished, checkout):
    config = small_config()
    config["models"]["pixels-8"] = {"org": "pixels", "image_size": 8}
    write_config(finished, config)
    try:
        jobs = planned_jobs(snakemake(finished, "-n", checkout=checkout))
    finally:
        write_config(finished, small_config())
    assert jobs == {"embed": 2, "fit": 1, "aggregate": 1, "report": 1, "all": 1}


def test_renamed_model_recomputes_no_embedding(finished, checkout):
    config = small_config()
    config["models"]["raw-pixels"] = config["models"].pop("pixels")
    write_config(finished, config)
    try:
        jobs = planned_jobs(snakemake(finished, "-n", checkout=checkout))
    finally:
        write_config(finished, small_config())
    assert "embed" not in jobs and jobs.get("aggregate") == 1


@pytest.mark.parametrize(
    ("module", "rerun"),
    [
        ("fit.py", {"fit": 2, "aggregate": 1, "report": 1, "all": 1}),
        ("stats/metrics.py", {"aggregate": 1, "report": 1, "all": 1}),
        ("classifiers/logreg.py", {"fit": 2, "aggregate": 1, "report": 1, "all": 1}),
        ("classifiers/base.py", {"fit": 2, "aggregate": 1, "report": 1, "all": 1}),  # config checks use it too
        ("jpeg.py", {"embed": 4, "fit": 2, "aggregate": 1, "report": 1, "all": 1}),  # `from biobench import jpeg`
        ("report/charts.py", {"report": 1, "all": 1}),
        ("models/pixels.py", {"embed": 2, "fit": 1, "aggregate": 1, "report": 1, "all": 1}),
    ],
)
def test_editing_package_code_reruns_the_rules_that_use_it(finished, checkout, tmp_path, module, rerun):
    edited = copy_checkout(tmp_path / "checkout", source=checkout)
    assert planned_jobs(snakemake(finished, "-n", checkout=edited)) == {}
    with open(edited / "biobench" / module, "a") as f:
        f.write("\n# an edit\n")
    assert planned_jobs(snakemake(finished, "-n", checkout=edited)) == rerun


def test_snakemake_report_builds_provenance_report(finished, checkout):
    snakemake(finished, "--report", "reports/provenance.html", checkout=checkout)
    html = (finished / "reports/provenance.html").read_text()
    assert "Leaderboard" in html


def test_slurm_profile_dry_run_plans_the_workflow(tmp_path):
    write_config(tmp_path, small_config())
    result = snakemake(tmp_path, "-n", "--profile", str(ROOT / "profiles/slurm"))
    assert planned_jobs(result)["embed"] == 4


def test_training_sizes_add_fits_only_and_are_scored(finished, checkout):
    config = small_config()
    config["tasks"]["animals"]["n_train"] = [20, 0]
    write_config(finished, config)
    try:
        assert planned_jobs(snakemake(finished, "-n", checkout=checkout)) == {"fit": 2, "aggregate": 1, "report": 1,
                                                                              "all": 1}
        snakemake(finished, checkout=checkout)
        con = duckdb.connect(str(finished / "results/biobench.duckdb"), read_only=True)
        sizes = con.execute("SELECT train_size, n_train, headline, count(*) FROM train_size_scores "
                            "GROUP BY ALL ORDER BY train_size").fetchall()
        assert sizes == [(0, 200, True, 2), (20, 20, False, 2)]
        headline = con.execute("SELECT count(*) FROM task_scores s JOIN train_size_scores z USING (model, task) "
                               "WHERE z.headline AND s.value = z.value").fetchall()[0][0]
        assert headline == 2 and con.execute("SELECT count(*) FROM predictions").fetchall()[0][0] == 200
        assert "<svg" in (finished / "reports/figures/train_sizes.svg").read_text()
    finally:
        write_config(finished, small_config())
    assert planned_jobs(snakemake(finished, "-n", checkout=checkout)) in ({}, {"aggregate": 1, "report": 1, "all": 1})


def _artifact(workdir, kind: str, name: str, org: str):
    """The one artifact of `kind` (embeddings, predictions) called `name` of the model of organisation `org`."""
    from biobench.embed import read_metadata

    with duckdb.connect(str(workdir / "results/biobench.duckdb"), read_only=True) as con:
        runs = [Path(row[0]).parts for row in con.execute("SELECT predictions_path FROM runs").fetchall()]
    # earlier tests on the shared run leave artifacts of other settings behind: only this run's are candidates
    in_run = {run[run.index("predictions") + 1:] for run in runs}
    if kind == "embeddings":
        in_run = {run[:2] for run in in_run}  # (model key, dataset key)
    root = workdir / "results" / kind
    found = [p for p in sorted(root.rglob(name)) if read_metadata(p)["model_spec"]["org"] == org
             and p.relative_to(root).parts[:len(next(iter(in_run)))] in in_run]
    assert len(found) == 1, found
    return found[0]


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scores(workdir) -> list[tuple]:
    with duckdb.connect(str(workdir / "results/biobench.duckdb"), read_only=True) as con:
        return con.execute("SELECT model, task, value, ci_low, ci_high FROM task_scores ORDER BY ALL").fetchall()


def test_unreadable_artifacts_are_deleted_rebuilt_and_give_the_same_results(finished, checkout):
    import pyarrow.parquet as pq

    embedding = _artifact(finished, "embeddings", "test.parquet", "pixels")
    predictions = _artifact(finished, "predictions", "train-all.parquet", "timm")
    manifest = next((finished / "results/manifests").glob("*.parquet"))
    originals = {path: pq.read_table(path) for path in (embedding, predictions, manifest)}
    scores = _scores(finished)

    _truncate(embedding)
    _truncate(predictions)
    dry = snakemake(finished, "-n", checkout=checkout)
    for path in (embedding, predictions):
        assert (f"{path.relative_to(finished)} cannot be read (it does not end as a parquet file does: it was cut "
                "short); biobench deleted it, and snakemake rebuilds it") in dry.stdout + dry.stderr
    assert planned_jobs(dry) == {"embed": 1, "fit": 2, "aggregate": 1, "report": 1, "all": 1}
    snakemake(finished, checkout=checkout)

    _truncate(manifest)
    (finished / "results/biobench.duckdb").write_bytes(b"not a database")
    dry = snakemake(finished, "-n", checkout=checkout)
    assert "results/biobench.duckdb cannot be read (it is not a DuckDB database file)" in dry.stdout + dry.stderr
    assert planned_jobs(dry) == {"manifest": 1, "embed": 4, "fit": 2, "aggregate": 1, "report": 1, "all": 1}
    snakemake(finished, checkout=checkout)

    for path, table in originals.items():
        assert pq.read_table(path).equals(table), path  # the data; the metadata holds timings
    assert _scores(finished) == scores
    assert planned_jobs(snakemake(finished, "-n", checkout=checkout)) == {}


def test_damage_inside_an_embedding_fails_fit_with_a_logged_message_and_the_next_run_rebuilds_it(finished, checkout):
    embedding = _artifact(finished, "embeddings", "train.parquet", "pixels")
    data = bytearray(embedding.read_bytes())
    data[4:68] = bytes(64)  # the first page header: the cheap check before planning cannot see this
    embedding.write_bytes(bytes(data))
    failed = snakemake(finished, "--forcerun", "fit", checkout=checkout, check=False)
    assert failed.returncode != 0
    logs = [p.read_text() for p in (finished / "logs/fit").rglob("*.log")]
    assert any(f"{embedding.relative_to(finished)} cannot be read (" in text and "rebuilds it" in text
               for text in logs), logs
    assert embedding.read_bytes() == b""
    assert planned_jobs(snakemake(finished, "-n", checkout=checkout))["embed"] == 1
    snakemake(finished, checkout=checkout)


def test_a_replaced_image_in_a_datadir_rebuilds_the_manifest_and_is_never_read_from_the_cache(tmp_path, animals_copy,
                                                                                               checkout):
    config = small_config()
    config["models"].pop("pixels")
    config["tasks"]["animals"]["datadir"] = str(animals_copy)
    write_config(tmp_path, config)
    snakemake(tmp_path, checkout=checkout)
    assert planned_jobs(snakemake(tmp_path, "-n", checkout=checkout)) == {}
    (manifest,) = (tmp_path / "results/manifests").glob("*.parquet")
    (test_embedding,) = (tmp_path / "results/embeddings").glob("*/*/test.parquet")
    ids, before, _ = read_embeddings(test_embedding)
    frame = pd.read_parquet(manifest)
    target, donor = same_size_different_bytes(frame[frame["split"] == "test"]["path"], frame["path"])
    shutil.copyfile(donor, target)  # same size, new bytes, new modification time
    left = test_embedding.with_name(".test.parquet.k1ll3d_0.tmp")  # by a job killed while writing: no lock holder
    left.write_bytes(b"PAR1")
    os.utime(left, (1e9, 1e9))

    result = snakemake(tmp_path, "-n", checkout=checkout)
    assert not left.exists()
    assert planned_jobs(result) == {"manifest": 1, "embed": 2, "fit": 1, "aggregate": 1, "report": 1, "all": 1}
    said = result.stdout + result.stderr
    assert "changed since" in said and Path(target).name in said
    snakemake(tmp_path, "--forcerun", "embed", checkout=checkout)
    ids_after, after, meta = read_embeddings(test_embedding)
    assert ids_after == ids and not meta["pixels"]["source"].startswith("cache")
    row = ids.index(frame.loc[frame["path"] == target, "example_id"].iloc[0])
    assert not np.array_equal(after[row], before[row])
    assert np.array_equal(np.delete(after, row, 0), np.delete(before, row, 0))
    assert planned_jobs(snakemake(tmp_path, "-n", checkout=checkout)) == {}


def same_size_different_bytes(targets, candidates) -> tuple[str, str]:
    by_size = {}
    for path in candidates:
        by_size.setdefault(Path(path).stat().st_size, []).append(path)
    for target in targets:
        content = Path(target).read_bytes()
        for other in by_size[len(content)]:
            if Path(other).read_bytes() != content:
                return target, other
    raise AssertionError("no two listed images of the same size")
