"""Thin wrapper: rule aggregate."""

from pathlib import Path

from biobench.aggregate import aggregate
from biobench.logs import run_job

p = snakemake.params  # noqa: F821
run_job(snakemake.log[0], lambda: aggregate(  # noqa: F821
    [Path(x) for x in snakemake.input.predictions], Path(snakemake.output.db),  # noqa: F821
    n_resamples=p.resamples, confidence=p.confidence, seed=p.seed,
    exports_dir=Path(snakemake.output.json).parent))  # noqa: F821
