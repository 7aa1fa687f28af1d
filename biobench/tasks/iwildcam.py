"""iWildCam 2020 as packaged by WILDS (Beery et al. 2020; Koh et al., ICML 2021): camera-trap photos labelled by
animal species, from a few hundred camera locations; the test split holds locations never seen in training.

Source: the WILDS v2.0 archive on CodaLab (the URL the `wilds` package uses; about 12 GB), which has failed since
2025 (WILDS issues #171, #174, #175); then the same bundle over plain HTTP, as the `wilds` package falls back to.
Set `mirror:` to a folder or URL holding `iwildcam_v2.0.tar.gz` to fetch it elsewhere. No checksum is published: the
sha256 of the first copy downloaded is recorded and later copies must match it, and the gzip checksum is verified
while unpacking. Layout: `iwildcam_v2.0/metadata.csv`
(columns include split, y, filename), `iwildcam_v2.0/categories.csv` (y, category_id, name), and every image in
`iwildcam_v2.0/train/<filename>`.

Protocol (biobench's `iwildcam` module): WILDS' official split scheme, `train` trains and `test` (the
out-of-distribution locations) is reported. Labels are WILDS' `y`. Classifier: logistic regression with C chosen
on a split of train ("logreg"; biobench fits a softmax linear probe); metric macro-F1.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from biobench.download import Recorded, Remote, fetch_and_extract
from biobench.errors import DatasetCorruptError
from biobench.tasks.base import TASKS, SourceOptions, Task, limit_per_split, require_paths

ARCHIVE = Remote(
    "https://worksheets.codalab.org/rest/bundles/0x6313da2b204647e79a14b468131fcd64/contents/blob/",
    "iwildcam_v2.0.tar.gz",
    fallbacks=("http://worksheets.codalab.org/rest/bundles/0x6313da2b204647e79a14b468131fcd64/contents/blob/",),
)
TOP = "iwildcam_v2.0"


@TASKS.register("iwildcam")
class IWildCam(Task):
    name = "iwildcam"
    Options = SourceOptions
    splits = ("train", "test")
    train_split = "train"
    eval_split = "test"
    metric = "macro_f1"
    benchmark = True
    classifier = "logreg"

    def download(self, options: SourceOptions, dest: Path) -> None:
        fetch_and_extract(ARCHIVE.located(options.mirror), dest / "downloads", dest / TOP, Recorded.beside(dest))

    def build_manifest(self, options: SourceOptions, data_dir: Path) -> pd.DataFrame:
        root = data_dir / TOP if (data_dir / TOP).is_dir() else data_dir  # a WILDS root_dir, or the dataset itself
        require_paths(self.name, root, ["metadata.csv", "train"])
        metadata = pd.read_csv(root / "metadata.csv", dtype={"filename": str, "split": str})
        absent = [c for c in ("split", "y", "filename") if c not in metadata.columns]
        if absent:
            raise DatasetCorruptError(f"{root / 'metadata.csv'} lacks the columns {absent}; download it again")
        names = category_names(root / "categories.csv")
        metadata = metadata[metadata["split"].isin(self.splits)]
        images = (root / "train").resolve()
        frame = pd.DataFrame({
            "example_id": metadata["filename"].str.rsplit(".", n=1).str[0],
            "split": metadata["split"],
            "label": metadata["y"].astype(int),
            "label_name": [names.get(int(y), str(y)) for y in metadata["y"]],
            "path": [str(images / f) for f in metadata["filename"]],
            "group": None,
        })
        return limit_per_split(frame.reset_index(drop=True), options.max_per_split, options.seed)


def category_names(path: Path) -> dict[int, str]:
    """WILDS' y -> species name, from categories.csv when it is there and has those columns."""
    if not path.exists():
        return {}
    table = pd.read_csv(path)
    if not {"y", "name"} <= set(table.columns):
        return {}
    return {int(y): str(name) for y, name in zip(table["y"], table["name"])}
