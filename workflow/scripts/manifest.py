"""Thin wrapper: rule manifest. Imports happen inside `job`, so that run_job logs one that fails."""

from biobench.logs import run_job


def job():
    from biobench.manifest import write_manifest

    p = snakemake.params  # noqa: F821
    return write_manifest(p.task, p.options, p.data_dir, snakemake.output[0])  # noqa: F821


run_job(snakemake.log[0], job)  # noqa: F821
