"""Thin wrapper: rule download. Imports happen inside `job`, so that run_job logs one that fails."""

from biobench.logs import run_job


def job():
    from biobench.fetch import download_task

    return download_task(snakemake.wildcards.task, snakemake.params.options, snakemake.output[0])  # noqa: F821


run_job(snakemake.log[0], job)  # noqa: F821
