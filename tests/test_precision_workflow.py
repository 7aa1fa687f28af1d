"""The shipped config.yaml, unchanged, on an (emulated) AVX2-only CPU: the workflow completes, its bfloat16 models run
float32, and the results database and the report say so; a job that parses the workflow again on other hardware (as
SLURM jobs do) finds the same model keys."""

from __future__ import annotations

import os
import shutil

import duckdb
import pytest

from biobench import config, precision
from biobench.devices import local_gpu_count
from biobench.keys import model_key
from precision_helpers import EMULATE_AVX2, emulated_avx2_reason
from workflow_helpers import ROOT, copy_checkout, planned_jobs, seed_download, snakemake

pytestmark = pytest.mark.workflow

BF16_MODELS = ("efficientnet-lite0-imagenet", "efficientnet-lite0-random-init")


@pytest.fixture(scope="module")
def avx2_run(tmp_path_factory, animals_data):
    checkout = copy_checkout(tmp_path_factory.mktemp("checkout"))
    workdir = tmp_path_factory.mktemp("shipped-config-avx2")
    shutil.copy2(ROOT / "config.yaml", workdir / "config.yaml")
    seed_download(workdir, animals_data)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in EMULATE_AVX2.items():
            patch.setenv(name, value)
        result = snakemake(workdir, checkout=checkout)
        # What the planning process recorded for its jobs: the same call the Snakefile makes, in this environment.
        patch.setenv(precision.TARGET_ENV, "")
        cfg = config.load_file(workdir / "config.yaml", ROOT / "workflow/schemas/config.schema.yaml")
        precision.planned_hardware(cfg.embed.device, local_gpu_count)
        recorded = os.environ[precision.TARGET_ENV]
    return workdir, checkout, result, cfg, recorded


def test_bfloat16_models_ran_float32_and_the_results_say_why(avx2_run):
    workdir, _, result, cfg, _ = avx2_run
    reason = emulated_avx2_reason()
    assert f"asks for bfloat16; running float32: {reason}" in result.stderr  # said at DAG time
    con = duckdb.connect(str(workdir / "results/biobench.duckdb"), read_only=True)
    runs = {model: rest for model, *rest in con.execute(
        "SELECT model, embed_dtype, embed_dtype_requested, embed_dtype_reason, model_key FROM runs").fetchall()}
    assert set(runs) == set(cfg.models)
    for model in BF16_MODELS:
        dtype, requested, why, key = runs[model]
        assert (dtype, requested) == ("float32", "bfloat16")
        assert why == reason
        assert key == model_key(cfg.models[model], "float32") != model_key(cfg.models[model])
        logs = "".join(p.read_text() for p in (workdir / "logs/embed" / key).rglob("*.log"))
        assert f"models.{model} asks for bfloat16; running float32" in logs and "(bfloat16 asked)" in logs
    assert runs["raw-pixels"][:2] == ["float32", "float32"]
    html = (workdir / "reports/index.html").read_text()
    assert "<th>precision</th>" in html and f"float32 (bfloat16 asked; {reason})" in html


def test_a_job_reparsing_on_other_hardware_finds_the_planned_keys(avx2_run):
    """A SLURM job parses the Snakefile again on its compute node; with the planner's hardware inherited it plans
    the same keys (nothing to do here), while a fresh plan on this machine's unlimited CPU may differ."""
    workdir, checkout, _, _, recorded = avx2_run
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(precision.TARGET_ENV, recorded)
        inherited = snakemake(workdir, "-n", checkout=checkout)
    assert planned_jobs(inherited) == {}, inherited.stdout[-3000:]
    fresh = planned_jobs(snakemake(workdir, "-n", checkout=checkout))
    expected_embeds = 2 * len(BF16_MODELS) if precision.cpu_hardware().bfloat16.fast else 0
    assert fresh.get("embed", 0) == expected_embeds
