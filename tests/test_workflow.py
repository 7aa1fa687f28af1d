"""The whole workflow, run by real Snakemake in a temporary directory, and what re-runs when something changes."""

from __future__ import annotations

import duckdb
import pytest

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
