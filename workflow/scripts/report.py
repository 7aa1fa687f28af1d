"""Thin wrapper: rule report."""

from pathlib import Path

from biobench.logs import run_job
from biobench.report import build_report

run_job(snakemake.log[0], lambda: build_report(  # noqa: F821
    Path(snakemake.input.db), Path(snakemake.output.index).parent))  # noqa: F821
