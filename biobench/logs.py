"""Logging for workflow jobs: to the rule's log file and to stderr, with user errors shown without a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from biobench.errors import BiobenchError

T = TypeVar("T")


def setup(log_path: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)


def run_job(log_path: str | None, job: Callable[[], T]) -> T:
    """Run a workflow job; a BiobenchError ends it with the message alone (it already names problem and fix)."""
    setup(log_path)
    try:
        return job()
    except BiobenchError as err:
        logging.getLogger("biobench").error("%s", err)
        sys.exit(1)
