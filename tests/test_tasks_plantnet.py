"""Pl@ntNet-300K: the zip checked against the MD5 in Zenodo's record metadata, species folders, train -> val."""

from __future__ import annotations

import json

import pytest

from biobench.errors import DatasetCorruptError, DatasetMissingError
from biobench.tasks import TASKS
from task_fixtures import PLANTNET_SPECIES, build_plantnet, run_protocol

task = TASKS.get("plantnet")()


@pytest.fixture
def plantnet_source(tmp_path):
    build_plantnet(tmp_path / "source")
    return tmp_path / "source"


def test_download_manifest_embed_fit_score(plantnet_source, tmp_path):
    data = tmp_path / "data"
    task.download(task.Options(mirror=str(plantnet_source)), data)
    assert not (data / "downloads/plantnet_300K.zip").exists()
    run = run_protocol("plantnet", {}, data, tmp_path / "work", {"Cs": [0.1, 1.0], "val_fraction": 0.25})
    manifest = run.manifest
    assert manifest["split"].value_counts().to_dict() == {"train": 12, "val": 6}  # test is not used
    assert sorted(manifest["label_name"].unique()) == sorted(PLANTNET_SPECIES.values())
    assert manifest.groupby("label_name")["label"].first().to_dict() == {
        name: i for i, name in enumerate(PLANTNET_SPECIES.values())}  # classes in sorted species-id order
    assert run.metadata["metric"] == "macro_f1" and run.metadata["split"] == "val"
    assert "validation" in run.metadata["classifier"]["fitted"]  # C chosen on rows carved from train
    assert run.predictions["score"].mean() > 0.8


def test_datadir_may_be_the_unpacked_folder_or_its_parent(plantnet_source, tmp_path):
    data = tmp_path / "data"
    task.download(task.Options(mirror=str(plantnet_source)), data)
    parent = task.build_manifest(task.Options(), data)
    inner = task.build_manifest(task.Options(), data / "plantnet_300K")
    assert parent["path"].tolist() == inner["path"].tolist()


def test_checksum_from_the_record_is_enforced(plantnet_source, tmp_path):
    record = plantnet_source / "zenodo-5645731.json"
    meta = json.loads(record.read_text())
    meta["files"]["entries"]["plantnet_300K.zip"]["checksum"] = "md5:" + "0" * 32
    record.write_text(json.dumps(meta))
    with pytest.raises(DatasetCorruptError, match="md5 is .*, expected 0000.* as published for .*plantnet_300K.zip"):
        task.download(task.Options(mirror=str(plantnet_source)), tmp_path / "data")


def test_record_without_checksum_is_refused_and_dropped(plantnet_source, tmp_path):
    (plantnet_source / "zenodo-5645731.json").write_text(json.dumps({"files": {"entries": {}}}))
    with pytest.raises(DatasetCorruptError, match="gives no MD5 for plantnet_300K.zip"):
        task.download(task.Options(mirror=str(plantnet_source)), tmp_path / "data")
    assert not (tmp_path / "data/downloads/zenodo-5645731.json").exists()


def test_half_downloaded_zip_is_resumed(plantnet_source, tmp_path):
    whole = (plantnet_source / "plantnet_300K.zip").read_bytes()
    part = tmp_path / "data/downloads/plantnet_300K.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(whole[: len(whole) // 3])
    task.download(task.Options(mirror=str(plantnet_source)), tmp_path / "data")
    assert (tmp_path / "data/plantnet_300K/images/val").is_dir() and not part.exists()


def test_missing_split_folder_is_named(plantnet_source, tmp_path):
    (tmp_path / "plantnet_300K/images/train/1355868").mkdir(parents=True)
    with pytest.raises(DatasetMissingError, match=r"lacks images/val/<species>/.*snakemake prepare"):
        task.build_manifest(task.Options(), tmp_path)


def test_md5_in_the_record_must_stay_the_one_first_read(plantnet_source, tmp_path):
    import shutil

    task.download(task.Options(mirror=str(plantnet_source)), tmp_path / "data")
    recorded = json.loads((tmp_path / "data.recorded-sha256.json").read_text())
    assert set(recorded) == {"plantnet_300K.zip"}  # the record's JSON itself changes over time: not pinned
    shutil.rmtree(tmp_path / "data")
    build_plantnet(plantnet_source, {"train": 2, "val": 1, "test": 1})  # another archive, and a record naming it
    with pytest.raises(DatasetCorruptError, match=r"the MD5 that .*zenodo-5645731.json gives for plantnet_300K.zip: "
                                                  r"md5 is [0-9a-f]{32}, expected [0-9a-f]{32} as recorded in"):
        task.download(task.Options(mirror=str(plantnet_source)), tmp_path / "data")
    assert not (tmp_path / "data/downloads/zenodo-5645731.json").exists()


def test_truncated_record_is_named_as_such(plantnet_source, tmp_path):
    record = plantnet_source / "zenodo-5645731.json"
    record.write_text(record.read_text()[:40])
    with pytest.raises(DatasetCorruptError, match=r"not complete JSON.*ended early.*run the download again"):
        task.download(task.Options(mirror=str(plantnet_source)), tmp_path / "data")
