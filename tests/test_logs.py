"""run_job writes every failure to the job's log and ends the process with status 1."""

from __future__ import annotations

import logging

import pytest

from biobench.errors import ConfigError
from biobench.logs import run_job


def fail(error: Exception):
    def job():
        raise error
    return job


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)


def test_an_unforeseen_error_is_logged_with_its_traceback(tmp_path):
    log = tmp_path / "job.log"
    with pytest.raises(SystemExit) as exit_:
        run_job(str(log), fail(ValueError("bad value in column 3")))
    text = log.read_text()
    assert exit_.value.code == 1
    assert "Traceback (most recent call last)" in text and "ValueError: bad value in column 3" in text


def test_a_biobench_error_is_logged_as_its_message_alone(tmp_path):
    log = tmp_path / "job.log"
    with pytest.raises(SystemExit) as exit_:
        run_job(str(log), fail(ConfigError("config.yaml: tasks.x: no such task; use one of a, b")))
    text = log.read_text()
    assert exit_.value.code == 1
    assert "config.yaml: tasks.x: no such task; use one of a, b" in text and "Traceback" not in text


def test_an_import_that_fails_inside_the_job_is_logged(tmp_path):
    log = tmp_path / "job.log"

    def job():
        import biobench.no_such_module  # noqa: F401

    with pytest.raises(SystemExit):
        run_job(str(log), job)
    assert "ModuleNotFoundError: No module named 'biobench.no_such_module'" in log.read_text()


def test_a_job_that_succeeds_returns_its_value(tmp_path):
    assert run_job(str(tmp_path / "job.log"), lambda: 42) == 42
