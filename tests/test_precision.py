"""Which precision runs where (biobench/precision.py): this machine's CPU as /proc/cpuinfo describes it, the ISA
limits that make a CPU without native bfloat16 (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY), CUDA compute capabilities,
the plan made at DAG time and inherited by jobs, the job-time check, and model keys that differ by precision."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

import pytest
import torch

from biobench import precision
from biobench.classifiers.base import bfloat16_is_fast
from biobench.errors import BiobenchError, ConfigError
from biobench.keys import model_key
from biobench.models import ModelSpec
from biobench.precision import (Hardware, Precision, cpu_hardware, cpu_verdict, cuda_hardware,
                                plan_precision, planned_hardware, precision_for_job)
from biobench.report.data import Results, Run, compute_totals
from biobench.report.tables import compute_table_html

LIMITS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
SAPPHIRE_RAPIDS = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"})
AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})
LITE0 = ModelSpec(name="lite0", org="timm", checkpoint="tf_efficientnet_lite0", weights="random", image_size=32,
                  dtype="bfloat16")


@pytest.fixture(autouse=True)
def no_limits(monkeypatch):
    """Each test starts without ISA limits and without an inherited plan (set to "" so that undo removes what
    planned_hardware writes)."""
    for name in LIMITS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(precision.TARGET_ENV, "")


def cpuinfo_flags() -> frozenset[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


# --- this machine's CPU ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads /proc/cpuinfo")
def test_this_cpu_matches_its_cpuinfo_flags():
    flags = cpuinfo_flags()
    x86 = platform.machine().lower() in precision.X86_MACHINES
    hardware = cpu_hardware()
    assert hardware.kind == "cpu" and hardware.name.startswith("this CPU (")
    assert hardware.bfloat16.fast is (x86 and bool({"avx512_bf16", "amx_bf16"} & flags))
    assert hardware.float16.fast is (x86 and bool({"avx512_fp16", "amx_fp16"} & flags))
    # torch reads the same hardware: its capabilities agree, and ATen runs at AVX512 where bfloat16 is native
    capabilities = torch.cpu.get_capabilities()
    assert hardware.bfloat16.fast is bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    if hardware.bfloat16.fast:
        assert torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    assert bfloat16_is_fast(torch.device("cpu")) is hardware.bfloat16.fast
    assert precision.is_fast("float32", torch.device("cpu"))


@pytest.mark.parametrize(("name", "value"), [
    ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "avx512_core_vnni"), ("DNNL_MAX_CPU_ISA", "AVX2"),
    ("ATEN_CPU_CAPABILITY", "avx2"), ("ATEN_CPU_CAPABILITY", "default"),
])
def test_isa_limits_force_the_slow_path_on_this_cpu(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    hardware = cpu_hardware()
    assert not hardware.bfloat16.fast and not hardware.float16.fast
    assert not bfloat16_is_fast(torch.device("cpu"))
    if precision.cpu_facts().flags & {"avx512_bf16", "amx_bf16"}:  # the limit, not the hardware, is the reason
        assert f"{name}={value}" in hardware.bfloat16.why
    assert plan_precision("bfloat16", "auto", hardware).dtype == "float32"


# --- CPUs described by their flags -----------------------------------------------------------------------------------


def test_avx2_only_cpu_has_no_fast_half_precision():
    for dtype in precision.HALF_DTYPES:
        verdict = cpu_verdict(dtype, AVX2_ONLY, "x86_64", {})
        assert not verdict.fast and f"no native {dtype}" in verdict.why
    assert cpu_verdict("bfloat16", AVX2_ONLY, "x86_64", {}).why == (
        "this CPU has no native bfloat16 (AVX512-BF16 or AMX-BF16)")


@pytest.mark.parametrize(("env", "bfloat16", "float16"), [
    ({}, True, True),
    ({"ONEDNN_MAX_CPU_ISA": "DEFAULT"}, True, True),
    ({"ONEDNN_MAX_CPU_ISA": "all"}, True, True),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX_FP16"}, True, True),
    ({"ONEDNN_MAX_CPU_ISA": "AVX10_1_512"}, True, True),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, True, False),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, False, False),
    ({"ONEDNN_MAX_CPU_ISA": "AVX2_VNNI_2"}, False, False),  # not a superset of AVX512_CORE_BF16
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, False, False),
    ({"ONEDNN_MAX_CPU_ISA": "AVX9000"}, False, False),  # unknown: assume the worst
    ({"DNNL_MAX_CPU_ISA": "AVX2"}, False, False),
    ({"ONEDNN_MAX_CPU_ISA": "ALL", "DNNL_MAX_CPU_ISA": "AVX2"}, True, True),  # oneDNN reads ONEDNN_ first
    ({"ATEN_CPU_CAPABILITY": "avx512"}, True, True),
    ({"ATEN_CPU_CAPABILITY": "AVX2"}, False, False),
])
def test_onednn_and_aten_limits(env, bfloat16, float16):
    assert cpu_verdict("bfloat16", SAPPHIRE_RAPIDS, "x86_64", env).fast is bfloat16
    assert cpu_verdict("float16", SAPPHIRE_RAPIDS, "x86_64", env).fast is float16


def test_amx_alone_needs_the_amx_isa_level():
    amx_only = frozenset({"avx512f", "amx_bf16"})
    assert cpu_verdict("bfloat16", amx_only, "x86_64", {}).fast
    assert not cpu_verdict("bfloat16", amx_only, "x86_64", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}).fast
    assert cpu_verdict("bfloat16", amx_only, "x86_64", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}).fast


def test_non_x86_cpus_count_as_not_fast():
    verdict = cpu_verdict("bfloat16", frozenset({"bf16", "sve"}), "aarch64", {})
    assert not verdict.fast and "aarch64" in verdict.why


def test_cpu_facts_come_from_cpuinfo_without_torch(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_2 avx avx2 fma\n\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_2 avx avx2 fma\n")
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    monkeypatch.setattr(precision, "_torch_cpu_flags", lambda: pytest.fail("torch consulted despite cpuinfo"))
    precision.cpu_facts.cache_clear()
    try:
        facts = precision.cpu_facts()
        assert facts.model == "AMD EPYC 7B12" and "avx2" in facts.flags and "avx512_bf16" not in facts.flags
        monkeypatch.setattr(platform, "machine", lambda: "x86_64")
        precision.cpu_facts.cache_clear()
        hardware = cpu_hardware()
        assert hardware.name == "this CPU (AMD EPYC 7B12)" and not hardware.bfloat16.fast
    finally:
        precision.cpu_facts.cache_clear()


# --- CUDA ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("capability", "bfloat16", "float16"), [
    ((9, 0), True, True), ((8, 0), True, True), ((8, 6), True, True), ((7, 5), False, True), ((7, 0), False, True),
    ((6, 1), False, False),
])
def test_cuda_capability_rules(capability, bfloat16, float16):
    hardware = cuda_hardware(capability, "GPU")
    assert (hardware.bfloat16.fast, hardware.float16.fast) == (bfloat16, float16)
    assert hardware.name == f"GPU (compute capability {capability[0]}.{capability[1]})"


def test_unknown_cuda_capability_trusts_the_requested_dtype():
    hardware = cuda_hardware(None)
    assert hardware.bfloat16.fast and hardware.float16.fast and "unknown" in hardware.name
    assert plan_precision("bfloat16", "auto", hardware).dtype == "bfloat16"


def fake_nvidia_smi(tmp_path, monkeypatch, rows: str) -> None:
    binary = tmp_path / "bin" / "nvidia-smi"
    binary.parent.mkdir()
    binary.write_text(f"#!/bin/sh\ncat <<'EOF'\n{rows}EOF\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", f"{binary.parent}:/usr/bin:/bin")


def test_dag_time_cuda_capability_comes_from_nvidia_smi(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, "0, GPU-aaa, NVIDIA A100-SXM4-40GB, 8.0\n1, GPU-bbb, Tesla T4, 7.5\n")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert precision.visible_gpu_capability() == ((7, 5), "Tesla T4")  # the weakest GPU a job may claim
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert precision.visible_gpu_capability() == ((8, 0), "NVIDIA A100-SXM4-40GB")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbb")
    assert precision.visible_gpu_capability() == ((7, 5), "Tesla T4")
    hardware = planned_hardware("cuda", lambda: pytest.fail("embed.device cuda needs no GPU count"))
    assert hardware.name == "Tesla T4 (compute capability 7.5)" and not hardware.bfloat16.fast


def test_dag_time_without_nvidia_smi_plans_for_an_unknown_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert precision.visible_gpu_capability() == (None, "")
    assert planned_hardware("cuda:1", lambda: 0).name == "a CUDA GPU of unknown compute capability"


# --- the plan, made once and inherited -------------------------------------------------------------------------------


def test_auto_device_plans_for_cuda_only_where_gpus_are_visible(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert planned_hardware("auto", lambda: 0).kind == "cpu"
    monkeypatch.setenv(precision.TARGET_ENV, "")
    assert planned_hardware("auto", lambda: 2).kind == "cuda"


def test_the_plan_is_recorded_and_inherited(monkeypatch):
    """A job that parses the workflow again (SLURM) gets the planning process's hardware, not its own."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    planned = planned_hardware("cpu", lambda: 0)
    recorded = json.loads(os.environ[precision.TARGET_ENV])
    assert recorded["embed_device"] == "cpu" and recorded["name"] == planned.name
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")  # the compute node's CPU differs from the planner's
    assert planned_hardware("cpu", lambda: 0) == planned
    assert precision.planned_for() == planned.name
    assert planned_hardware("auto", lambda: 0) == cpu_hardware()  # another embed.device: planned anew
    monkeypatch.setenv(precision.TARGET_ENV, "cuda")
    with pytest.raises(BiobenchError, match="BIOBENCH_EMBED_TARGET holds 'cuda', which biobench did not write"):
        planned_hardware("cpu", lambda: 0)


def test_hardware_round_trips_through_json():
    hardware = cuda_hardware((7, 5), "Tesla T4")
    assert Hardware.from_json(hardware.to_json()) == hardware


def test_plan_policies():
    slow = cuda_hardware((7, 5), "T4")
    assert plan_precision("bfloat16", "auto", slow) == Precision("bfloat16", "float32", slow.bfloat16.why)
    as_requested = plan_precision("bfloat16", "as_requested", slow)
    assert as_requested.dtype == "bfloat16" and as_requested.slow
    assert "expect it to be 10-100x slower than float32" in as_requested.describe("m")
    assert plan_precision("float16", "auto", slow).dtype == "float16"
    assert plan_precision("float32", "auto", slow).dtype == "float32"
    with pytest.raises(ConfigError, match="embed.precision is 'fast'"):
        plan_precision("bfloat16", "fast", slow)


def test_model_keys_differ_by_the_precision_that_runs():
    as_float32 = ModelSpec(**{**LITE0.__dict__, "dtype": "float32"})
    keys = {model_key(LITE0), model_key(LITE0, "float32"), model_key(as_float32), model_key(LITE0, "float16")}
    assert len(keys) == 4
    assert model_key(LITE0, "bfloat16") == model_key(LITE0)  # a model that runs its own dtype keeps its key


# --- the job-time check ----------------------------------------------------------------------------------------------


def avx2_cpu() -> Hardware:
    return Hardware("cpu", "this CPU (AVX2 only)",
                    *(cpu_verdict(d, AVX2_ONLY, "x86_64", {}) for d in precision.HALF_DTYPES))


def test_planned_half_precision_on_a_cpu_without_it_fails_with_the_fix():
    with pytest.raises(BiobenchError) as err:
        precision_for_job("bfloat16", "bfloat16", "auto", avx2_cpu(), "efficientnet-lite0-imagenet")
    message = str(err.value)
    for part in ("models.efficientnet-lite0-imagenet", "planned to run in bfloat16", "this CPU (AVX2 only)",
                 "no native bfloat16", "embed.device", "dtype: float32", "embed.precision: as_requested"):
        assert part in message


def test_job_time_cases():
    avx2 = avx2_cpu()
    ran = precision_for_job("bfloat16", "bfloat16", "as_requested", avx2, "m")
    assert ran.dtype == "bfloat16" and ran.slow
    assert precision_for_job("bfloat16", "float32", "auto", avx2, "m").dtype == "float32"
    assert precision_for_job("bfloat16", None, "auto", avx2, "m").dtype == "float32"  # no plan: planned here
    old_gpu = precision_for_job("bfloat16", "bfloat16", "auto", cuda_hardware((7, 5), "T4"), "m")
    assert old_gpu.dtype == "bfloat16" and old_gpu.slow  # a warning, not an error: the GPU is what the job got
    fast_here = precision_for_job("bfloat16", "float32", "auto", cuda_hardware((9, 0), "H100"), "m")
    assert fast_here.dtype == "float32" and "setting embed.device" in fast_here.why  # the key says float32


def test_other_devices_are_not_fast():
    assert not precision.is_fast("bfloat16", torch.device("meta"))
    assert precision.is_fast("float32", torch.device("meta"))


# --- the report ------------------------------------------------------------------------------------------------------


def test_compute_table_shows_the_precision_that_ran():
    def run(model, dtype, requested, reason):
        return Run(model=model, task="animals", metric="accuracy", benchmark=False, n_train=2000, n_test=1000,
                   embed_device="cpu (2 threads)", embed_images_per_s=300.0, embed_seconds=10.0, fit_seconds=1.0,
                   git_commit=None, host=None, created_at=dt.datetime(2025, 1, 1), embed_dtype=dtype,
                   embed_dtype_requested=requested, embed_dtype_reason=reason)

    why = "this CPU has no native bfloat16 (AVX512-BF16 or AMX-BF16)"
    results = Results(runs=(run("lite0", "float32", "bfloat16", why), run("pixels", "float32", "float32", None)),
                      scores=(), overall=(), pairs=(), settings={}, models=("lite0", "pixels"), tasks=("animals",))
    assert [t.precisions for t in compute_totals(results)] == [(f"float32 (bfloat16 asked; {why})",), ("float32",)]
    html = compute_table_html(results)
    assert "<th>precision</th>" in html and "float32 (bfloat16 asked; this CPU has no native bfloat16" in html
