"""Thin wrapper: rule download."""

from biobench.fetch import download_task
from biobench.logs import run_job

run_job(snakemake.log[0], lambda: download_task(  # noqa: F821
    snakemake.wildcards.task, snakemake.params.options, snakemake.output[0]))  # noqa: F821
