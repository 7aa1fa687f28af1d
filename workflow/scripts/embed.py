"""Thin wrapper: rule embed. Imports happen inside `job`, so that run_job logs one that fails."""

from biobench.logs import run_job


def job():
    import dataclasses
    from pathlib import Path

    from biobench.config import model_name_of
    from biobench.embed import EmbedJob, embed
    from biobench.models import ModelSpec

    settings = snakemake.config["embed"]  # noqa: F821
    spec = ModelSpec(name=snakemake.wildcards.model, **snakemake.params.spec)  # noqa: F821
    return embed(EmbedJob(
        manifest=Path(snakemake.input.manifest),  # noqa: F821
        split=snakemake.wildcards.split,  # noqa: F821
        spec=dataclasses.replace(spec, name=model_name_of(snakemake.config["models"], spec)),  # noqa: F821
        out=Path(snakemake.output[0]),  # noqa: F821
        device=settings["device"],
        num_workers=settings["num_workers"],
        log_every_s=settings["log_every_s"],
        frame_pooling=snakemake.params.frame_pooling,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
        decode=settings["decode"],
        pixel_cache=Path(settings["pixel_cache_dir"]),
        pixel_cache_max_gb=settings["pixel_cache_max_gb"],
        precision=settings["precision"],
        planned_dtype=snakemake.params.run_dtype,  # noqa: F821
    ))


run_job(snakemake.log[0], job)  # noqa: F821
