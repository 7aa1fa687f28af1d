"""Animal silhouettes: 10,000 labelled 28x28 silhouettes of 10 animal classes, shipped in the MIT-licensed wheel
`animal-mnist==0.4`. The built-in offline default task: small enough for a laptop CPU, real enough that pretrained
features beat raw pixels and random init by a wide margin.

Layout written by `download`: `images/<Class>/<index>.png` (an ImageFolder tree) plus the verified wheel in `wheel/`.
Exact duplicate images (the wheel has 9,716 distinct images) are written once, and images whose copies disagree on the
label are dropped, so no test image also appears in train. The split is stratified and fixed by the seed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from biobench.download import pip_download
from biobench.errors import DatasetCorruptError, DatasetMissingError
from biobench.tasks.base import TASKS, Task, TaskOptions, require_at_least

WHEEL = "animal_mnist-0.4-py3-none-any.whl"
WHEEL_SHA256 = "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce"
MEMBERS = {
    "images": "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz",
    "labels": "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz",
}
CLASSES = ("Bear", "Bird", "Cat", "Cow", "Dog", "Elephant", "Giraffe", "Horse", "Sheep", "Zebra")


@dataclass(frozen=True)
class AnimalsOptions(TaskOptions):
    train_size: int = 2000
    test_size: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("train_size", "test_size"):  # the split is stratified: at least one image of each class
            require_at_least(self, name, len(CLASSES), " (images; at least one per class)")


@TASKS.register("animals")
class Animals(Task):
    name = "animals"
    Options = AnimalsOptions
    metric = "accuracy"

    def download(self, options: TaskOptions, dest: Path) -> None:
        wheel = pip_download("animal-mnist==0.4", WHEEL, WHEEL_SHA256, dest / "wheel")
        images, labels = read_wheel(wheel)
        write_image_folder(images, labels, dest / "images")

    def build_manifest(self, options: AnimalsOptions, data_dir: Path) -> pd.DataFrame:
        root = data_dir / "images"
        rows = [
            (f"{cls}/{png.stem}", i, cls, str(png.resolve()))
            for i, cls in enumerate(CLASSES)
            for png in sorted((root / cls).glob("*.png"))
        ] if root.is_dir() else []
        if not rows:
            raise DatasetMissingError(
                f"task animals: no images under {root}. Run `snakemake prepare` (or `snakemake --cores 1 "
                f"download_animals`) to fetch them, or point tasks.animals.datadir at an existing copy."
            )
        frame = pd.DataFrame(rows, columns=["example_id", "label", "label_name", "path"])
        frame["split"] = stratified_split(frame["label"].to_numpy(), options.train_size, options.test_size,
                                          options.seed)
        frame["group"] = None
        return frame[frame["split"] != ""].reset_index(drop=True)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The wheel stores numpy arrays as pickles; allow the array constructors and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise DatasetCorruptError(f"animal-mnist data refers to {module}.{name}; refusing to unpickle it")
        core = getattr(np, "_core", None) or np.core
        return {"_reconstruct": core.multiarray._reconstruct, "ndarray": np.ndarray, "dtype": np.dtype}[name]


def read_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with zipfile.ZipFile(wheel) as zf:
            arrays = {k: _NumpyOnlyUnpickler(io.BytesIO(gzip.decompress(zf.read(m)))).load() for k, m in MEMBERS.items()}
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, pickle.UnpicklingError) as err:
        raise DatasetCorruptError(f"{wheel}: cannot read the animal-mnist data ({err}); delete it and download again")
    images, labels = np.asarray(arrays["images"]), np.asarray(arrays["labels"])
    if images.shape != (10000, 28, 28) or labels.shape != (10000,) or images.dtype != np.uint8:
        raise DatasetCorruptError(f"{wheel}: unexpected arrays {images.shape}/{images.dtype}, {labels.shape}")
    return images, labels.astype(np.int64)


def write_image_folder(images: np.ndarray, labels: np.ndarray, root: Path) -> None:
    first_label: dict[bytes, int] = {}
    conflicting: set[bytes] = set()
    for image, label in zip(images, labels):
        digest = hashlib.sha1(image.tobytes()).digest()
        if first_label.setdefault(digest, int(label)) != label:
            conflicting.add(digest)
    written: set[bytes] = set()
    for index, (image, label) in enumerate(zip(images, labels)):
        digest = hashlib.sha1(image.tobytes()).digest()
        if digest in written or digest in conflicting:
            continue
        written.add(digest)
        path = root / CLASSES[label] / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(path)


def stratified_split(labels: np.ndarray, train_size: int, test_size: int, seed: int) -> np.ndarray:
    """'train', 'test' or '' (unused) per row: per class, a seeded shuffle, then proportional shares of each size."""
    if train_size + test_size > len(labels):
        raise DatasetMissingError(
            f"task animals: train_size + test_size = {train_size + test_size} but only {len(labels)} distinct "
            "images exist; lower them in config.yaml"
        )
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    used, _ = (index, None) if train_size + test_size == len(labels) else train_test_split(
        index, train_size=train_size + test_size, stratify=labels, random_state=seed)
    train, test = train_test_split(used, train_size=train_size, test_size=test_size, stratify=labels[used],
                                   random_state=seed)
    split = np.full(len(labels), "", dtype=object)
    split[train], split[test] = "train", "test"
    return split
