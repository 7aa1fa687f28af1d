"""The download step: run a task's downloader, then write a stamp listing what is on disk."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from biobench.atomic import atomic_path
from biobench.options import task_options
from biobench.tasks import TASKS

log = logging.getLogger(__name__)


def download_task(task: str, options: dict[str, Any], stamp: str | Path) -> None:
    """The stamp keeps its modification time when the data did not change, so a re-run download (after a code
    edit, say) does not make Snakemake rebuild everything downstream."""
    dest = Path(stamp).parent
    TASKS.get(task)().download(task_options(task, options), dest)
    listing = sorted(
        (str(p.relative_to(dest)), p.stat().st_size) for p in dest.rglob("*") if p.is_file() and p != Path(stamp)
    )
    with atomic_path(stamp, keep_mtime_if_same=True) as tmp:
        tmp.write_text(json.dumps({"task": task, "files": len(listing), "listing": listing}))
    log.info("%s: %d files in %s", task, len(listing), dest)
