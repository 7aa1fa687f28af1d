"""Time the README's first command, `snakemake --cores 8` on the shipped config.yaml, on a CPU without native
bfloat16 (issue 11: <= 3 minutes on a 2-core AVX2-only CPU).

Each run is a fresh copy of the checkout in a temporary directory (so it downloads the animals data and embeds from
scratch). An AVX2-only CPU is emulated on any newer x86 CPU by limiting oneDNN, ATen and MKL to AVX2
(EMULATE_AVX2). Prints the wall time of the default (embed.precision: auto, where the bfloat16 models run float32)
and of the baseline embed.precision: as_requested (bfloat16 emulated, as before issue 11), and their ratio; with
--native, also the default without the emulation.

    python bench/default_workflow_time.py             # about 6 minutes on 2 cores (85 s + the 256 s baseline)
    python bench/default_workflow_time.py --native
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EMULATE_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
CHECKOUT = ("Snakefile", "workflow", "biobench", "profiles", "config.yaml")
TARGET_S = 180


def run_default(env_extra: dict[str, str], precision: str) -> tuple[float, list[str]]:
    """Wall seconds of `snakemake --cores 8` in a fresh copy, and what its embed logs say about the precision."""
    with tempfile.TemporaryDirectory(prefix="biobench-default-") as tmp:
        work = Path(tmp)
        for name in CHECKOUT:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, work / name)
        if precision != "auto":
            config = yaml.safe_load((work / "config.yaml").read_text())
            config.setdefault("embed", {})["precision"] = precision
            (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if k not in EMULATE_AVX2 and not k.startswith("BIOBENCH_")}
        env |= env_extra | {"PYTHONPATH": str(work)}
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "8"], cwd=work, env=env,
                                capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"snakemake failed ({result.returncode}):\n{result.stderr[-6000:]}")
        lines = [line.split(": ", 1)[-1] for log in sorted((work / "logs/embed").rglob("*.log"))
                 for line in log.read_text().splitlines() if "embedded" in line]
    return seconds, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--native", action="store_true", help="also time the default without the AVX2 emulation")
    args = parser.parse_args()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    print(f"CPU: {model}, {os.cpu_count()} cores; AVX2-only emulated with "
          + " ".join(f"{k}={v}" for k, v in EMULATE_AVX2.items()))
    runs = [("AVX2, embed.precision: as_requested (baseline)", EMULATE_AVX2, "as_requested"),
            ("AVX2, embed.precision: auto (the default)", EMULATE_AVX2, "auto")]
    if args.native:
        runs.append(("native CPU, embed.precision: auto", {}, "auto"))
    times = {}
    for label, env, precision in runs:
        seconds, lines = run_default(env, precision)
        times[label] = seconds
        print(f"{label}: {seconds:.1f} s")
        for line in lines:
            print(f"    {line}")
    baseline, default = times[runs[0][0]], times[runs[1][0]]
    print(f"default under AVX2: {default:.1f} s (target <= {TARGET_S} s: {'PASS' if default <= TARGET_S else 'FAIL'});"
          f" {baseline / default:.2f}x faster than the as_requested baseline ({baseline:.1f} s)")


if __name__ == "__main__":
    main()
