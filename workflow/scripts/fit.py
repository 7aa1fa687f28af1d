"""Thin wrapper: rule fit."""

from pathlib import Path

from biobench.fit import FitJob, fit_and_predict
from biobench.logs import run_job

p = snakemake.params  # noqa: F821
job = FitJob(
    task=p.task,
    model=p.model_name,
    manifest=Path(snakemake.input.manifest),  # noqa: F821
    train_embeddings=Path(snakemake.input.train),  # noqa: F821
    eval_embeddings=Path(snakemake.input.eval),  # noqa: F821
    out=Path(snakemake.output[0]),  # noqa: F821
    classifier=p.classifier,
    classifier_params=p.classifier_params,
    seed=p.seed,
    n_train=p.n_train,
    device=snakemake.config["embed"]["device"],  # noqa: F821
    keys={"model_key": snakemake.wildcards.model, "dataset_key": snakemake.wildcards.dataset,  # noqa: F821
          "classifier_key": snakemake.wildcards.classifier},  # noqa: F821
)
run_job(snakemake.log[0], lambda: fit_and_predict(job))  # noqa: F821
