"""The `biobench` command on a small results database built by the real aggregate step."""

from __future__ import annotations

import shutil
import subprocess

import duckdb
import numpy as np
import pytest

from biobench.aggregate import SCHEMA_VERSION, aggregate
from biobench.cli import main
from biobench.stats import simulate

N = 60


def predictions_with_known_disagreements() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    y_true = np.arange(N) % 4
    wrong = (y_true + 1) % 4
    alpha = np.where(np.arange(N) % 10 == 0, wrong, y_true)  # wrong on 0, 10, 20, ...
    beta = np.where(np.arange(N) % 3 == 0, wrong, y_true)  # wrong on 0, 3, 6, ...
    gamma = np.where(np.random.default_rng(0).random(N) < 0.5, wrong, y_true)
    return y_true, {"alpha": alpha, "beta": beta, "gamma": gamma}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    y_true, predictions = predictions_with_known_disagreements()
    labels = ["zebra", "impala", "giraffe", "baboon"]
    paths = simulate.write_task(root, "kabr", metric="macro_f1", labels=labels, y_true=y_true, predictions=predictions)
    paths += simulate.write_task(root, "plankton", metric="accuracy", labels=labels, y_true=y_true,
                                 predictions={m: p for m, p in predictions.items() if m != "gamma"})
    path = root / "biobench.duckdb"
    aggregate(paths, path, n_resamples=300)
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_scores_lists_overall_and_every_task_with_intervals_and_ties(db, capsys):
    code, out, _ = run(capsys, "scores", "--db", db)
    assert code == 0
    assert "95% intervals (percentile, centred on the score) from 300 paired bootstrap resamples" in out
    overall = out.split("\n\n")[1]
    assert overall.startswith(
        "overall: PARTIAL mean over 2 of BioBench's 10 benchmark tasks (kabr, plankton); "
        "missing: beluga, ecdysis, fishnet, fungiclef, herbarium19, iwildcam, mammalnet, plantnet")
    assert "gamma" in overall and "no overall score: missing benchmark task(s) plankton" in overall
    with duckdb.connect(str(db), read_only=True) as con:
        value, low, high, tied = con.execute("SELECT value, ci_low, ci_high, tied_with_best FROM task_scores "
                                             "WHERE task = 'kabr' AND model = 'alpha'").fetchall()[0]
    assert f"alpha{' *' if tied else ''}" in out and f"{value:.4f}  [{low:.4f}, {high:.4f}]" in out
    assert "kabr: macro_f1, n = 60" in out and "plankton: accuracy, n = 60" in out


def test_scores_for_one_task(db, capsys):
    code, out, _ = run(capsys, "scores", "--task", "plankton", "--db", db)
    assert code == 0 and "plankton: accuracy" in out and "kabr" not in out and "overall" not in out


def test_compare_prints_paired_difference_interval_p_value_and_disagreements(db, capsys):
    code, out, _ = run(capsys, "compare", "alpha", "beta", "--db", db, "--examples", "3")
    assert code == 0
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT task, diff, ci_low, ci_high, p_value FROM pairwise "
                           "WHERE model_a = 'alpha' AND model_b = 'beta' ORDER BY task").fetchall()
    assert [r[0] for r in rows] == ["__overall__", "kabr", "plankton"]
    for task, diff, low, high, p in rows:
        label = "overall" if task == "__overall__" else task + " "
        line = next(line for line in out.splitlines() if line.startswith(label))
        assert f"{diff:+.4f}" in line and f"[{low:+.4f}, {high:+.4f}]" in line and f"{p:.3f}" in line
    # exactly one right: alpha wrong where i % 10 == 0, beta wrong where i % 3 == 0; both wrong where i % 30 == 0
    alpha_only = sum(1 for i in range(N) if i % 3 == 0 and i % 10 != 0)
    beta_only = sum(1 for i in range(N) if i % 10 == 0 and i % 3 != 0)
    assert (f"kabr: {alpha_only + beta_only} examples where exactly one model is right "
            f"(alpha only: {alpha_only}, beta only: {beta_only}); the first 3:") in out
    # example 3: true class 3 (baboon); alpha right, beta predicted class 0 (zebra)
    assert any(line.split() == ["kabr-0000003", "baboon", "baboon", "zebra", "alpha", "images/kabr/3.jpg"]
               for line in out.splitlines())


def test_compare_one_task_without_examples(db, capsys):
    code, out, _ = run(capsys, "compare", "beta", "alpha", "--task", "kabr", "--examples", "0", "--db", db)
    assert code == 0 and "kabr" in out and "plankton" not in out and "overall" not in out
    assert "exactly one model is right" not in out


def test_compare_says_why_a_task_or_the_overall_score_is_missing(db, capsys):
    code, out, _ = run(capsys, "compare", "alpha", "gamma", "--db", db, "--examples", "0")
    assert code == 0
    assert "not compared: plankton (gamma not evaluated); overall (gamma: no overall score: missing" in out


def test_unknown_names_list_the_known_ones(db, capsys):
    code, _, err = run(capsys, "compare", "alpha", "delta", "--db", db)
    assert code == 2 and "unknown model 'delta'; known models: alpha, beta, gamma" in err
    code, _, err = run(capsys, "scores", "--task", "kabrr", "--db", db)
    assert code == 2 and "unknown task 'kabrr'; known tasks: kabr, plankton" in err
    code, _, err = run(capsys, "compare", "alpha", "alpha", "--db", db)
    assert code == 2 and "two different models" in err


def test_missing_database_says_how_to_make_it(tmp_path, capsys):
    code, _, err = run(capsys, "scores", "--db", tmp_path / "nope.duckdb")
    assert code == 2 and "run `snakemake --cores 8` first" in err


def copy_of(db, tmp_path, *statements: str):
    """A copy of the results database, changed by `statements`."""
    copy = tmp_path / "biobench.duckdb"
    shutil.copy(db, copy)
    with duckdb.connect(str(copy)) as con:
        for statement in statements:
            con.execute(statement)
    return copy


def test_a_database_from_an_older_biobench_says_how_to_rebuild_it(db, tmp_path, capsys):
    older = copy_of(db, tmp_path, "DELETE FROM settings WHERE key = 'schema_version'",
                    "ALTER TABLE task_scores DROP COLUMN tied_with_best")
    for command in (["scores"], ["compare", "alpha", "beta"]):
        code, out, err = run(capsys, *command, "--db", older)
        assert code == 2 and out == ""
        assert err == (f"biobench: {older} was written by an older biobench (without a schema version; this biobench "
                       f"reads schema {SCHEMA_VERSION}); re-run `snakemake --cores 8` to rebuild it (with `--forcerun "
                       "aggregate` if snakemake has nothing to do)\n")


def test_an_empty_settings_table_counts_as_an_older_biobench(db, tmp_path, capsys):
    code, _, err = run(capsys, "scores", "--db", copy_of(db, tmp_path, "DELETE FROM settings"))
    assert code == 2 and "was written by an older biobench (without a schema version" in err


def test_a_database_from_a_newer_biobench_says_so(db, tmp_path, capsys):
    newer = copy_of(db, tmp_path, f"UPDATE settings SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    code, _, err = run(capsys, "scores", "--db", newer)
    assert code == 2
    assert (f"written by a newer biobench (results schema {SCHEMA_VERSION + 1}; this biobench reads schema "
            f"{SCHEMA_VERSION}): upgrade biobench, or re-run `snakemake --cores 8`") in err


def test_a_missing_column_names_the_problem_instead_of_a_traceback(db, tmp_path, capsys):
    changed = copy_of(db, tmp_path, "ALTER TABLE task_scores DROP COLUMN tied_with_best")
    code, _, err = run(capsys, "scores", "--db", changed)
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"biobench: {changed} does not hold the tables this biobench reads (Binder Error: ")
    assert "tied_with_best" in err and err.rstrip().endswith("if snakemake has nothing to do)")


def test_a_foreign_duckdb_database_is_not_taken_for_results(tmp_path, capsys):
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    code, _, err = run(capsys, "scores", "--db", other)
    assert code == 2 and f"{other} is a DuckDB database but not biobench's results (it has no settings table)" in err


@pytest.mark.parametrize("content", [b"", b"PAR1 not a database at all" * 1000])
def test_a_file_that_is_not_duckdb_says_so(tmp_path, capsys, content):
    other = tmp_path / "results.duckdb"
    other.write_bytes(content)
    code, _, err = run(capsys, "compare", "alpha", "beta", "--db", other)
    assert code == 2
    assert err == (f"biobench: {other} is not a DuckDB database (it is not a DuckDB database file): pass --db the "
                   f"results database that `snakemake` writes, or delete {other} and run `snakemake --cores 8` to "
                   "rebuild it\n")


def test_console_script_is_installed():
    exe = shutil.which("biobench")
    if exe is None:
        pytest.skip("the biobench console script is not on PATH (package not installed)")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "biobench compare MODEL_A MODEL_B" in result.stdout
