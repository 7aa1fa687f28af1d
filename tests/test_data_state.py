"""A manifest knows what its files looked like, and a changed file is caught at planning and at embedding."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from biobench import data_state
from biobench.atomic import atomic_path
from biobench.errors import BiobenchError
from biobench.manifest import write_manifest
from biobench.tasks import TASKS
from task_fixtures import build_kabr


def tree(root):
    (root / "images/a").mkdir(parents=True)
    (root / "images/a/1.png").write_bytes(b"one")
    (root / "images/a/2.png").write_bytes(b"two")
    (root / "annotation.csv").write_text("path,label\n1.png,0\n2.png,1\n")
    return root


def test_fingerprint_follows_every_file_but_not_bookkeeping(tmp_path):
    root = tree(tmp_path / "data")
    first = data_state.fingerprint(root)
    assert data_state.fingerprint(root, threads=1) == first and first["files"] == 3
    (root / data_state.DOWNLOAD_STAMP).write_text("{}")
    with atomic_path(root / "images/a/3.png") as tmp:
        tmp.write_bytes(b"half")
        assert data_state.fingerprint(root) == first
    added = data_state.fingerprint(root)
    assert added["fingerprint"] != first["fingerprint"] and added["files"] == 4
    assert {f for f in first["folders"] if added["folders"].get(f) != first["folders"][f]} == {"images/a"}
    (root / "images/a/3.png").unlink()
    assert data_state.fingerprint(root) == first
    (root / "annotation.csv").write_text("path,label\n1.png,0\n")  # a removed annotation row
    assert data_state.fingerprint(root)["fingerprint"] != first["fingerprint"]


def test_fingerprint_sees_same_size_rewrites_and_follows_symlinks_without_looping(tmp_path):
    root = tree(tmp_path / "data")
    (root / "loop").symlink_to(root)
    (root / "linked").symlink_to(tree(tmp_path / "elsewhere") / "images")
    (root / "again").symlink_to(root / "images")
    first = data_state.fingerprint(root)
    assert first["files"] == 7 and all(data_state.fingerprint(root) == first for _ in range(5))
    os.utime(tmp_path / "elsewhere/images/a/1.png", ns=(0, 123))
    assert data_state.fingerprint(root)["fingerprint"] != first["fingerprint"]


def test_manifest_records_file_stats_for_images_and_frames(tmp_path):
    build_kabr(tmp_path / "source")
    kabr = TASKS.get("kabr")()
    kabr.download(kabr.Options(mirror=str(tmp_path / "source")), tmp_path / "kabr")
    frame = write_manifest("kabr", {}, tmp_path / "kabr", tmp_path / "m.parquet")
    clip = frame.iloc[0]
    assert len(clip[data_state.SIZE]) == len(clip["frames"])
    stat = os.stat(clip["frames"][3])
    assert (clip[data_state.SIZE][3], clip[data_state.MTIME][3]) == (stat.st_size, stat.st_mtime_ns)
    sizes, mtimes = data_state.split_stats(tmp_path / "m.parquet", clip["split"])
    in_split = frame[frame["split"] == clip["split"]]
    assert len(sizes) == len(mtimes) == sum(len(f) for f in in_split["frames"])
    assert data_state.stale_reason(tmp_path / "m.parquet", tmp_path / "kabr") is None


def test_a_changed_file_makes_the_state_file_newer_than_the_manifest_and_is_named(tmp_path, animals_copy):
    manifest, state = tmp_path / "m.parquet", tmp_path / "m.files.json"
    warnings = []
    assert not data_state.refresh_state("animals", animals_copy, manifest, state, warnings.append)  # before any run
    frame = write_manifest("animals", {"train_size": 20, "test_size": 10}, animals_copy, manifest)
    assert not data_state.refresh_state("animals", animals_copy, manifest, state, warnings.append)
    assert state.stat().st_mtime_ns <= manifest.stat().st_mtime_ns and warnings == []
    unchanged = state.stat().st_mtime_ns
    assert not data_state.refresh_state("animals", animals_copy, manifest, state, warnings.append)
    assert state.stat().st_mtime_ns == unchanged
    target = frame["path"].iloc[0]
    os.utime(target, ns=(0, os.stat(target).st_mtime_ns + 1))
    assert data_state.refresh_state("animals", animals_copy, manifest, state, warnings.append)
    assert state.stat().st_mtime_ns > manifest.stat().st_mtime_ns
    assert target in warnings[0] and "task animals" in warnings[0]
    write_manifest("animals", {"train_size": 20, "test_size": 10}, animals_copy, manifest)  # what snakemake runs
    assert not data_state.refresh_state("animals", animals_copy, manifest, state, warnings.append)
    assert state.stat().st_mtime_ns <= manifest.stat().st_mtime_ns and len(warnings) == 1


def test_an_added_image_makes_the_manifest_stale(tmp_path, animals_copy):
    manifest = tmp_path / "m.parquet"
    write_manifest("animals", {"train_size": 20, "test_size": 10}, animals_copy, manifest)
    (animals_copy / "images/Cat/new.png").write_bytes((animals_copy / "images/Dog").iterdir().__next__().read_bytes())
    reason = data_state.stale_reason(manifest, animals_copy)
    assert reason is not None and "images/Cat" in reason


def test_a_manifest_without_a_record_is_stale(tmp_path):
    root = tree(tmp_path / "data")
    manifest = tmp_path / "m.parquet"
    pd.DataFrame({"path": [str(root / "images/a/1.png")]}).to_parquet(manifest)
    assert "no fingerprint" in data_state.stale_reason(manifest, root)


def test_check_files_names_the_changed_file_and_the_fix(tmp_path):
    root = tree(tmp_path / "data")
    paths = [str(root / "images/a/1.png"), str(root / "images/a/2.png")]
    frame = data_state.with_file_stats(pd.DataFrame({"path": paths}))
    sizes, mtimes = frame[data_state.SIZE].to_numpy(), frame[data_state.MTIME].to_numpy()
    data_state.check_files("m.parquet", paths, sizes, mtimes)
    (root / "images/a/2.png").write_bytes(b"TWO")
    with pytest.raises(BiobenchError, match=r"2\.png changed since m\.parquet was built.*Re-run snakemake"):
        data_state.check_files("m.parquet", paths, sizes, mtimes)
    os.unlink(paths[1])
    with pytest.raises(BiobenchError, match=r"2\.png is missing"):
        data_state.check_files("m.parquet", paths, sizes, mtimes)
    assert np.array_equal(data_state.with_file_stats(pd.DataFrame({"path": paths}))[data_state.SIZE], [3, -1])
