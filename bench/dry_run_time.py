"""Time `snakemake -n` on a config with 20 models and every registered task (issue 6: <= 10 s on 2 cores).

Prints the wall time of each of `--repeats` dry runs, the job count, and the ratio to a baseline dry run of the
built-in default config (3 models, 1 task) measured in the same process."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from biobench.tasks import TASKS

ROOT = Path(__file__).resolve().parent.parent
TIMM = ["resnet18", "resnet50", "convnext_tiny", "efficientnet_b0", "mobilenetv3_large_100", "vit_small_patch16_224",
        "vit_base_patch16_224", "vit_base_patch14_reg4_dinov2.lvd142m", "vit_large_patch14_reg4_dinov2.lvd142m",
        "regnety_016"]


def dry_run(config: dict) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as workdir:
        (Path(workdir) / "config.yaml").write_text(yaml.safe_dump(config))
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", workdir,
             "--configfile", f"{workdir}/config.yaml", "--workflow-profile", "none", "--cores", "8", "-n"],
            capture_output=True, text=True, cwd=workdir, check=True,
        ).stdout
        seconds = time.perf_counter() - start
    total = next((line.split()[-1] for line in out.splitlines() if line.startswith("total")), "?")
    return seconds, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    models = {}
    for name in TIMM:
        models[name] = {"org": "timm", "checkpoint": name}
        models[f"{name}-random"] = {"org": "timm", "checkpoint": name, "weights": "random"}
    big = {"models": models, "tasks": {task: {} for task in TASKS.names()}}
    baseline, base_jobs = dry_run(yaml.safe_load((ROOT / "config.yaml").read_text()))
    print(f"baseline: default config, {base_jobs} jobs planned in {baseline:.2f} s")
    for _ in range(args.repeats):
        seconds, jobs = dry_run(big)
        print(f"20 models x {len(TASKS.names())} tasks: {jobs} jobs planned in {seconds:.2f} s "
              f"(target <= 10 s: {'PASS' if seconds <= 10 else 'FAIL'}); ratio to baseline {seconds / baseline:.2f}x")


if __name__ == "__main__":
    main()
