"""Whether a half precision is fast on a device, and so which precision an embedding's forward pass runs at.

A model's `dtype` (bfloat16 or float16) asks for autocast. Where the device has no native arithmetic for it, it is
emulated: on an AVX2-only CPU, EfficientNet-Lite0 embedded 1.4 images/s in bfloat16 against 178 in float32. Under
`embed.precision: auto` (the default) a model runs its dtype where the embedding device computes it fast, else
float32; under `as_requested` it runs its dtype regardless, with a warning.

The plan is made when the DAG is built, for the device embed jobs will use, and the dtype it picks is part of the
model key (biobench/keys.py): features made at different precisions never share a key. The facts the plan is made
from are kept in the environment variable TARGET_ENV, which jobs inherit (sbatch passes the environment on), so a job
that parses the workflow again on a compute node makes the same plan and finds its model key. The embed job checks
the plan against the device it got (`precision_for_job`).

Fast means:
- CUDA GPUs: bfloat16 from compute capability 8.0, float16 from 7.0 (their tensor cores).
- x86 CPUs: bfloat16 with AVX512-BF16 or AMX-BF16, float16 with AVX512-FP16 or AMX-FP16, when oneDNN
  (ONEDNN_MAX_CPU_ISA) and ATen (ATEN_CPU_CAPABILITY) may use them. Measured on 2 cores of a Xeon with AVX512-BF16,
  AMX-BF16 and AVX512-FP16 (EfficientNet-Lite0, 96 px, batch 32, images/s, float32 / bfloat16 / float16): as is,
  420 / 850 / 615; oneDNN kept to AVX512_CORE_BF16, 436 / 564 / 34; kept to AVX2 (with ATen and MKL), 324 / 34 / 34.
- Other CPUs (ARM, POWER, ...): never, conservatively: biobench has not measured them.

Nothing here imports torch at module level: the plan is made at DAG time from /proc/cpuinfo and nvidia-smi.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from biobench.errors import BiobenchError, ConfigError

if TYPE_CHECKING:
    import torch

HALF_DTYPES = ("bfloat16", "float16")
POLICIES = ("auto", "as_requested")
TARGET_ENV = "BIOBENCH_EMBED_TARGET"
SLOWDOWN = "10-100x slower than float32"
CPUINFO = Path("/proc/cpuinfo")
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


@dataclass(frozen=True)
class Verdict:
    """Whether a device computes one dtype fast, and why, in words for the log, the metadata and the report."""

    fast: bool
    why: str


FLOAT32 = Verdict(True, "float32 is native everywhere")


@dataclass(frozen=True)
class Hardware:
    """A device as the precision decision sees it."""

    kind: str  # "cpu", "cuda", or another torch device type (on which no half precision counts as fast)
    name: str  # "this CPU (<model>)", "<GPU name> (compute capability 8.0)"
    bfloat16: Verdict
    float16: Verdict

    def verdict(self, dtype: str) -> Verdict:
        if dtype == "float32":
            return FLOAT32
        if dtype not in HALF_DTYPES:
            raise ConfigError(f"dtype {dtype!r} is not one of float32, {', '.join(HALF_DTYPES)}")
        return getattr(self, dtype)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Hardware:
        record = json.loads(text)
        return cls(record["kind"], record["name"], *(Verdict(**record[d]) for d in HALF_DTYPES))


@dataclass(frozen=True)
class Precision:
    """What a model's forward pass runs at, what the model asked for, and why."""

    requested: str
    dtype: str
    why: str
    slow: bool = False  # runs a half precision the device has no fast arithmetic for

    def describe(self, model: str) -> str:
        text = f"models.{model} asks for {self.requested}; running {self.dtype}: {self.why}"
        return text + (f"; expect it to be {SLOWDOWN}" if self.slow else "")


def plan_precision(requested: str, policy: str, hardware: Hardware) -> Precision:
    """The precision a model with dtype `requested` runs at on `hardware` under `embed.precision: policy`."""
    if policy not in POLICIES:
        raise ConfigError(f"embed.precision is {policy!r}; allowed values: {', '.join(map(repr, POLICIES))}")
    verdict = hardware.verdict(requested)
    if requested == "float32":
        return Precision(requested, requested, "the model's dtype")
    if policy == "as_requested":
        if verdict.fast:
            return Precision(requested, requested, f"embed.precision is as_requested, and {verdict.why}")
        return Precision(requested, requested, f"embed.precision is as_requested, although {verdict.why}", slow=True)
    return Precision(requested, requested if verdict.fast else "float32", verdict.why)


def precision_for_job(requested: str, planned: str | None, policy: str, hardware: Hardware, model: str) -> Precision:
    """The precision an embed job runs at on the device it got. `planned` is the dtype chosen when the DAG was built
    (part of the model key, so it is what must run); None plans for `hardware` now. A planned half precision that is
    slow here is an error on a CPU under policy auto (the fix is a config change) and a warning on a GPU."""
    here = plan_precision(requested, policy, hardware)
    if planned is None or planned == here.dtype:
        return here
    where = planned_for()
    if planned == "float32":
        return Precision(requested, planned, f"planned when the workflow was built, for {where}; here "
                                             f"{hardware.verdict(requested).why}, and setting embed.device to the "
                                             f"device embed jobs run on would plan {requested}")
    verdict = hardware.verdict(planned)
    if hardware.kind == "cuda":
        return Precision(requested, planned, f"planned for {where}, but {hardware.name}: {verdict.why}", slow=True)
    raise BiobenchError(
        f"models.{model} was planned to run in {planned} when the workflow was built (for {where}), but this embed "
        f"job runs on {hardware.name}, where {verdict.why}: it would run {SLOWDOWN}. Set embed.device in config.yaml "
        f"to the device embed jobs run on (e.g. embed.device: cuda when they run on GPU nodes), or dtype: float32 in "
        f"models.{model}, or embed.precision: as_requested to run {planned} anyway."
    )


def is_fast(dtype: str, device: torch.device) -> bool:
    """Whether `device` computes `dtype` fast (float32 always is)."""
    return hardware_of(device).verdict(dtype).fast


def hardware_of(device: torch.device) -> Hardware:
    """The device a job runs on (job time: torch is loaded)."""
    if device.type == "cpu":
        return cpu_hardware()
    if device.type == "cuda":
        import torch

        return cuda_hardware(torch.cuda.get_device_capability(device), torch.cuda.get_device_name(device))
    return _unknown_hardware(device.type)


def planned_hardware(embed_device: str, count_gpus: Callable[[], int]) -> Hardware:
    """The device embed jobs will use, as `embed.device` names it, seen from the process that builds the DAG. The
    first call records it in TARGET_ENV; a process that inherits that (a job on a compute node parsing the workflow
    again) gets the recorded hardware, not its own, so that it plans the same precisions and model keys."""
    inherited = os.environ.get(TARGET_ENV)
    if inherited:
        try:
            record = json.loads(inherited)
            if record.pop("embed_device") == embed_device:
                return Hardware.from_json(json.dumps(record))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BiobenchError(
                f"the environment variable {TARGET_ENV} holds {inherited!r}, which biobench did not write; unset it "
                "(biobench sets it for the jobs of a run)"
            ) from None
    hardware = _hardware_for(embed_device, count_gpus)
    os.environ[TARGET_ENV] = json.dumps({**json.loads(hardware.to_json()), "embed_device": embed_device})
    return hardware


def planned_for() -> str:
    """The device the running workflow planned for, in words (from TARGET_ENV)."""
    try:
        return json.loads(os.environ[TARGET_ENV])["name"]
    except (KeyError, ValueError, TypeError):
        return "the device the workflow planned for"


def _hardware_for(embed_device: str, count_gpus: Callable[[], int]) -> Hardware:
    kind = embed_device.split(":")[0]
    if embed_device == "auto":
        kind = "cuda" if count_gpus() > 0 else "cpu"
    if kind == "cpu":
        return cpu_hardware()
    if kind == "cuda":
        return cuda_hardware(*visible_gpu_capability())
    return _unknown_hardware(kind)


def _unknown_hardware(kind: str) -> Hardware:
    verdicts = (Verdict(False, f"biobench knows fast half precision only on CPUs and CUDA GPUs, not on {kind}")
                for _ in HALF_DTYPES)
    return Hardware(kind, kind, *verdicts)


# ----------------------------------------------------------------------------------------------------------- CUDA

CUDA_FIRST = {"bfloat16": (8, 0), "float16": (7, 0)}  # the compute capability whose tensor cores compute it


def cuda_hardware(capability: tuple[int, int] | None, name: str = "") -> Hardware:
    """A CUDA GPU; capability None (not known where the DAG is built) trusts the model's dtype."""
    if capability is None:
        trust = Verdict(True, "the GPU's compute capability was not known where the workflow was built (no "
                              "nvidia-smi there), so the model's dtype is trusted")
        return Hardware("cuda", "a CUDA GPU of unknown compute capability", trust, trust)
    major, minor = capability
    verdicts = []
    for dtype in HALF_DTYPES:
        first = CUDA_FIRST[dtype]
        if tuple(capability) >= first:
            verdicts.append(Verdict(True, f"compute capability {major}.{minor} has {dtype} tensor cores"))
        else:
            verdicts.append(Verdict(False, f"compute capability {major}.{minor} has no {dtype} tensor cores (they "
                                           f"start at {first[0]}.{first[1]})"))
    return Hardware("cuda", f"{name or 'a CUDA GPU'} (compute capability {major}.{minor})", *verdicts)


def visible_gpu_capability() -> tuple[tuple[int, int] | None, str]:
    """(compute capability, name) of the weakest GPU CUDA_VISIBLE_DEVICES lets jobs see, from nvidia-smi without
    initialising CUDA; (None, "") when nvidia-smi is absent or too old to report it."""
    if not shutil.which("nvidia-smi"):
        return None, ""
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,uuid,name,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, ""
    gpus = []
    for line in listing.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4:
            continue
        index, uuid, name, capability = fields
        try:
            major, minor = (int(part) for part in capability.split("."))
        except ValueError:
            continue
        gpus.append(((major, minor), name, {index, uuid}))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        wanted = {entry.strip() for entry in visible.split(",") if entry.strip()}
        gpus = [gpu for gpu in gpus if gpu[2] & wanted] or gpus  # MIG and other ids: all GPUs, conservatively
    if not gpus:
        return None, ""
    capability, name, _ = min(gpus)
    return capability, name


# ------------------------------------------------------------------------------------------------------------ CPU


@dataclass(frozen=True)
class CpuUnit:
    """An instruction set extension that computes a half precision natively."""

    flag: str  # as /proc/cpuinfo lists it
    onednn_isa: str  # the ONEDNN_MAX_CPU_ISA level from which oneDNN uses it
    words: str


CPU_UNITS = {
    "bfloat16": (CpuUnit("avx512_bf16", "AVX512_CORE_BF16", "AVX512-BF16"),
                 CpuUnit("amx_bf16", "AVX512_CORE_AMX", "AMX-BF16")),
    "float16": (CpuUnit("avx512_fp16", "AVX512_CORE_FP16", "AVX512-FP16"),
                CpuUnit("amx_fp16", "AVX512_CORE_AMX_FP16", "AMX-FP16")),
}
# oneDNN's ISA levels as the bit masks of its dnnl_cpu_isa_t: a limit allows an ISA whose bits it contains
# (AVX2_VNNI_2 allows no AVX512 level).
ONEDNN_ISA_BITS = {
    "SSE41": 0x1, "AVX": 0x3, "AVX2": 0x7, "AVX2_VNNI": 0xF, "AVX2_VNNI_2": 0x1F, "AVX512_CORE": 0x27,
    "AVX512_CORE_VNNI": 0x67, "AVX512_CORE_BF16": 0xE7, "AVX10_1_512": 0x1EF, "AVX512_CORE_FP16": 0x1EF,
    "AVX10_1_512_AMX": 0xFEF, "AVX512_CORE_AMX": 0xFEF, "AVX10_1_512_AMX_FP16": 0x1FEF,
    "AVX512_CORE_AMX_FP16": 0x1FEF,
}
ONEDNN_UNLIMITED = frozenset({"", "DEFAULT", "ALL"})
ONEDNN_LIMIT_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # oneDNN reads the first that is set


def cpu_hardware() -> Hardware:
    """This machine's CPU under the ISA limits of this process's environment."""
    facts = cpu_facts()
    return Hardware("cpu", f"this CPU ({facts.model})", *(
        cpu_verdict(dtype, facts.flags, facts.machine, os.environ) for dtype in HALF_DTYPES))


@dataclass(frozen=True)
class CpuFacts:
    machine: str  # platform.machine(), lower case
    model: str
    flags: frozenset[str]


@cache
def cpu_facts() -> CpuFacts:
    """The CPU's model and feature flags from /proc/cpuinfo; where there is none (macOS, Windows), from torch."""
    machine = platform.machine().lower()
    model, flags = "", None
    if CPUINFO.is_file():
        with CPUINFO.open() as lines:
            for line in lines:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags":  # x86 only; ARM lists "Features"
                    flags = frozenset(value.split())
                    break
    if flags is None:
        flags = _torch_cpu_flags() if machine in X86_MACHINES and not CPUINFO.is_file() else frozenset()
    return CpuFacts(machine, model or platform.processor() or machine, flags)


def _torch_cpu_flags() -> frozenset[str]:
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", dict)()
    return frozenset(name for name, present in capabilities.items() if present is True)


def cpu_verdict(dtype: str, flags: frozenset[str], machine: str, env: Mapping[str, str]) -> Verdict:
    """Whether a CPU with these flags computes `dtype` fast under the ISA limits that `env` sets."""
    if machine not in X86_MACHINES:
        return Verdict(False, f"biobench has not measured {dtype} on {machine} CPUs and treats it as not fast there")
    units = CPU_UNITS[dtype]
    present = [unit for unit in units if unit.flag in flags]
    if not present:
        return Verdict(False, f"this CPU has no native {dtype} ({' or '.join(u.words for u in units)})")
    limit_var, limit = _onednn_limit(env)
    usable = [unit for unit in present if _onednn_allows(limit, unit.onednn_isa)]
    if not usable and limit not in ONEDNN_ISA_BITS:  # a level newer than ONEDNN_ISA_BITS, or a typo: assume the worst
        return Verdict(False, f"{limit_var}={env[limit_var]} is not a oneDNN ISA level biobench knows, so it assumes "
                              f"oneDNN may not use {present[0].onednn_isa}, which native {dtype} needs")
    if not usable:
        return Verdict(False, f"{limit_var}={env[limit_var]} keeps oneDNN below {present[0].onednn_isa}, which "
                              f"native {dtype} needs")
    aten = env.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if aten and not aten.startswith("avx512"):
        return Verdict(False, f"ATEN_CPU_CAPABILITY={aten} keeps ATen below AVX512, which native {dtype} needs")
    return Verdict(True, f"this CPU has native {dtype} ({', '.join(u.words for u in usable)})")


def _onednn_limit(env: Mapping[str, str]) -> tuple[str, str]:
    for name in ONEDNN_LIMIT_VARS:
        if name in env:
            return name, env[name].strip().upper()
    return ONEDNN_LIMIT_VARS[0], ""


def _onednn_allows(limit: str, isa: str) -> bool:
    if limit in ONEDNN_UNLIMITED:
        return True
    bits = ONEDNN_ISA_BITS.get(limit, 0)
    return ONEDNN_ISA_BITS[isa] & bits == ONEDNN_ISA_BITS[isa]


def describe_dtype(dtype: str | None, requested: str | None, why: str | None) -> str:
    """One cell of the report's compute table: the precision that ran, and what was asked for when that differs."""
    if not dtype:
        return "—"
    if not requested or requested == dtype:
        return dtype
    return f"{dtype} ({requested} asked; {why})" if why else f"{dtype} ({requested} asked)"


def as_record(precision: Precision) -> dict[str, Any]:
    """The embedding metadata's fields for `precision` (`dtype` is what ran: biobench/fit.py reads it)."""
    return {"dtype": precision.dtype, "dtype_requested": precision.requested, "dtype_reason": precision.why}
