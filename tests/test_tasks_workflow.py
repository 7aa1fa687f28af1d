"""`snakemake -n` plans the tutorial DAG: each task's download, manifest, embeddings and fits; aggregate; report."""

from __future__ import annotations

import pytest

from task_fixtures import build_imagenet_folders
from workflow_helpers import planned_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow

TASKS = ("newt", "kabr", "plantnet", "iwildcam", "imagenet1k")


def tutorial_config(imagenet_dir) -> dict:
    return {
        "models": {  # the tutorial's two models; offline with an empty hub cache, the DAG is still planned
            "bioclip": {"org": "open-clip", "checkpoint": "hf-hub:imageomics/bioclip", "dtype": "bfloat16"},
            "dinov2-b14-reg": {"org": "timm", "checkpoint": "vit_base_patch14_reg4_dinov2.lvd142m",
                               "image_size": 224, "dtype": "bfloat16"},
        },
        "tasks": {**{task: {} for task in TASKS}, "imagenet1k": {"datadir": str(imagenet_dir)}},
        "classifiers": {"svm": {"n_iter": 10}, "logreg": {"Cs": [0.01, 1.0]}},
        "bootstrap": {"resamples": 200},
    }


def test_dry_run_plans_every_task(tmp_path):
    build_imagenet_folders(tmp_path / "imagenet", kaggle=True)
    workdir = tmp_path / "work"
    workdir.mkdir()
    write_config(workdir, tutorial_config(tmp_path / "imagenet"))
    jobs = planned_jobs(snakemake(workdir, "-n"))
    # imagenet1k reads its datadir, so only the other four are downloaded; 2 models x 5 tasks x 2 splits embedded
    assert jobs == {"download": 4, "manifest": 5, "embed": 20, "fit": 10, "aggregate": 1, "report": 1, "all": 1}
    assert planned_jobs(snakemake(workdir, "-n", "prepare")) == {"download": 4, "prepare": 1}
