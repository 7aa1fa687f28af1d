"""Thin wrapper: rule aggregate. Imports happen inside `job`, so that run_job logs one that fails."""

from biobench.logs import run_job


def job():
    from pathlib import Path

    from biobench.aggregate import aggregate

    p = snakemake.params  # noqa: F821
    return aggregate(
        [Path(x) for x in snakemake.input.predictions], Path(snakemake.output.db),  # noqa: F821
        n_resamples=p.resamples, confidence=p.confidence, seed=p.seed, macro_f1_classes=p.macro_f1_classes,
        exports_dir=Path(snakemake.output.json).parent)  # noqa: F821


run_job(snakemake.log[0], job)  # noqa: F821
