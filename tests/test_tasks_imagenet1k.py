"""ImageNet-1K: no anonymous download; the ILSVRC2012 layouts (wnid folders, Kaggle) and the Hugging Face archives."""

from __future__ import annotations

import pytest

from biobench.errors import DatasetCorruptError, DatasetMissingError
from biobench.tasks import TASKS
from task_fixtures import IMAGENET_WNIDS, build_imagenet_folders, build_imagenet_hf, run_protocol

task = TASKS.get("imagenet1k")()


def test_download_without_a_mirror_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"cannot be downloaded without an account.*datadir.*HF_TOKEN"):
        task.download(task.Options(), tmp_path)


def test_hugging_face_archives_download_manifest_embed_fit_score(tmp_path):
    build_imagenet_hf(tmp_path / "source")
    data = tmp_path / "data"
    task.download(task.Options(mirror=str(tmp_path / "source")), data)
    run = run_protocol("imagenet1k", {}, data, tmp_path / "work", {"Cs": [1.0]})
    assert run.manifest["split"].value_counts().to_dict() == {"train": 15, "val": 6}
    assert run.manifest["label_name"].tolist()[:1] == ["n01440764"]  # no synset names in these archives
    assert run.metadata["metric"] == "accuracy" and run.metadata["benchmark"] is False
    assert run.predictions["score"].mean() > 0.8


def test_kaggle_layout_with_val_solution_and_names(tmp_path):
    build_imagenet_folders(tmp_path, kaggle=True)
    frame = task.build_manifest(task.Options(), tmp_path)
    assert frame["split"].value_counts().to_dict() == {"train": 12, "val": 6}
    val = frame[frame["split"] == "val"]
    assert val["wnid"].tolist() == [w for w in IMAGENET_WNIDS for _ in range(2)]
    assert frame.groupby("wnid")["label"].first().tolist() == [0, 1, 2]
    assert set(frame["label_name"]) == {"tench", "goldfish", "great white shark"}


def test_wnid_folder_layout(tmp_path):
    build_imagenet_folders(tmp_path, kaggle=False)
    frame = task.build_manifest(task.Options(max_per_split=3), tmp_path)
    assert frame["split"].value_counts().to_dict() == {"train": 3, "val": 3}
    assert frame.groupby("split")["wnid"].nunique().to_dict() == {"train": 3, "val": 3}  # one per class


def test_flat_val_without_labels_is_refused(tmp_path):
    build_imagenet_folders(tmp_path, kaggle=True)
    (tmp_path / "LOC_val_solution.csv").unlink()
    with pytest.raises(DatasetCorruptError, match=r"6 image\(s\) in .*val have no class.*LOC_val_solution.csv"):
        task.build_manifest(task.Options(), tmp_path)


def test_missing_layout_is_named(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"has no train/ and val/ folders.*snakemake prepare.*datadir"):
        task.build_manifest(task.Options(), tmp_path)
