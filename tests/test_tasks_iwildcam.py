"""iWildCam (WILDS v2.0): the WILDS archive, metadata.csv's official splits, train -> OOD test, macro-F1."""

from __future__ import annotations

import shutil

import pytest

from biobench.errors import DatasetCorruptError, DatasetMissingError
from biobench.tasks import TASKS
from task_fixtures import IWILDCAM_CATEGORIES, build_iwildcam, run_protocol

task = TASKS.get("iwildcam")()


@pytest.fixture
def iwildcam_data(tmp_path):
    build_iwildcam(tmp_path / "source")
    data = tmp_path / "data"
    task.download(task.Options(mirror=str(tmp_path / "source")), data)
    return data


def test_download_manifest_embed_fit_score(iwildcam_data, tmp_path):
    assert (iwildcam_data / "iwildcam_v2.0/metadata.csv").is_file()
    run = run_protocol("iwildcam", {}, iwildcam_data, tmp_path / "work", {"Cs": [1.0]})
    manifest = run.manifest
    assert manifest["split"].value_counts().to_dict() == {"train": 12, "test": 6}  # val, id_val, id_test unused
    assert dict(zip(manifest["label"], manifest["label_name"])) == {y: name for y, _, name in IWILDCAM_CATEGORIES}
    assert run.metadata["metric"] == "macro_f1" and run.metadata["split"] == "test"
    assert run.predictions["score"].mean() > 0.8


def test_datadir_may_be_a_wilds_root_or_the_dataset_folder(iwildcam_data):
    root = task.build_manifest(task.Options(), iwildcam_data)
    inner = task.build_manifest(task.Options(), iwildcam_data / "iwildcam_v2.0")
    assert root["path"].tolist() == inner["path"].tolist()


def test_truncated_archive_is_refused(tmp_path):
    build_iwildcam(tmp_path / "source")
    archive = tmp_path / "source/iwildcam_v2.0.tar.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DatasetCorruptError, match="damaged or incomplete"):
        task.download(task.Options(mirror=str(tmp_path / "source")), tmp_path / "data")
    assert not (tmp_path / "data/iwildcam_v2.0/.iwildcam_v2.0.tar.gz.extracted").exists()


def test_missing_metadata_is_named(iwildcam_data):
    (iwildcam_data / "iwildcam_v2.0/metadata.csv").unlink()
    with pytest.raises(DatasetMissingError, match=r"lacks metadata.csv.*snakemake prepare.*datadir"):
        task.build_manifest(task.Options(), iwildcam_data)


def test_missing_images_stop_the_manifest(iwildcam_data, tmp_path):
    shutil.rmtree(iwildcam_data / "iwildcam_v2.0/train")
    (iwildcam_data / "iwildcam_v2.0/train").mkdir()
    from biobench.manifest import write_manifest

    with pytest.raises(DatasetCorruptError, match="18 file.* missing.*snakemake prepare"):
        write_manifest("iwildcam", {}, iwildcam_data, tmp_path / "m.parquet")


def test_source_has_fallback_locations_and_a_mirror_replaces_them(tmp_path):
    from biobench.tasks.iwildcam import ARCHIVE

    assert len(ARCHIVE.locations) >= 2 and ARCHIVE.locations[0].startswith("https://worksheets.codalab.org/")
    assert ARCHIVE.located(str(tmp_path)).locations == ((tmp_path / "iwildcam_v2.0.tar.gz").as_uri(),)


def test_archive_is_recorded_and_a_different_one_later_refused(tmp_path):
    build_iwildcam(tmp_path / "source")
    task.download(task.Options(mirror=str(tmp_path / "source")), tmp_path / "data")
    assert "iwildcam_v2.0.tar.gz" in (tmp_path / "data.recorded-sha256.json").read_text()
    shutil.rmtree(tmp_path / "data")
    archive = tmp_path / "source/iwildcam_v2.0.tar.gz"
    archive.write_bytes(archive.read_bytes() + b"\0" * 512)
    with pytest.raises(DatasetCorruptError, match=r"sha256 is [0-9a-f]{64}, expected [0-9a-f]{64} as recorded"):
        task.download(task.Options(mirror=str(tmp_path / "source")), tmp_path / "data")
