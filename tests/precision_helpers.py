"""An AVX2-only CPU emulated on a newer x86 one, for tests of the precision plan."""

from __future__ import annotations

from biobench import precision

# oneDNN, ATen and MKL kept to AVX2 (what a CPU without AVX512-BF16/AMX has)
EMULATE_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def emulated_avx2_reason() -> str:
    """Why bfloat16 is not fast on this machine under EMULATE_AVX2, as biobench.precision words it. precision checks
    the CPU's flags before the ISA limits, so a CPU with native bfloat16 names the limit and one without (a real
    AVX2-only CPU) names the missing hardware."""
    facts = precision.cpu_facts()
    verdict = precision.cpu_verdict("bfloat16", facts.flags, facts.machine, EMULATE_AVX2)
    assert not verdict.fast, verdict
    if facts.machine in precision.X86_MACHINES:
        if facts.flags & {"avx512_bf16", "amx_bf16"}:
            assert verdict.why.startswith("ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN below AVX512_CORE_"), verdict.why
        else:
            assert verdict.why == "this CPU has no native bfloat16 (AVX512-BF16 or AMX-BF16)", verdict.why
    return verdict.why
