"""Thin wrapper: rule report. Imports happen inside `job`, so that run_job logs one that fails."""

from biobench.logs import run_job


def job():
    from pathlib import Path

    from biobench.report import build_report

    return build_report(Path(snakemake.input.db), Path(snakemake.output.index).parent)  # noqa: F821


run_job(snakemake.log[0], job)  # noqa: F821
