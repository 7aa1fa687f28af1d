"""The task interface: where the data comes from, how its manifest is built, and its evaluation protocol."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from biobench.errors import ConfigError, DatasetMissingError
from biobench.registry import Registry

MANIFEST_COLUMNS = ("example_id", "split", "label", "label_name", "path", "group")

# BioBench's task set (its report.py): the overall biology score averages the benchmark tasks; the prior-work tasks
# are scored and shown as references but not averaged. A task module declares its own role with `benchmark`.
BENCHMARK_TASKS = ("beluga", "ecdysis", "fishnet", "fungiclef", "herbarium19", "iwildcam", "kabr", "mammalnet",
                   "plankton", "plantnet")
PRIOR_WORK_TASKS = ("imagenet1k", "inat21", "newt")


@dataclass(frozen=True)
class TaskOptions:
    """Options every task accepts; a task subclasses this to add its own."""

    datadir: str = ""  # an existing copy of the data; "" = resources/data/<task>, filled by the download rule
    seed: int = 0
    # Training rows each fit uses: 0 = all; N = a seeded class-balanced subsample of N rows of the training split
    # (biobench/classifiers/few_shot.py); a list runs one fit per size. The evaluation split is always whole.
    n_train: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        require_at_least(self, "seed", 0)


@dataclass(frozen=True)
class SourceOptions(TaskOptions):
    """Options of a task whose data is fetched from its published source."""

    mirror: str = ""  # a folder or URL holding the source's files under their published names; "" = the source
    max_per_split: int = 0  # 0 = every example; else at most this many per split, drawn seeded and label-stratified

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, "max_per_split", 0, " (0 = every example)")


def require_at_least(options: TaskOptions, name: str, minimum: int, meaning: str = "") -> None:
    """ConfigError naming the option (options.task_options adds the task) when it is below `minimum`."""
    value = getattr(options, name)
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}{meaning}, got {value!r}")


LOCATION_OPTIONS = ("datadir", "mirror")  # where the data comes from, not what it is: not part of the dataset key
FIT_OPTIONS = ("n_train",)  # how the fit uses the data: part of the predictions' path, not of the dataset key


class Task:
    """Subclass, set the class attributes, implement `download` and `build_manifest`, register in TASKS."""

    name: ClassVar[str]
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    train_split: ClassVar[str] = "train"
    eval_split: ClassVar[str] = "test"
    metric: ClassVar[str] = "accuracy"
    benchmark: ClassVar[bool] = False  # one of BioBench's BENCHMARK_TASKS: counts in the overall biology score
    classifier: ClassVar[str] = "logreg"
    # The classifier settings of the task's reference protocol (the original BioBench's), under the protocol's
    # defaults and over config.yaml's `classifiers.<protocol>`.
    classifier_params: ClassVar[dict[str, Any]] = {}
    frame_pooling: ClassVar[str] = ""  # "max" or "mean" for tasks whose examples are several frames
    fit_per_group: ClassVar[bool] = False  # one classifier per manifest `group` (e.g. NeWT's binary tasks)

    def download(self, options: TaskOptions, dest: Path) -> None:
        """Fetch the real dataset into `dest` (resumable, checksummed)."""
        raise NotImplementedError

    def build_manifest(self, options: TaskOptions, data_dir: Path) -> pd.DataFrame:
        """Read the on-disk layout; return one row per example with MANIFEST_COLUMNS (path: absolute)."""
        raise NotImplementedError

    def classifier_settings(self, configured: dict[str, Any]) -> dict[str, Any]:
        """The settings the task's classifier gets: its reference protocol's, overridden by config.yaml's."""
        return {**self.classifier_params, **configured}

    def identity(self, options: TaskOptions) -> dict[str, Any]:
        """What the dataset key hashes: the task's options, minus where the data happens to live and how fits use it."""
        out = data_options(options)
        for key in LOCATION_OPTIONS:
            out.pop(key, None)
        return {"task": self.name, **out}


def data_options(options: TaskOptions) -> dict[str, Any]:
    """The options that download and manifest jobs see: all but FIT_OPTIONS, so that changing those re-runs fits
    only."""
    out = dataclasses.asdict(options)
    for key in FIT_OPTIONS:
        out.pop(key, None)
    return out


TASKS: Registry[type[Task]] = Registry("task")


def data_missing(task: str, what: str) -> DatasetMissingError:
    """The error for data that is not where the manifest builder looks: what is missing, and the two ways to fix it."""
    return DatasetMissingError(
        f"task {task}: {what}. Run `snakemake prepare` to download it into resources/data/{task}, or point "
        f"tasks.{task}.datadir at a complete copy."
    )


def require_paths(task: str, root: Path, relative: list[str]) -> None:
    missing = [r for r in relative if not (root / r).exists()]
    if missing:
        raise data_missing(task, f"{root} lacks {', '.join(missing)}")


def limit_per_split(frame: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """At most `limit` rows per split (0 = no limit), each class (and group) keeping its share: within each
    stratum rows are ranked in a seeded random order, and the rows with the lowest rank / stratum size are kept."""
    if limit <= 0:
        return frame
    rng = np.random.default_rng(seed)
    strata = ["split", "label"] + (["group"] if frame["group"].notna().any() else [])
    keys = frame[strata].astype(str).agg("\x1f".join, axis=1)
    order = pd.Series(rng.random(len(frame)), index=frame.index)
    rank = order.groupby(keys).rank(method="first") - 1
    size = keys.map(keys.value_counts())
    share = (rank + rng.random(len(frame))) / size
    kept = share.groupby(frame["split"]).rank(method="first") <= limit
    return frame[kept].reset_index(drop=True)
