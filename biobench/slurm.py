"""Site settings for `snakemake --profile profiles/slurm`, read from BIOBENCH_SLURM_* environment variables.

The profile (a YTE template) turns them into Snakemake resources, so that account, partition and GPU type are set
in one place and never by editing rule files."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from biobench.errors import BiobenchError

GPU_FLAGS = ("gpus", "gres")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # account and partition names
_GPU_MODEL = re.compile(r"^[A-Za-z0-9_.]+$")  # what the SLURM plugin accepts in --gpus=<model>:N and --gres


class SlurmSiteError(BiobenchError):
    """A BIOBENCH_SLURM_* environment variable has a value the SLURM profile cannot use."""


@dataclass(frozen=True)
class SlurmSite:
    """Empty strings mean "not set": the cluster's default partition, the plugin's account guess, any GPU type."""

    account: str = ""
    partition: str = ""
    gpu_partition: str = ""
    gpu_model: str = ""
    gpu_flag: str = "gpus"

    def __post_init__(self) -> None:
        if self.gpu_flag not in GPU_FLAGS:
            raise SlurmSiteError(
                f"BIOBENCH_SLURM_GPU_FLAG is {self.gpu_flag!r}; set it to 'gpus' (sbatch --gpus, the default) or "
                "'gres' (sbatch --gres, for clusters that answer 'Requested GRES option unsupported')"
            )
        for variable, value, pattern, allowed in (
            ("ACCOUNT", self.account, _NAME, "letters, digits, '_', '.' and '-'"),
            ("PARTITION", self.partition, _NAME, "letters, digits, '_', '.' and '-'"),
            ("GPU_PARTITION", self.gpu_partition, _NAME, "letters, digits, '_', '.' and '-'"),
            ("GPU_MODEL", self.gpu_model, _GPU_MODEL, "letters, digits, '_' and '.' (as in `sinfo -o %G`)"),
        ):
            if value and not pattern.match(value):
                raise SlurmSiteError(f"BIOBENCH_SLURM_{variable} is {value!r}, but it may only contain {allowed}; "
                                     "fix the environment variable")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SlurmSite:
        def get(name: str) -> str:
            return environ.get(f"BIOBENCH_SLURM_{name}", "").strip()

        return cls(account=get("ACCOUNT"), partition=get("PARTITION"), gpu_partition=get("GPU_PARTITION"),
                   gpu_model=get("GPU_MODEL"), gpu_flag=get("GPU_FLAG") or "gpus")

    def default_resources(self) -> dict[str, str]:
        """Account and partition for every submitted job; unset ones are left to SLURM and the plugin."""
        resources = {}
        if self.account:
            resources["slurm_account"] = _literal(self.account)
        if self.partition:
            resources["slurm_partition"] = _literal(self.partition)
        return resources

    def gpu_resources(self, count: int) -> dict[str, int | str]:
        """Resources that make the plugin ask for `count` GPUs with the flag this cluster accepts.

        gpus: `gpu` (+ `gpu_model`) -> `sbatch --gpus=[model:]N`.
        gres: `gres` -> `sbatch --gres=gpu:[model:]N`, with `gpu` zeroed so that --gpus is not sent as well."""
        if count < 1:
            raise ValueError(f"a GPU request needs at least one GPU, got {count}")
        if self.gpu_flag == "gres":
            gres = ":".join(["gpu", *filter(None, [self.gpu_model]), str(count)])
            resources: dict[str, int | str] = {"gres": _literal(gres), "gpu": 0}
        else:
            resources = {"gpu": count}
            if self.gpu_model:
                resources["gpu_model"] = _literal(self.gpu_model)
        if self.gpu_partition:
            resources["slurm_partition"] = _literal(self.gpu_partition)
        return resources


def _literal(value: str) -> str:
    """Snakemake evaluates profile resource values as Python expressions: a partition named `all` would become the
    builtin function. A string literal evaluates to itself."""
    return repr(value)
