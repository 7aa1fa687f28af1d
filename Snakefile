# biobench: which frozen vision backbone serves biology best, by how much, and how sure can we be?
# Run: snakemake --cores 8        Report: snakemake report        Cluster: snakemake --profile profiles/slurm

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from biobench.config import check_config_files
from biobench.errors import ConfigError

min_version("8.20")

# Snakemake keeps the last of a repeated key and names no line for a YAML error; biobench reads the files first.
try:
    check_config_files(["config.yaml", *workflow.overwrite_configfiles])
except ConfigError as err:
    raise WorkflowError(str(err)) from None


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/manifest.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.aggregate.output,
        rules.report.output,
