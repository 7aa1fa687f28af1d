"""KABR: split-zip download checked against the published MD5, clips sampled at a stride, frames max-pooled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biobench.errors import DatasetCorruptError, DatasetMissingError
from biobench.tasks import TASKS
from biobench.tasks.kabr import part_names, sample_frames
from task_fixtures import KABR_CLIPS, build_kabr, run_protocol

task = TASKS.get("kabr")()


@pytest.fixture
def kabr_source(tmp_path):
    build_kabr(tmp_path / "source")
    return tmp_path / "source"


@pytest.fixture
def kabr_data(kabr_source, tmp_path):
    data = tmp_path / "data"
    task.download(task.Options(mirror=str(kabr_source)), data)
    return data


def test_part_names_follow_the_published_ranges():
    assert part_names("giraffes") == [f"dataset/image/giraffes_part_a{c}" for c in "abcd"]
    assert len(part_names("zebras_grevys")) == 13 and part_names("zebras_plains")[-1].endswith("_part_al")


def test_download_manifest_embed_fit_score(kabr_data, tmp_path):
    assert not any((kabr_data / "downloads/dataset/image").iterdir())  # parts and joined zips are removed
    run = run_protocol("kabr", {}, kabr_data, tmp_path / "work", {"Cs": [1.0]})
    manifest = run.manifest
    kept = [c for c in KABR_CLIPS if c[3] >= 16]
    assert len(manifest) == len(kept)  # the 10-frame clip is left out
    assert (manifest["frames"].map(len) == 16).all()
    assert (manifest["path"] == manifest["frames"].str[0]).all()
    assert manifest["label"].tolist() == [c[4] for c in kept]  # the mode of the sampled frames' labels
    assert manifest.loc[0, "label_name"] == "Walk"
    assert run.metadata["metric"] == "macro_f1" and run.metadata["split"] == "val"
    assert len(run.predictions) == sum(c[0] == "val" for c in kept)


def test_frames_are_max_pooled(kabr_data, tmp_path):
    from biobench.embed import EmbedJob, embed, read_embeddings
    from biobench.images import open_rgb
    from biobench.manifest import write_manifest
    from biobench.models.pixels import RawPixels
    from task_fixtures import PIXELS

    manifest = write_manifest("kabr", {}, kabr_data, tmp_path / "m.parquet")
    embed(EmbedJob(tmp_path / "m.parquet", "val", PIXELS, tmp_path / "e.parquet", device="cpu", num_workers=0,
                   frame_pooling=task.frame_pooling))
    ids, matrix, _ = read_embeddings(tmp_path / "e.parquet")
    first = manifest.set_index("example_id").loc[ids[0], "frames"]
    transform = RawPixels(8).make_transform()
    expected = np.max([transform(open_rgb(p)).flatten().numpy() for p in first], axis=0)
    np.testing.assert_allclose(matrix[0], expected, rtol=1e-6)


def test_stride_shrinks_for_short_clips_and_start_is_seeded():
    rng = np.random.default_rng(0)
    long = sample_frames(80, 16, 5, rng)
    assert np.diff(long).tolist() == [5] * 15 and 0 <= long[0] <= 4
    assert np.diff(sample_frames(40, 16, 5, rng)).tolist() == [2] * 15
    assert sample_frames(16, 16, 5, rng).tolist() == list(range(16))
    assert sample_frames(15, 16, 5, rng) is None
    a = [sample_frames(200, 16, 5, np.random.default_rng(3))[0] for _ in range(2)]
    assert a[0] == a[1]


def test_manifest_is_seeded(kabr_data):
    one = task.build_manifest(task.Options(seed=1), kabr_data)
    assert one["frames"].tolist() == task.build_manifest(task.Options(seed=1), kabr_data)["frames"].tolist()
    other = task.build_manifest(task.Options(seed=2), kabr_data)
    assert one["frames"].tolist() != other["frames"].tolist()


def test_damaged_part_fails_the_md5_and_is_fetched_again(kabr_source, tmp_path):
    part = kabr_source / part_names("zebras_plains")[3]
    good = part.read_bytes()
    part.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    data = tmp_path / "data"
    with pytest.raises(DatasetCorruptError,
                       match=r"zebras_plains.zip.joining: md5 is .*, expected .* as published for .*zebras_plains_md5"):
        task.download(task.Options(mirror=str(kabr_source)), data)
    assert not list((data / "downloads/dataset/image").glob("zebras_plains*"))
    part.write_bytes(good)
    task.download(task.Options(mirror=str(kabr_source)), data)  # the species already unpacked are not refetched
    assert (data / "dataset/image/.zebras_plains.extracted").exists()


def test_datadir_without_annotations(tmp_path):
    (tmp_path / "dataset/image").mkdir(parents=True)
    with pytest.raises(DatasetMissingError, match=r"lacks annotation/classes.json.*snakemake prepare"):
        task.build_manifest(task.Options(), tmp_path)


def test_annotation_with_wrong_columns(kabr_data):
    path = kabr_data / "annotation/val.csv"
    pd.read_csv(path, sep=" ").rename(columns={"labels": "label"}).to_csv(path, sep=" ", index=False)
    with pytest.raises(DatasetCorruptError, match="lacks the columns"):
        task.build_manifest(task.Options(), kabr_data)


def test_annotation_cut_short_is_refused_before_it_is_recorded(kabr_source, tmp_path):
    csv = kabr_source / "annotation/train.csv"
    text = csv.read_text()
    csv.write_text(text[: text.index("\n", len(text) // 2) + 12])  # ends in the middle of a row
    with pytest.raises(DatasetCorruptError, match=r"data/annotation/train.csv \(downloaded from file://.*train.csv\): "
                                                  r"line \d+ has \d fields, expected 5; the file is incomplete"):
        task.download(task.Options(mirror=str(kabr_source)), tmp_path / "data")
    assert not (tmp_path / "data/annotation/train.csv").exists()
    assert "annotation/train.csv" not in (tmp_path / "data.recorded-sha256.json").read_text()


def test_annotations_and_md5_files_are_recorded_beside_the_data_folder(kabr_data, kabr_source, tmp_path):
    import json
    import shutil

    recorded = json.loads((tmp_path / "data.recorded-sha256.json").read_text())
    assert set(recorded) == {"annotation/classes.json", "annotation/train.csv", "annotation/val.csv",
                             *(f"dataset/image/{s}_md5.txt" for s in ("giraffes", "zebras_grevys", "zebras_plains"))}
    shutil.rmtree(kabr_data)
    (kabr_source / "annotation/classes.json").write_text('{"Walk": 0}')
    with pytest.raises(DatasetCorruptError, match="annotation/classes.json.*as recorded in"):
        task.download(task.Options(mirror=str(kabr_source)), kabr_data)
