"""Run the real Snakemake CLI on the project's Snakefile in a temporary working directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def small_config(**overrides) -> dict:
    """The default config shrunk for tests: fewer images, smaller inputs, fewer resamples."""
    config = {
        "models": {
            "lite0-random": {"org": "timm", "checkpoint": "tf_efficientnet_lite0", "weights": "random",
                             "image_size": 32, "batch_size": 64},
            "pixels": {"org": "pixels", "image_size": 16},
        },
        "tasks": {"animals": {"train_size": 200, "test_size": 100}},
        "classifiers": {"logreg": {"Cs": [0.01, 1.0]}},
        "bootstrap": {"resamples": 200},
        "embed": {"num_workers": 0, "log_every_s": 1},
    }
    config.update(overrides)
    return config


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def copy_checkout(dest: Path, source: Path = ROOT) -> Path:
    """A private copy of the workflow and the package (mtimes kept), for tests that edit code or must not see edits
    made to the working tree while they run. Snakemake imports the package beside the Snakefile."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "biobench", "profiles"):
        path = source / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, checkout: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    """Run the Snakefile of `checkout`; its jobs import that checkout's package too (PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = snakemake_command(workdir, "--workflow-profile", "none", "--cores", "2", *args, checkout=checkout)
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900,
                            cwd=workdir)  # not the checkout: `python -m` puts the cwd first on sys.path
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
                             f"{result.stderr[-8000:]}")
    return result


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}; empty when there is nothing to be done."""
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"\s*(\w+)\s+(\d+)\s*", line)
        if not match:
            break
        counts[match[1]] = int(match[2])
    counts.pop("total", None)
    return counts


def seed_download(workdir: Path, animals_data: Path) -> None:
    """Place the already-fetched wheel where the download rule looks first, so the rule re-uses it."""
    dest = workdir / "resources/data/animals/wheel"
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in (animals_data / "wheel").glob("*.whl"):
        shutil.copy2(wheel, dest / wheel.name)


def snakemake_command(workdir: Path, *args: str, checkout: Path = ROOT) -> list[str]:
    """The CLI as a user runs it on this workdir: profiles/default applies and nothing is added (no --cores)."""
    return [sys.executable, "-m", "snakemake", "-s", str(checkout / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml"), *args]
