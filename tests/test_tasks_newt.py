"""NeWT: download from a mirror of the published archives, the CSV layout, one SVM per task, and the svm protocol."""

from __future__ import annotations

import numpy as np
import pytest

import biobench.classifiers.svm  # noqa: F401  (registers "svm" until biobench.classifiers imports it)
from biobench.classifiers import CLASSIFIERS
from biobench.errors import ConfigError, DatasetCorruptError, DatasetMissingError
from biobench.tasks import TASKS, newt
from task_fixtures import NEWT_TASKS, build_newt, run_protocol, with_checksums

task = TASKS.get("newt")()


@pytest.fixture
def newt_data(tmp_path, monkeypatch):
    source = tmp_path / "source"
    with_checksums(newt, monkeypatch, build_newt(source, train_per_label=5))
    data = tmp_path / "data"
    task.download(task.Options(mirror=str(source)), data)
    return data


def test_download_manifest_embed_fit_score(newt_data, tmp_path):
    assert (newt_data / "newt2021_labels.csv").is_file()
    assert not any((newt_data / "downloads").iterdir())  # archives are deleted once unpacked
    run = run_protocol("newt", {}, newt_data, tmp_path / "work",
                       {"n_iter": 6, "folds": 2, "min_train": 4})
    names = sorted(t[0] for t in NEWT_TASKS)
    assert sorted(run.predictions["group"].unique()) == names
    assert sorted(run.metadata["classifier"]["fitted"]) == names  # one classifier per NeWT task
    fitted = run.metadata["classifier"]["fitted"].values()
    assert all(f["search"] == "random, 6 candidates, 2-fold" for f in fitted)
    assert run.metadata["metric"] == "accuracy"
    assert run.predictions["score"].mean() > 0.8  # the fixture's classes differ in colour
    manifest = run.manifest
    assert manifest.groupby("group")["label"].nunique().eq(2).all()  # each task is binary
    assert manifest.groupby("label")["label_name"].nunique().eq(1).all()  # each label number has one name
    assert manifest.loc[manifest["group"] == "ml_age_coopers_hawk", "label_name"].str.endswith("adult").all()


def test_download_again_is_a_no_op(newt_data, tmp_path):
    task.download(task.Options(mirror=str(tmp_path / "nowhere")), newt_data)  # markers say it is all there


def test_published_checksums_are_enforced(tmp_path):
    source = tmp_path / "source"
    build_newt(source)  # the fixture's archives are not the published ones
    with pytest.raises(DatasetCorruptError,
                       match="md5 is .*, expected 4cb26d0e.* as published for .*newt2021_labels.csv.tar.gz"):
        task.download(task.Options(mirror=str(source)), tmp_path / "data")
    assert not (tmp_path / "data/downloads/newt2021_labels.csv.tar.gz").exists()
    assert not (tmp_path / "data/downloads/newt2021_labels.csv.tar.gz.part").exists()


def test_missing_mirror_file_names_url_and_fixes(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"could not download file://.*newt2021_labels.*mirror"):
        task.download(task.Options(mirror=str(tmp_path / "empty")), tmp_path / "data")


def test_datadir_without_the_layout_names_what_is_missing(tmp_path):
    (tmp_path / "newt2021_images").mkdir()
    with pytest.raises(DatasetMissingError, match=r"lacks newt2021_labels.csv.*snakemake prepare.*datadir"):
        task.build_manifest(task.Options(), tmp_path)


def test_missing_image_stops_the_manifest(newt_data, tmp_path):
    next((newt_data / "newt2021_images").glob("*.jpg")).unlink()
    from biobench.manifest import write_manifest

    with pytest.raises(DatasetCorruptError, match="1 file.* missing"):
        write_manifest("newt", {}, newt_data, tmp_path / "m.parquet")


def test_max_per_split_keeps_every_task_and_label(newt_data):
    frame = task.build_manifest(task.Options(max_per_split=12, seed=1), newt_data)
    assert frame["split"].value_counts().to_dict() == {"train": 12, "test": 12}
    assert frame.groupby(["split", "group"])["label"].nunique().eq(2).all()
    again = task.build_manifest(task.Options(max_per_split=12, seed=1), newt_data)
    assert frame["example_id"].tolist() == again["example_id"].tolist()


# The svm protocol ------------------------------------------------------------------------------------------------


def blobs(n_per_class=20, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 1, (n_per_class, d)), rng.normal(0, 1, (n_per_class, d)) + 1.5])
    return x.astype(np.float32), np.repeat([3, 8], n_per_class)


def test_no_search_is_a_linear_svc_on_centred_unit_features():
    from sklearn.svm import SVC

    x, y = blobs()
    clf = CLASSIFIERS.get("svm")(n_iter=0, metric="accuracy")
    clf.fit(x, y)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    centred = unit - unit.mean(0)
    reference = SVC(kernel="linear", C=1.0).fit(centred / np.linalg.norm(centred, axis=1, keepdims=True), y)
    x_test, _ = blobs(seed=1)
    unit_test = x_test / np.linalg.norm(x_test, axis=1, keepdims=True) - unit.mean(0)
    expected = reference.predict(unit_test / np.linalg.norm(unit_test, axis=1, keepdims=True))
    y_pred, prob = clf.predict(x_test)
    assert (y_pred == expected).all() and set(y_pred) <= {3, 8}
    assert ((prob >= 0.5) & (prob <= 1)).all()
    assert clf.summary()["search"] == "none: linear kernel, C = 1"


def test_search_is_seeded_and_reports_its_choice():
    x, y = blobs()
    first = CLASSIFIERS.get("svm")(n_iter=5, folds=3, metric="macro_f1", seed=7)
    second = CLASSIFIERS.get("svm")(n_iter=5, folds=3, metric="macro_f1", seed=7)
    first.fit(x, y)
    second.fit(x, y)
    a, b = first.summary(), second.summary()
    assert a["kernel"] in ("rbf", "linear", "sigmoid", "poly") and 1e-3 <= a["C"] <= 10 and 1e-4 <= a["gamma"] <= 1e-3
    assert (a["kernel"], a["C"], a["gamma"]) == (b["kernel"], b["C"], b["gamma"])
    assert a["search"] == "random, 5 candidates, 3-fold"


def test_too_few_rows_fall_back_to_the_linear_svc():
    x, y = blobs(n_per_class=4)
    clf = CLASSIFIERS.get("svm")(n_iter=5, metric="accuracy")
    clf.fit(x, y)
    assert clf.summary()["search"].startswith("none: linear kernel, C = 1 (8 training rows")


@pytest.mark.parametrize("params", [{"n_iter": -1}, {"folds": 1}, {"C": [1, 0.1]}, {"kernels": ["cubic"]},
                                    {"gamma": [0, 1]}, {"n_iter": 1.5}])
def test_bad_params_are_config_errors(params):
    with pytest.raises(ConfigError, match="classifier 'svm'"):
        CLASSIFIERS.get("svm")(**params)
