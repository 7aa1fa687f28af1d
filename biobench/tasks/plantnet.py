"""Pl@ntNet-300K (Garcin et al., NeurIPS Datasets and Benchmarks 2021): 306,146 plant photos of 1,081 species
from the Pl@ntNet citizen-science app, long-tailed and with visually ambiguous species.

Source: Zenodo record 5645731 (version 1.1, the one biobench uses), `plantnet_300K.zip` (29.5 GB), checked against
the MD5 that Zenodo publishes in the record's metadata. That metadata (`export/json`) has no checksum of its own and
changes over time (versions, statistics), so its bytes are not pinned: it must parse and give an MD5, and that MD5
must be the one it gave at the first download (recorded beside the data folder), whichever copy it comes from.
Layout after unpacking: `plantnet_300K/images/{train,val,test}/<species_id>/<image>.jpg`, plus
`plantnet300K_species_id_2_name.json` (species id -> name).

Protocol (biobench's `plantnet` module): images/train trains, images/val is reported (test is unused); classes
are the species folders of train and val together, in sorted order. Classifier: logistic regression with C chosen
on a split of train ("logreg"; biobench fits a softmax linear probe); metric macro-F1 (the long tail makes accuracy
a measure of the few common species).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from biobench.download import Recorded, Remote, fetch, fetch_and_extract
from biobench.errors import DatasetCorruptError
from biobench.tasks.base import TASKS, SourceOptions, Task, data_missing, limit_per_split

RECORD = Remote("https://zenodo.org/records/5645731/export/json", "zenodo-5645731.json", record_sha256=False)
ARCHIVE_URL = "https://zenodo.org/records/5645731/files/plantnet_300K.zip"
ARCHIVE_NAME = "plantnet_300K.zip"
TOP = "plantnet_300K"
SPECIES_NAMES = "plantnet300K_species_id_2_name.json"


@TASKS.register("plantnet")
class PlantNet(Task):
    name = "plantnet"
    Options = SourceOptions
    splits = ("train", "val")
    train_split = "train"
    eval_split = "val"
    metric = "macro_f1"
    benchmark = True
    classifier = "logreg"

    def download(self, options: SourceOptions, dest: Path) -> None:
        record_remote = RECORD.located(options.mirror)
        record = fetch(record_remote, dest / "downloads" / RECORD.name)
        checksum = published_checksum(record, ARCHIVE_NAME)
        try:
            Recorded.beside(dest).confirm(ARCHIVE_NAME, checksum, f"the MD5 that {record} gives for {ARCHIVE_NAME}",
                                          record_remote.url)
        except DatasetCorruptError:
            record.unlink()
            raise
        fetch_and_extract(Remote(ARCHIVE_URL, ARCHIVE_NAME, checksum).located(options.mirror), dest / "downloads", dest)

    def build_manifest(self, options: SourceOptions, data_dir: Path) -> pd.DataFrame:
        root = data_dir / TOP if (data_dir / TOP / "images").is_dir() else data_dir
        images = (root / "images").resolve()
        species = {split: sorted(d.name for d in (images / split).iterdir() if d.is_dir())
                   for split in self.splits if (images / split).is_dir()}
        missing = [f"images/{split}/<species>/" for split in self.splits if not species.get(split)]
        if missing:
            raise data_missing(self.name, f"{root} lacks {', '.join(missing)} (Pl@ntNet-300K's unpacked layout)")
        names_file = root / SPECIES_NAMES
        names = json.loads(names_file.read_text()) if names_file.exists() else {}
        index = {s: i for i, s in enumerate(sorted(set().union(*species.values())))}
        rows = [
            (f"{split}/{s}/{jpg.stem}", split, index[s], str(names.get(s, s)), str(jpg))
            for split in self.splits for s in species[split] for jpg in sorted((images / split / s).glob("*.jpg"))
        ]
        frame = pd.DataFrame(rows, columns=["example_id", "split", "label", "label_name", "path"])
        frame["group"] = None
        return limit_per_split(frame, options.max_per_split, options.seed)


def published_checksum(record: Path, name: str) -> str:
    """The "md5:<hex>" that a Zenodo record's JSON metadata gives for its file `name`."""
    try:
        files = json.loads(record.read_text()).get("files", {})
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        record.unlink(missing_ok=True)
        raise DatasetCorruptError(
            f"{record} (Zenodo's metadata for the record) is not complete JSON ({err}): the download ended early or "
            "was damaged. It was deleted; run the download again."
        ) from None
    except AttributeError:
        files = {}
    entries = files.get("entries", {}) if isinstance(files, dict) else {f.get("key"): f for f in files}
    checksum = (entries.get(name) or {}).get("checksum", "")
    if not re.fullmatch(r"md5:[0-9a-f]{32}", checksum):
        record.unlink(missing_ok=True)
        raise DatasetCorruptError(
            f"{record} (Zenodo's metadata for the record) gives no MD5 for {name}; it was deleted, run the download "
            f"again. If this repeats, Zenodo has changed its format: download {ARCHIVE_URL} yourself and set "
            "tasks.plantnet.datadir to the unpacked copy."
        )
    return checksum
