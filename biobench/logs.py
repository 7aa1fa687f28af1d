"""Logging for workflow jobs: to the rule's log file and to stderr. Every failure is written to the log: a user error
as its message alone (it names the problem and the fix), any other error with its traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from biobench.errors import BiobenchError

T = TypeVar("T")
log = logging.getLogger("biobench")


def setup(log_path: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)


def run_job(log_path: str | None, job: Callable[[], T]) -> T:
    """Run a workflow job; a failure is logged and ends the process with status 1. Jobs import the code they run
    inside `job`, so that an import that fails is logged too."""
    setup(log_path)
    try:
        return job()
    except BiobenchError as err:
        log.error("%s", err)
    except Exception:
        log.exception("the job failed with an error biobench did not foresee; the traceback says where")
    logging.shutdown()
    sys.exit(1)
