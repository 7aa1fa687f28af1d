"""NeWT (Natural World Tasks; Van Horn et al., CVPR 2021): 164 binary tasks about natural-world images (species,
age, behaviour, health, context...), about 36,000 images in all, each image in exactly one task.

Source: the iNat competition bucket (AWS Open Data), with the MD5 checksums the visipedia/newt README publishes.
Layout: `newt2021_labels.csv` (columns id, task_cluster, task_subcluster, task, label, text_label, split, height,
width) and `newt2021_images/<id>.jpg`.

Protocol (biobench's `newt` module): the CSV's `split` column (train/test) per task; one classifier per task
(`group` = task name), an SVM ("svm", see biobench/classifiers/svm.py); accuracy pooled over the test examples of
all tasks; each prediction keeps its task, so per-task accuracy can be broken out. Labels are numbered across
tasks (task index * 2 + the CSV's 0/1), so that each number has one name ("<task>: <text_label>").
Prior work, as in BioBench's report: scored and shown, not part of the overall biology score.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from biobench.download import Remote, fetch_and_extract
from biobench.errors import DatasetCorruptError
from biobench.tasks.base import TASKS, SourceOptions, Task, limit_per_split, require_paths

BASE_URL = "https://ml-inat-competition-datasets.s3.amazonaws.com/newt"
LABELS = Remote(f"{BASE_URL}/newt2021_labels.csv.tar.gz", "newt2021_labels.csv.tar.gz",
                "md5:4cb26d0ee085904887b1ca14dcb893e7")
IMAGES = Remote(f"{BASE_URL}/newt2021_images.tar.gz", "newt2021_images.tar.gz", "md5:b04a56a5b1ffda87f16e6d4f81f9d38e")
LABELS_CSV = "newt2021_labels.csv"
IMAGES_DIR = "newt2021_images"
COLUMNS = ["id", "task_cluster", "task_subcluster", "task", "label", "text_label", "split"]


@TASKS.register("newt")
class NeWT(Task):
    name = "newt"
    Options = SourceOptions
    splits = ("train", "test")
    train_split = "train"
    eval_split = "test"
    metric = "accuracy"
    classifier = "svm"
    fit_per_group = True

    def download(self, options: SourceOptions, dest: Path) -> None:
        for remote in (LABELS, IMAGES):
            fetch_and_extract(remote.located(options.mirror), dest / "downloads", dest)

    def build_manifest(self, options: SourceOptions, data_dir: Path) -> pd.DataFrame:
        require_paths(self.name, data_dir, [LABELS_CSV, IMAGES_DIR])
        csv = pd.read_csv(data_dir / LABELS_CSV, dtype={"id": str, "task_subcluster": str})
        absent = [c for c in COLUMNS if c not in csv.columns]
        if absent:
            raise DatasetCorruptError(f"{data_dir / LABELS_CSV} lacks the columns {absent}; download it again")
        tasks = sorted(csv["task"].unique())
        index = {task: i for i, task in enumerate(tasks)}
        label = csv["task"].map(index) * 2 + csv["label"].astype(int)
        names = (csv["task"] + ": " + csv["text_label"].astype(str)).groupby(label).transform("first")
        images = (data_dir / IMAGES_DIR).resolve()
        frame = pd.DataFrame({
            "example_id": csv["id"],
            "split": csv["split"],
            "label": label,
            "label_name": names,
            "path": [str(images / f"{i}.jpg") for i in csv["id"]],
            "group": csv["task"],
            "cluster": csv["task_cluster"],
            "subcluster": csv["task_subcluster"].fillna(""),
        })
        frame = frame[frame["split"].isin(self.splits)]
        return limit_per_split(frame.reset_index(drop=True), options.max_per_split, options.seed)
