"""ImageNet-1K (ILSVRC 2012; Russakovsky et al. 2015): 1.28 M training and 50,000 validation photos of 1,000
everyday object classes. The reference point, not a biology task: it is left out of the overall biology score.

Source: ImageNet is only given out after accepting its terms, so there is no anonymous download. Either
- set `datadir` to an existing copy in one of the standard layouts: `train/<wnid>/*.JPEG` with `val/<wnid>/*.JPEG`
  (image-net.org's ILSVRC2012 after the usual valprep), or a flat `val/` labelled by `LOC_val_solution.csv`
  (the Kaggle copy, whose images are under `ILSVRC/Data/CLS-LOC/`); or
- set `mirror` to where the Hugging Face dataset ILSVRC/imagenet-1k keeps its archives (`train_images_0.tar.gz` ...
  `train_images_4.tar.gz`, `val_images.tar.gz`): a local folder holding them, or
  https://huggingface.co/datasets/ILSVRC/imagenet-1k/resolve/main/data with HF_TOKEN set to the token of an
  account that accepted the terms. Their images are named `<id>_<wnid>.JPEG`.
Class names come from `LOC_synset_mapping.txt` where present; otherwise the wnid is the name.

Protocol (biobench's `imagenet1k` module): train trains, validation is reported; classes are the wnids in sorted
order. Classifier: logistic regression with C chosen on a split of train ("logreg"; biobench fits a softmax linear
probe); metric top-1 accuracy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from biobench.download import Recorded, Remote, fetch_and_extract
from biobench.errors import DatasetCorruptError, DatasetMissingError
from biobench.tasks.base import TASKS, SourceOptions, Task, data_missing, limit_per_split

HF_DATA_URL = "https://huggingface.co/datasets/ILSVRC/imagenet-1k/resolve/main/data"
HF_ARCHIVES = {"train": [f"train_images_{i}.tar.gz" for i in range(5)], "val": ["val_images.tar.gz"]}
IMAGE_ROOTS = ("", "ILSVRC/Data/CLS-LOC")  # image-net.org / Hugging Face layout, Kaggle layout
VAL_SOLUTION = "LOC_val_solution.csv"
SYNSET_NAMES = "LOC_synset_mapping.txt"
WNID = re.compile(r"n\d{8}")
WNID_SUFFIX = re.compile(r"_(n\d{8})$")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


@TASKS.register("imagenet1k")
class ImageNet1K(Task):
    name = "imagenet1k"
    Options = SourceOptions
    splits = ("train", "val")
    train_split = "train"
    eval_split = "val"
    metric = "accuracy"
    classifier = "logreg"

    def download(self, options: SourceOptions, dest: Path) -> None:
        if not options.mirror:
            raise DatasetMissingError(
                "task imagenet1k: ImageNet cannot be downloaded without an account that accepted its terms. Either "
                "set tasks.imagenet1k.datadir to your ILSVRC2012 copy (train/<wnid>/ and val/<wnid>/, or a flat val/ "
                f"with {VAL_SOLUTION}, or the Kaggle folder), or accept the terms of the Hugging Face dataset "
                f"ILSVRC/imagenet-1k, set HF_TOKEN, and set tasks.imagenet1k.mirror to {HF_DATA_URL} (or to a "
                "folder holding its train_images_*.tar.gz and val_images.tar.gz); then run snakemake prepare."
            )
        for split, names in HF_ARCHIVES.items():
            for name in names:
                fetch_and_extract(Remote(f"{HF_DATA_URL}/{name}", name).located(options.mirror), dest / "downloads",
                                  dest / split, Recorded.beside(dest))

    def build_manifest(self, options: SourceOptions, data_dir: Path) -> pd.DataFrame:
        root = next((data_dir / r for r in IMAGE_ROOTS if (data_dir / r / "train").is_dir()), None)
        if root is None or not (root / "val").is_dir():
            raise data_missing(self.name, f"{data_dir} has no train/ and val/ folders (nor ILSVRC/Data/CLS-LOC/"
                                          "train and val); see the task's documentation for the layouts it reads")
        solution = _find(data_dir, root, VAL_SOLUTION)
        val_labels = _val_solution(solution) if solution else {}
        frames = {split: _list_split(root / split, val_labels if split == "val" else {}) for split in self.splits}
        wnids = sorted(frames["train"]["wnid"].unique())
        unknown = sorted(set(frames["val"]["wnid"]) - set(wnids))
        if unknown:
            raise DatasetCorruptError(f"task imagenet1k: val has classes with no training images, e.g. {unknown[0]}")
        names_file = _find(data_dir, root, SYNSET_NAMES)
        names = _synset_names(names_file) if names_file else {}
        index = {w: i for i, w in enumerate(wnids)}
        frame = pd.concat([f.assign(split=s) for s, f in frames.items()], ignore_index=True)
        frame["label"] = frame["wnid"].map(index)
        frame["label_name"] = [names.get(w, w) for w in frame["wnid"]]
        frame["group"] = None
        frame = frame[["example_id", "split", "label", "label_name", "path", "group", "wnid"]]
        return limit_per_split(frame, options.max_per_split, options.seed)


def _find(data_dir: Path, root: Path, name: str) -> Path | None:
    return next((d / name for d in (data_dir, root) if (d / name).is_file()), None)


def _list_split(folder: Path, solution: dict[str, str]) -> pd.DataFrame:
    """Every image under `folder` with its wnid: from its folder's name, its file name's `_<wnid>` suffix (Hugging
    Face), or `solution` (image id -> wnid, for a flat val folder)."""
    rows, unlabelled = [], []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        suffix = WNID_SUFFIX.search(path.stem)
        wnid = (path.parent.name if WNID.fullmatch(path.parent.name)
                else suffix[1] if suffix else solution.get(path.stem))
        if wnid is None:
            unlabelled.append(path)
            continue
        rows.append((f"{folder.name}/{path.stem}", str(path.resolve()), wnid))
    if unlabelled:
        raise DatasetCorruptError(
            f"task imagenet1k: {len(unlabelled)} image(s) in {folder} have no class, e.g. {unlabelled[0]}: they are "
            f"neither in a <wnid>/ folder nor named <id>_<wnid>, and no {VAL_SOLUTION} lists them. Put "
            f"{VAL_SOLUTION} in the datadir, or sort val into wnid folders."
        )
    if not rows:
        raise data_missing("imagenet1k", f"{folder} holds no images")
    return pd.DataFrame(rows, columns=["example_id", "path", "wnid"])


def _val_solution(path: Path) -> dict[str, str]:
    """LOC_val_solution.csv: ImageId, PredictionString ("<wnid> x0 y0 x1 y1 <wnid> ..."); its first wnid is the
    class."""
    table = pd.read_csv(path, dtype=str)
    if not {"ImageId", "PredictionString"} <= set(table.columns):
        raise DatasetCorruptError(f"{path} lacks the columns ImageId and PredictionString")
    return dict(zip(table["ImageId"], table["PredictionString"].str.split().str[0]))


def _synset_names(path: Path) -> dict[str, str]:
    """LOC_synset_mapping.txt: one "<wnid> <names, comma separated>" per line; the first name is used."""
    names = {}
    for line in path.read_text().splitlines():
        wnid, _, rest = line.strip().partition(" ")
        if WNID.fullmatch(wnid):
            names[wnid] = rest.split(",")[0].strip() or wnid
    return names
