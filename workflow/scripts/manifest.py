"""Thin wrapper: rule manifest."""

from biobench.logs import run_job
from biobench.manifest import write_manifest

run_job(snakemake.log[0], lambda: write_manifest(  # noqa: F821
    snakemake.params.task, snakemake.params.options, snakemake.params.data_dir, snakemake.output[0]))  # noqa: F821
