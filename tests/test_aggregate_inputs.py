"""aggregate() on bad inputs: each gives an error, or a recorded warning, that names the task, the model and the file.

Prediction files are written as the fit rule writes them (`simulate.write_task`) and then damaged."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biobench import aggregate as agg
from biobench.aggregate import MIN_EXAMPLES, PredictionsError, aggregate
from biobench.stats import simulate

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def write(root: Path, task: str = "kabr", *, n: int = 40, metric: str = "accuracy") -> list[Path]:
    rng = np.random.default_rng(len(task) + n)
    y_true = rng.integers(0, 3, n)
    predictions = {"bioclip": y_true.copy(), "dino": np.where(rng.random(n) < 0.5, y_true, (y_true + 1) % 3)}
    return simulate.write_task(root, task, metric=metric, labels=["a", "b", "c"], y_true=y_true,
                               predictions=predictions)


def replace_column(path: Path, column: str, values: pa.Array) -> None:
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index(column), column, values)
    pq.write_table(table, path)  # the schema keeps the biobench metadata


def keep_rows(path: Path, stop: int) -> None:
    pq.write_table(pq.read_table(path).slice(0, stop), path)


def model_of(path: Path) -> str:
    return json.loads(pq.read_schema(path).metadata[b"biobench"])["model"]


def refused(paths: list[Path], root: Path) -> str:
    with pytest.raises(PredictionsError) as error:
        aggregate(paths, root / "db.duckdb", n_resamples=50)
    assert not (root / "db.duckdb").exists()
    return str(error.value)


def names(message: str, task: str, path: Path) -> bool:
    return f"task {task!r}, model {model_of(path)!r}: {path}" in message


def test_an_empty_evaluation_split_is_an_error_naming_the_task_models_and_files(tmp_path):
    paths = write(tmp_path)
    manifest = tmp_path / "manifests" / "kabr.parquet"
    pq.write_table(pq.read_table(manifest).slice(0, 0), manifest)
    for path in paths:
        keep_rows(path, 0)
    message = refused(paths, tmp_path)
    assert message.startswith(f"task 'kabr': split 'test' of the manifest {manifest} has no examples")
    assert all(f"model {model_of(p)!r}: {p}" in message for p in paths)


def test_an_empty_predictions_file_is_an_error_naming_it(tmp_path):
    paths = write(tmp_path)
    keep_rows(paths[1], 0)
    message = refused(paths, tmp_path)
    assert names(message, "kabr", paths[1]) and "holds no prediction rows for the 40 examples" in message
    assert str(paths[0]) not in message


def test_prediction_files_that_are_all_empty_are_named_each(tmp_path):
    paths = write(tmp_path)
    for path in paths:
        keep_rows(path, 0)
    message = refused(paths, tmp_path)
    assert all(names(message, "kabr", p) for p in paths) and message.count("holds no prediction rows") == 2


def test_nan_scores_are_refused_before_any_task_is_resampled(tmp_path, monkeypatch):
    good = write(tmp_path, "beluga")  # sorted first: it would be resampled first
    bad = write(tmp_path, "fishnet", metric="mean_score")
    scores = pq.read_table(bad[0])["score"].to_numpy().copy()
    scores[[3, 7]] = np.nan
    replace_column(bad[0], "score", pa.array(scores))
    monkeypatch.setattr(agg, "score_tasks", lambda *a, **k: pytest.fail("resampled before checking the inputs"))
    message = refused(good + bad, tmp_path)
    assert names(message, "fishnet", bad[0]) and "has 2 missing, NaN or infinite score value(s)" in message


@pytest.mark.parametrize("score, shown", [(1.5, "from 0 to 1.5"), (-0.25, "from -0.25 to 1")])
def test_mean_scores_outside_zero_to_one_are_refused(tmp_path, score, shown):
    paths = write(tmp_path, "fishnet", metric="mean_score")
    scores = pq.read_table(paths[1])["score"].to_numpy().copy()
    scores[0] = score
    replace_column(paths[1], "score", pa.array(scores))
    message = refused(paths, tmp_path)
    assert names(message, "fishnet", paths[1]) and f"1 score value(s) outside [0, 1] ({shown})" in message


def test_scores_outside_zero_to_one_are_allowed_for_other_metrics(tmp_path):
    paths = write(tmp_path)
    replace_column(paths[1], "score", pa.array(np.full(40, 2.0)))
    aggregate(paths, tmp_path / "db.duckdb", n_resamples=50)


def test_string_labels_are_refused_naming_the_column_and_type(tmp_path):
    paths = write(tmp_path)
    labels = pq.read_table(paths[0])["y_true"].to_numpy()
    replace_column(paths[0], "y_true", pa.array([f"class-{y}" for y in labels]))
    message = refused(paths, tmp_path)
    assert f"task 'kabr', model 'bioclip': {paths[0]} stores y_true as text (UTF8), not numbers" in message


def test_float_predictions_holding_nan_are_refused(tmp_path):
    paths = write(tmp_path)
    y_pred = pq.read_table(paths[1])["y_pred"].to_numpy().astype(np.float64)
    y_pred[5] = np.nan
    replace_column(paths[1], "y_pred", pa.array(y_pred))
    message = refused(paths, tmp_path)
    assert names(message, "kabr", paths[1]) and "has 1 y_pred value(s) that are not label ids" in message


def test_float_predictions_holding_whole_numbers_are_scored_like_integers(tmp_path):
    paths = write(tmp_path)
    aggregate(paths, tmp_path / "ints.duckdb", n_resamples=50)
    replace_column(paths[1], "y_pred", pa.array(pq.read_table(paths[1])["y_pred"].to_numpy().astype(np.float64)))
    aggregate(paths, tmp_path / "floats.duckdb", n_resamples=50)
    sql = "SELECT model, value, ci_low FROM task_scores ORDER BY model"
    with duckdb.connect(str(tmp_path / "ints.duckdb")) as a, duckdb.connect(str(tmp_path / "floats.duckdb")) as b:
        assert a.execute(sql).fetchall() == b.execute(sql).fetchall()


def test_examples_every_model_skipped_are_an_error_not_a_smaller_n(tmp_path):
    paths = write(tmp_path)
    for path in paths:
        keep_rows(path, 39)
    message = refused(paths, tmp_path)
    assert all(names(message, "kabr", p) for p in paths)
    assert "has 39 prediction rows for the 40 examples of split 'test'" in message
    assert "no model of the task has a row for every example" in message


def test_examples_some_models_skipped_are_an_error_naming_those_models(tmp_path):
    paths = write(tmp_path)
    keep_rows(paths[0], 38)
    message = refused(paths, tmp_path)
    assert names(message, "kabr", paths[0]) and str(paths[1]) not in message
    assert "has 38 prediction rows for the 40 examples" in message and "no model of the task" not in message


def test_every_problem_is_reported_at_once(tmp_path):
    paths = write(tmp_path, "beluga") + write(tmp_path, "kabr")
    keep_rows(paths[0], 0)
    replace_column(paths[3], "score", pa.array(np.full(40, np.nan)))
    message = refused(paths, tmp_path)
    assert names(message, "beluga", paths[0]) and names(message, "kabr", paths[3])


@pytest.mark.parametrize("n", [1, MIN_EXAMPLES - 1])
def test_a_task_with_few_examples_claims_no_significance_and_says_so(tmp_path, caplog, n):
    rng = np.random.default_rng(n)
    paths = []
    for task, size in (("kabr", n), ("plankton", MIN_EXAMPLES)):
        y_true = rng.integers(0, 3, size)
        paths += simulate.write_task(tmp_path, task, metric="accuracy", labels=["a", "b", "c"], y_true=y_true,
                                     predictions={"right": y_true, "wrong": (y_true + 1) % 3})
    db = tmp_path / "db.duckdb"
    with caplog.at_level(logging.WARNING, logger="biobench.aggregate"):
        aggregate(paths, db, n_resamples=200)
    with duckdb.connect(str(db), read_only=True) as con:
        few = con.execute("SELECT p_value FROM pairwise WHERE task = 'kabr'").fetchall()
        enough = con.execute("SELECT p_value FROM pairwise WHERE task = 'plankton'").fetchall()
        tied = con.execute("SELECT task, model, tied_with_best, n FROM task_scores ORDER BY task, model").fetchall()
        notes = con.execute("SELECT task, model, predictions_path, message FROM warnings ORDER BY model").fetchall()
        setting = con.execute("SELECT value FROM settings WHERE key = 'warnings'").fetchall()[0][0]
    assert few == [(1.0,), (1.0,)] and enough == [(2 / 201,), (2 / 201,)]
    assert tied == [("kabr", "right", True, n), ("kabr", "wrong", True, n),
                    ("plankton", "right", True, MIN_EXAMPLES), ("plankton", "wrong", False, MIN_EXAMPLES)]
    kabr = [p for p in paths if "/kabr-" in str(p)]
    assert [(t, m, p) for t, m, p, _ in notes] == [("kabr", model_of(p), str(p)) for p in kabr]
    for (_, _, path, message), record in zip(notes, caplog.records):
        assert message.startswith(f"task 'kabr', model {model_of(Path(path))!r}, {path}: only {n} evaluation "
                                  f"example(s), fewer than {MIN_EXAMPLES}")
        assert record.getMessage() == message and "p-values are set to 1" in message
    assert setting.startswith("2 (table warnings") and f"task 'kabr': only {n} evaluation" in setting
    assert "plankton" not in setting
