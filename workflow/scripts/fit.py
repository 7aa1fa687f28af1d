"""Thin wrapper: rule fit. Imports happen inside `job`, so that run_job logs one that fails."""

from biobench.logs import run_job


def job():
    from pathlib import Path

    from biobench.fit import FitJob, fit_and_predict

    p, wildcards = snakemake.params, snakemake.wildcards  # noqa: F821
    return fit_and_predict(FitJob(
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
        keys={"model_key": wildcards.model, "dataset_key": wildcards.dataset, "classifier_key": wildcards.classifier},
    ))


run_job(snakemake.log[0], job)  # noqa: F821
