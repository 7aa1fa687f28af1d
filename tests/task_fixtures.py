"""Tiny copies of each task's published files, in the real formats and layouts (file names, CSV/JSON columns,
folder structure, archive format), and the shared run of a task's whole protocol on them.

Each `build_<task>(source)` writes the files the task downloads into `source`, laid out as under the source's
base URL, so that `mirror: <source>` makes the task fetch them through its real download code. Images are 8x8
JPEGs whose colour depends on the label, so raw pixels separate the classes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

from biobench.embed import EmbedJob, embed
from biobench.fit import FitJob, fit_and_predict
from biobench.manifest import write_manifest
from biobench.models import ModelSpec
from biobench.tasks import TASKS

PIXELS = ModelSpec(name="p", org="pixels", image_size=8)
COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 230], [230, 220, 40]])


def jpeg(label: int, rng: np.random.Generator, size: int = 8) -> bytes:
    pixels = COLOURS[label % len(COLOURS)] + rng.integers(-25, 25, (size, size, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def md5(path: Path) -> str:
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """A gzip tar holding `members` (name -> content), with entries for their folders, as `tar czf` writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folders = sorted({str(Path(name).parent) for name in members} - {"."})
    with tarfile.open(path, "w:gz") as tar:
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


# ----------------------------------------------------------------------------------------------------------------
# NeWT: newt2021_labels.csv.tar.gz (newt2021_labels.csv) and newt2021_images.tar.gz (newt2021_images/<id>.jpg)

NEWT_TASKS = [("ml_age_coopers_hawk", "appearance", "age", ("not_adult", "adult")),
              ("ml_bio_raptor_utility_pole", "context", "", ("neg", "pos")),
              ("fgvcx_icassava_healthy_vs_sick", "health", "", ("healthy", "sick"))]


def build_newt(source: Path, train_per_label: int = 3, test_per_label: int = 2) -> dict[str, str]:
    """Returns the MD5 of each archive (the real ones are in biobench.tasks.newt)."""
    rng = np.random.default_rng(0)
    rows, images = [], {}
    for task, cluster, subcluster, texts in NEWT_TASKS:
        for split, n in (("train", train_per_label), ("test", test_per_label)):
            for label in (0, 1):
                for _ in range(n):
                    image_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
                    images[f"newt2021_images/{image_id}.jpg"] = jpeg(label, rng)
                    rows.append((image_id, cluster, subcluster, task, label, texts[label], split, 8, 8))
    csv = pd.DataFrame(rows, columns=["id", "task_cluster", "task_subcluster", "task", "label", "text_label", "split",
                                      "height", "width"]).to_csv(index=False).encode()
    labels = write_tar(source / "newt2021_labels.csv.tar.gz", {"newt2021_labels.csv": csv})
    archive = write_tar(source / "newt2021_images.tar.gz", images)
    return {"LABELS": md5(labels), "IMAGES": md5(archive)}


# ----------------------------------------------------------------------------------------------------------------
# KABR: annotation/{classes.json,train.csv,val.csv}, dataset/image/<species>_part_xx and <species>_md5.txt

KABR_BEHAVIOURS = ["Walk", "Graze", "Browse", "Head Up", "Auto-Groom", "Trot", "Run", "Occluded"]
# (split, species, clip, number of frames, label of most frames)
KABR_CLIPS = [
    ("train", "giraffes", "G0001.01", 20, 0), ("train", "giraffes", "G0002.01", 18, 1),
    ("train", "zebras_grevys", "ZG0001.02", 80, 0), ("train", "zebras_grevys", "ZG0002.01", 10, 1),
    ("train", "zebras_plains", "ZP0001.01", 16, 1), ("train", "zebras_plains", "ZP0002.03", 17, 2),
    ("val", "giraffes", "G0003.01", 20, 0), ("val", "zebras_grevys", "ZG0003.01", 19, 1),
    ("val", "zebras_plains", "ZP0003.01", 16, 2),
]


def build_kabr(source: Path) -> None:
    from biobench.tasks.kabr import SPECIES_PARTS, part_names

    rng = np.random.default_rng(1)
    (source / "annotation").mkdir(parents=True, exist_ok=True)
    (source / "annotation/classes.json").write_text(json.dumps({n: i for i, n in enumerate(KABR_BEHAVIOURS)}))
    members: dict[str, dict[str, bytes]] = {species: {} for species in SPECIES_PARTS}
    lines = {"train": [], "val": []}
    for video_id, (split, species, clip, n, label) in enumerate(KABR_CLIPS, start=1):
        for frame_id in range(1, n + 1):
            frame_label = label if frame_id % 7 else (label + 3) % len(KABR_BEHAVIOURS)  # a few off-label frames
            path = f"{clip}/{frame_id:04d}.jpg"
            members[species][path] = jpeg(frame_label, rng)
            lines[split].append(f"{clip} {video_id} {frame_id} {path} {frame_label}")
    for split, rows in lines.items():
        (source / f"annotation/{split}.csv").write_text(
            "original_vido_id video_id frame_id path labels\n" + "\n".join(rows) + "\n")
    for species, files in members.items():
        whole = write_zip(source / "tmp" / f"{species}.zip", files).read_bytes()
        names = part_names(species)
        cuts = np.linspace(0, len(whole), len(names) + 1).astype(int)
        for name, a, b in zip(names, cuts[:-1], cuts[1:]):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(whole[a:b])
        (source / f"dataset/image/{species}_md5.txt").write_text(
            f"{hashlib.md5(whole).hexdigest()}  {species}.zip\n")
    for tmp in (source / "tmp").iterdir():
        tmp.unlink()
    (source / "tmp").rmdir()


# ----------------------------------------------------------------------------------------------------------------
# Pl@ntNet-300K: zenodo-5645731.json (the record's metadata) and plantnet_300K.zip

PLANTNET_SPECIES = {"1355868": "Lactuca virosa L.", "1355920": "Pelargonium zonale (L.) L'Her.",
                    "1356022": "Cirsium arvense (L.) Scop."}


def build_plantnet(source: Path, per_split: dict[str, int] | None = None) -> None:
    per_split = per_split or {"train": 4, "val": 2, "test": 1}
    rng = np.random.default_rng(2)
    members, metadata = {}, {}
    for label, species in enumerate(PLANTNET_SPECIES):
        for split, n in per_split.items():
            for _ in range(n):
                image = hashlib.sha1(rng.bytes(8)).hexdigest()
                members[f"plantnet_300K/images/{split}/{species}/{image}.jpg"] = jpeg(label, rng)
                metadata[image] = {"species_id": species, "obs_id": image[:8], "organ": "leaf", "split": split}
    members["plantnet_300K/plantnet300K_species_id_2_name.json"] = json.dumps(PLANTNET_SPECIES).encode()
    members["plantnet_300K/plantnet300K_metadata.json"] = json.dumps(metadata).encode()
    archive = write_zip(source / "plantnet_300K.zip", members)
    record = {"id": "5645731", "files": {"enabled": True, "entries": {"plantnet_300K.zip": {
        "key": "plantnet_300K.zip", "checksum": md5(archive), "size": archive.stat().st_size}}}}
    (source / "zenodo-5645731.json").write_text(json.dumps(record, indent=2))


# ----------------------------------------------------------------------------------------------------------------
# iWildCam (WILDS v2.0): iwildcam_v2.0.tar.gz with metadata.csv, categories.csv, RELEASE_v2.0.txt, train/<file>

IWILDCAM_CATEGORIES = [(0, 0, "empty"), (1, 2, "tayassu pecari"), (2, 3, "dasyprocta punctata")]


def build_iwildcam(source: Path) -> None:
    rng = np.random.default_rng(3)
    members, rows = {}, []
    counts = {"train": 4, "val": 1, "test": 2, "id_val": 1, "id_test": 1}
    for y, category_id, _ in IWILDCAM_CATEGORIES:
        for split, n in counts.items():
            for i in range(n):
                filename = f"{uuid.UUID(bytes=rng.bytes(16), version=1)}.jpg"
                members[f"train/{filename}"] = jpeg(y, rng)
                location = {"train": 10, "val": 20, "test": 30}.get(split, 10) + i
                rows.append((split, location, location * 7, len(rows), f"seq{len(rows)}",
                             "2013-06-09 16:06:31.000", y, category_id, filename))
    metadata = pd.DataFrame(rows, columns=["split", "location_remapped", "location", "sequence_remapped", "seq_id",
                                           "datetime", "y", "category_id", "filename"])
    members["metadata.csv"] = metadata.to_csv().encode()
    members["categories.csv"] = pd.DataFrame(IWILDCAM_CATEGORIES, columns=["y", "category_id", "name"]).to_csv(
        index=False).encode()
    members["RELEASE_v2.0.txt"] = b"v2.0\n"
    write_tar(source / "iwildcam_v2.0.tar.gz", members)


# ----------------------------------------------------------------------------------------------------------------
# ImageNet-1K: an ILSVRC2012 copy (Kaggle layout or wnid folders) and the Hugging Face archives

IMAGENET_WNIDS = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
                  "n01484850": "great white shark, white shark"}


def build_imagenet_folders(root: Path, *, kaggle: bool, train_per_class: int = 4, val_per_class: int = 2) -> None:
    """`kaggle`: images under ILSVRC/Data/CLS-LOC/, a flat val/ and LOC_val_solution.csv, LOC_synset_mapping.txt;
    otherwise train/<wnid>/ and val/<wnid>/ (image-net.org's ILSVRC2012 after valprep)."""
    rng = np.random.default_rng(4)
    images = root / "ILSVRC/Data/CLS-LOC" if kaggle else root
    solution = []
    for label, wnid in enumerate(IMAGENET_WNIDS):
        for i in range(train_per_class):
            path = images / "train" / wnid / f"{wnid}_{1000 + i}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg(label, rng))
        for i in range(val_per_class):
            stem = f"ILSVRC2012_val_{len(solution) + 1:08d}"
            path = images / "val" / (stem + ".JPEG" if kaggle else f"{wnid}/{stem}.JPEG")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg(label, rng))
            solution.append((stem, f"{wnid} 10 20 200 300 {wnid} 5 5 50 50 "))
    if kaggle:
        pd.DataFrame(solution, columns=["ImageId", "PredictionString"]).to_csv(root / "LOC_val_solution.csv",
                                                                               index=False)
        (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {n}\n" for w, n in IMAGENET_WNIDS.items()))


def build_imagenet_hf(source: Path) -> None:
    """The Hugging Face dataset's archives: train_images_{0..4}.tar.gz and val_images.tar.gz, flat
    `<id>_<wnid>.JPEG` members."""
    rng = np.random.default_rng(5)
    shards: list[dict[str, bytes]] = [{} for _ in range(5)]
    val = {}
    for label, wnid in enumerate(IMAGENET_WNIDS):
        for i in range(5):
            shards[i][f"{wnid}_{2000 + i}_{wnid}.JPEG"] = jpeg(label, rng)
        for i in range(2):
            val[f"ILSVRC2012_val_{label * 2 + i + 1:08d}_{wnid}.JPEG"] = jpeg(label, rng)
    for i, shard in enumerate(shards):
        write_tar(source / f"train_images_{i}.tar.gz", shard)
    write_tar(source / "val_images.tar.gz", val)


# ----------------------------------------------------------------------------------------------------------------
# The protocol, end to end


def with_checksums(module: Any, monkeypatch, checksums: dict[str, str]) -> None:
    """Make the task's published Remote constants expect the fixture's archives instead of the real ones."""
    for attr, checksum in checksums.items():
        monkeypatch.setattr(module, attr, dataclasses.replace(getattr(module, attr), checksum=checksum))


@dataclass(frozen=True)
class ProtocolRun:
    manifest: pd.DataFrame
    predictions: pd.DataFrame
    metadata: dict[str, Any]


def run_protocol(task_name: str, options: dict[str, Any], data_dir: Path, work: Path,
                 classifier_params: dict[str, Any], n_train: int = 0) -> ProtocolRun:
    """Manifest -> embed the train and eval splits with raw pixels -> the task's classifier, with the task's reference
    settings under `classifier_params` as the workflow passes them -> predictions."""
    task = TASKS.get(task_name)
    manifest_path = work / "manifest.parquet"
    manifest = write_manifest(task_name, options, data_dir, manifest_path)
    embeddings = {}
    for split in (task.train_split, task.eval_split):
        embeddings[split] = work / f"{split}.parquet"
        embed(EmbedJob(manifest_path, split, PIXELS, embeddings[split], device="cpu", num_workers=0,
                       frame_pooling=task.frame_pooling, threads=1))
    out = work / "predictions.parquet"
    metadata = fit_and_predict(FitJob(task_name, "p", manifest_path, embeddings[task.train_split],
                                      embeddings[task.eval_split], out, task.classifier,
                                      task().classifier_settings(classifier_params), device="cpu", n_train=n_train))
    predictions = pq.read_table(out).to_pandas()
    evaluated = manifest[manifest["split"] == task.eval_split]
    assert predictions["example_id"].tolist() == evaluated["example_id"].tolist()
    assert (predictions["y_true"].to_numpy() == evaluated["label"].to_numpy()).all()
    assert ((predictions["score"] == 1.0) == (predictions["y_true"] == predictions["y_pred"])).all()
    assert predictions["prob"].between(0, 1).all()
    return ProtocolRun(manifest, predictions, metadata)
