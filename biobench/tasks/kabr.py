"""KABR (Kenyan Animal Behavior Recognition; Kholiavchenko et al., WACV-W 2024): drone video of giraffes, Grevy's
and plains zebras, cut into per-animal clips stored as JPEG frames, each frame labelled with a behaviour.

Source: the imageomics/KABR dataset on Hugging Face. Each species' frames are one zip, published in parts
(`dataset/image/<species>_part_aa`, `_ab`, ...) with its MD5 in `dataset/image/<species>_md5.txt`; the parts are
joined, checked and unpacked into `dataset/image/`. Annotations: `annotation/{train,val}.csv`, space-separated
with the header `original_vido_id video_id frame_id path labels` (path relative to `dataset/image/`), and
`annotation/classes.json` (behaviour name -> label).

Protocol (biobench's `kabr` module): train.csv trains, val.csv is reported. A clip is `frames` (16) frames taken
every `stride` (5) frames from a seeded random start; when the clip is too short for that, the stride shrinks
until it fits, and clips with fewer than `frames` frames are left out. Each frame is embedded and the clip's
feature is their element-wise max; its label is the most common label of those frames (ties: the smallest).
Classifier: logistic regression ("logreg") with the original's settings (its `init_logreg_clf`): balanced class
weights, C chosen by macro-F1 under 5-fold stratified cross-validation of train (over a grid of C rather than the
original's 30 random draws); metric macro-F1. One of BioBench's benchmark tasks.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from biobench.download import Recorded, Remote, extract, fetch, verify_checksum
from biobench.errors import DatasetCorruptError
from biobench.tasks.base import TASKS, SourceOptions, Task, limit_per_split, require_at_least, require_paths

log = logging.getLogger(__name__)

BASE_URL = "https://huggingface.co/datasets/imageomics/KABR/resolve/main/KABR"
IMAGE_DIR = "dataset/image"
ANNOTATIONS = ("annotation/classes.json", "annotation/train.csv", "annotation/val.csv")
SPECIES_PARTS = {"giraffes": ("aa", "ad"), "zebras_grevys": ("aa", "am"), "zebras_plains": ("aa", "al")}
CSV_COLUMNS = ["original_vido_id", "video_id", "frame_id", "path", "labels"]


@dataclass(frozen=True)
class KABROptions(SourceOptions):
    frames: int = 16  # frames per clip
    stride: int = 5  # frames between two sampled frames (shrunk for short clips)

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, "frames", 1)
        require_at_least(self, "stride", 1)


def part_names(species: str) -> list[str]:
    first, last = SPECIES_PARTS[species]
    return [f"{IMAGE_DIR}/{species}_part_{a}{b}" for a in map(chr, range(ord(first[0]), ord(last[0]) + 1))
            for b in map(chr, range(ord(first[1]), ord(last[1]) + 1))]


@TASKS.register("kabr")
class KABR(Task):
    name = "kabr"
    Options = KABROptions
    splits = ("train", "val")
    train_split = "train"
    eval_split = "val"
    metric = "macro_f1"
    benchmark = True
    classifier = "logreg"
    # biobench.helpers.init_logreg_clf: class_weight="balanced", C chosen by macro-F1 under 5-fold cross-validation
    classifier_params = {"class_weight": "balanced", "cv_folds": 5}
    frame_pooling = "max"

    def download(self, options: KABROptions, dest: Path) -> None:
        recorded = Recorded.beside(dest)  # the annotations and MD5 files have no published checksum
        for name in ANNOTATIONS:
            fetch(Remote(f"{BASE_URL}/{name}", name).located(options.mirror), dest / name, recorded,
                  check_classes if name.endswith(".json") else check_csv)
        for species in SPECIES_PARTS:
            self._download_species(species, options.mirror, dest, recorded)

    def _download_species(self, species: str, mirror: str, dest: Path, recorded: Recorded) -> None:
        marker = dest / IMAGE_DIR / f".{species}.extracted"
        if marker.exists():
            return
        md5_name = f"{IMAGE_DIR}/{species}_md5.txt"
        md5_file = fetch(Remote(f"{BASE_URL}/{md5_name}", md5_name).located(mirror), dest / md5_name, recorded,
                         check_md5)
        published = md5_file.read_text().split()
        # The parts are held to the joined zip's published MD5, not each to a recorded sha256.
        parts = [fetch(Remote(f"{BASE_URL}/{name}", name).located(mirror), dest / "downloads" / name)
                 for name in part_names(species)]
        archive = dest / "downloads" / IMAGE_DIR / f"{species}.zip"
        joined = archive.with_name(archive.name + ".joining")
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(1 << 20):
                        out.write(block)
        try:
            verify_checksum(joined, f"md5:{published[0]}", f"{BASE_URL}/{md5_name}")
        except DatasetCorruptError:
            joined.unlink()
            for part in parts:  # which part is damaged cannot be told: fetch them all again next time
                part.unlink()
            raise
        os.replace(joined, archive)
        log.info("extracting %s into %s", archive, dest / IMAGE_DIR)
        extract(archive, dest / IMAGE_DIR)
        marker.write_text(f"{published[0]}\n")
        archive.unlink()
        for part in parts:
            part.unlink()

    def build_manifest(self, options: KABROptions, data_dir: Path) -> pd.DataFrame:
        require_paths(self.name, data_dir, [*ANNOTATIONS, IMAGE_DIR])
        with open(data_dir / "annotation/classes.json") as f:
            names = {int(label): str(name) for name, label in json.load(f).items()}
        rng = np.random.default_rng(options.seed)
        images = (data_dir / IMAGE_DIR).resolve()
        rows = []
        for split in self.splits:
            csv_path = data_dir / f"annotation/{split}.csv"
            table = pd.read_csv(csv_path, sep=" ", dtype={"original_vido_id": str, "path": str})
            absent = [c for c in CSV_COLUMNS if c not in table.columns]
            if absent:
                raise DatasetCorruptError(f"{csv_path} lacks the columns {absent}; download it again")
            for video_id, clip in table.sort_values(["video_id", "frame_id"], kind="stable").groupby(
                    "video_id", sort=True):
                chosen = sample_frames(len(clip), options.frames, options.stride, rng)
                if chosen is None:
                    continue
                labels = clip["labels"].to_numpy(np.int64)[chosen]
                label = int(np.bincount(labels).argmax())
                frames = [str(images / p) for p in clip["path"].to_numpy()[chosen]]
                rows.append((f"{split}/{video_id}", split, label, names.get(label, str(label)), frames[0], frames,
                             clip["original_vido_id"].iloc[0]))
        frame = pd.DataFrame(rows, columns=["example_id", "split", "label", "label_name", "path", "frames", "clip"])
        frame["group"] = None
        return limit_per_split(frame, options.max_per_split, options.seed)


def check_md5(path: Path) -> None:
    if not re.match(r"[0-9a-fA-F]{32}(\s|$)", path.read_text(errors="replace")):
        raise DatasetCorruptError("it does not start with an MD5 (32 hex digits)")


def check_classes(path: Path) -> None:
    try:
        classes = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetCorruptError(f"it is not complete JSON ({err})") from None
    if not isinstance(classes, dict) or not classes:
        raise DatasetCorruptError("it is not a JSON object of behaviour name -> label")


def check_csv(path: Path) -> None:
    """The header, and five space-separated fields on every row: a row cut short has fewer."""
    with open(path, errors="replace") as f:
        header = f.readline().split()
        if header != CSV_COLUMNS:
            raise DatasetCorruptError(f"its header is {header}, expected {CSV_COLUMNS}")
        for number, line in enumerate(f, start=2):
            if line.strip() and len(line.split()) != len(CSV_COLUMNS):
                raise DatasetCorruptError(f"line {number} has {len(line.split())} fields, expected {len(CSV_COLUMNS)}")


def sample_frames(n: int, frames: int, stride: int, rng: np.random.Generator) -> np.ndarray | None:
    """Indices of `frames` frames, `stride` apart (less if the clip is short), from a random start; None if the
    clip has fewer than `frames` frames."""
    if n < frames:
        return None
    while (frames - 1) * stride + 1 > n:
        stride -= 1
    margin = n - ((frames - 1) * stride + 1)
    start = int(rng.integers(0, margin + 1))
    return start + stride * np.arange(frames)
