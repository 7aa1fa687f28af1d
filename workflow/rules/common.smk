# Config validation, artifact keys and input functions. Everything here runs when the DAG is built.

import os
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from biobench import config as biobench_config
from biobench.devices import local_gpu_count
from biobench import atomic
from biobench import data_state
from biobench import keys
from biobench import precision
from biobench.classifiers import CLASSIFIERS
from biobench.errors import BiobenchError, ConfigError
from biobench.models import ORGS
from biobench.stats.comparisons import check_resamples
from biobench.tasks import TASKS
from biobench.tasks.base import data_options

try:
    _filled = biobench_config.validate_and_fill(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
    CFG = biobench_config.from_filled(_filled)
    config.update(_filled)
    # The precision each model runs at, planned for the device embed jobs will use; jobs re-parsing this file on a
    # compute node inherit the hardware seen here (precision.TARGET_ENV), so they find the same model keys.
    _inherited_plan = precision.TARGET_ENV in os.environ
    EMBED_HARDWARE = precision.planned_hardware(CFG.embed.device, local_gpu_count)
    PRECISIONS = {name: precision.plan_precision(spec.dtype, CFG.embed.precision, EMBED_HARDWARE)
                  for name, spec in CFG.models.items()}
    MODEL_KEYS = {name: keys.model_key(spec, PRECISIONS[name].dtype) for name, spec in CFG.models.items()}
    DATASET_KEYS = {task: keys.dataset_key(task, options) for task, options in CFG.tasks.items()}
    CLASSIFIER_SETTINGS = biobench_config.classifier_settings(CFG)
    try:  # here, not in biobench.config: the jobs that import that must not re-run when the statistics code changes
        check_resamples(CFG.bootstrap.resamples, CFG.bootstrap.confidence)
    except ValueError as err:
        raise ConfigError(f"config.yaml: {err}") from None
    CLASSIFIER_KEYS = {
        task: keys.classifier_key(TASKS.get(task).classifier, CLASSIFIER_SETTINGS[task], CFG.seed)
        for task in CFG.tasks
    }
except BiobenchError as err:
    raise WorkflowError(str(err)) from None
except KeyError as err:  # unknown registry names
    raise WorkflowError(f"config.yaml: {err}") from None

_same_spec = {}
for _name, _key in MODEL_KEYS.items():
    if _key in _same_spec:
        raise WorkflowError(f"config.yaml: models {_same_spec[_key]!r} and {_name!r} are the same model; keep one")
    _same_spec[_key] = _name

MODEL_BY_KEY = {key: CFG.models[name] for name, key in MODEL_KEYS.items()}
PRECISION_BY_KEY = {key: PRECISIONS[name] for name, key in MODEL_KEYS.items()}
TASK_BY_DATASET = {key: task for task, key in DATASET_KEYS.items()}

if not _inherited_plan:  # said once, by the process that plans
    for _name, _precision in PRECISIONS.items():
        if _precision.slow:
            logger.warning(f"embedding on {EMBED_HARDWARE.name}: {_precision.describe(_name)}")
        elif _precision.dtype != _precision.requested:
            logger.info(f"embedding on {EMBED_HARDWARE.name}: {_precision.describe(_name)}")


# `gpu` is a per-job cap on a cluster (local scope), and locally at most one GPU job per GPU runs at once
# (one at a time on a CPU-only machine, where each embed job uses every core). --resources gpu=N overrides it.
resource_scopes:
    gpu="local",


if "gpu" not in workflow.global_resources:
    workflow.global_resources["gpu"] = max(1, local_gpu_count())


wildcard_constraints:
    task="[A-Za-z0-9_]+",
    model="[^/]+",
    dataset="[^/]+",
    split="[A-Za-z0-9_]+",
    classifier="[^/]+",
    n_train="all|[0-9]+",


def task_of(wildcards):
    return TASK_BY_DATASET[wildcards.dataset]


def data_dir(task):
    return CFG.tasks[task].datadir or f"resources/data/{task}"


def download_stamp(task):
    return f"resources/data/{task}/.download-complete"


def manifest_path(task):
    return f"results/manifests/{DATASET_KEYS[task]}.parquet"


def embedding_path(model_name, task, split):
    return f"results/embeddings/{MODEL_KEYS[model_name]}/{DATASET_KEYS[task]}/{split}.parquet"


def train_size_label(size):
    """The `n_train` wildcard: "all" for 0 (every training row), else the number."""
    return "all" if size == 0 else str(size)


def predictions_path(model_name, task, size):
    return (f"results/predictions/{MODEL_KEYS[model_name]}/{DATASET_KEYS[task]}/{CLASSIFIER_KEYS[task]}/"
            f"train-{train_size_label(size)}.parquet")


def all_predictions():
    return [predictions_path(model, task, size)
            for model in CFG.models for task in CFG.tasks for size in CFG.tasks[task].n_train]


def data_options_of(task):
    return data_options(CFG.tasks[task])


def data_state_path(task):
    return f"results/manifests/{DATASET_KEYS[task]}.files.json"


def manifest_input(wildcards):
    task = task_of(wildcards)
    return [data_state_path(task)] + ([] if CFG.tasks[task].datadir else [download_stamp(task)])



def fit_inputs(wildcards):
    task_cls = TASKS.get(task_of(wildcards))
    base = f"results/embeddings/{wildcards.model}/{wildcards.dataset}"
    return {
        "manifest": f"results/manifests/{wildcards.dataset}.parquet",
        "train": f"{base}/{task_cls.train_split}.parquet",
        "eval": f"{base}/{task_cls.eval_split}.parquet",
    }


def model_name_of(wildcards):
    return next(name for name, key in MODEL_KEYS.items() if key == wildcards.model)


# Code digests: each rule names its entry module and the registered implementation it runs (keys.code_digest
# follows their biobench imports), so editing that code re-runs the rule and nothing else.


def download_code(wildcards):
    return keys.code_digest("biobench.fetch", TASKS.get(wildcards.task).__module__)


def manifest_code(wildcards):
    return keys.code_digest("biobench.manifest", TASKS.get(task_of(wildcards)).__module__)


def embed_code(wildcards):
    return keys.code_digest("biobench.embed", ORGS.get(MODEL_BY_KEY[wildcards.model].org).__module__)


def fit_code(wildcards):
    task = TASKS.get(task_of(wildcards))
    return keys.code_digest("biobench.fit", task.__module__, CLASSIFIERS.get(task.classifier).__module__)


def classifier_name(wildcards):
    return TASKS.get(task_of(wildcards)).classifier


def made_from_artifacts():
    """Every manifest, embedding, prediction file and the database the configured run uses -> the files of the run
    made from it."""
    db = "results/biobench.duckdb"  # rule aggregate writes it
    made = {db: []}
    for task in CFG.tasks:
        splits = dict.fromkeys((TASKS.get(task).train_split, TASKS.get(task).eval_split))
        embeddings = {model: [embedding_path(model, task, split) for split in splits] for model in CFG.models}
        predictions = {model: [predictions_path(model, task, size) for size in CFG.tasks[task].n_train]
                       for model in CFG.models}
        made[manifest_path(task)] = [*sum(embeddings.values(), []), *sum(predictions.values(), []), db]
        for model in CFG.models:
            made.update(dict.fromkeys(embeddings[model], [*predictions[model], db]))
            made.update(dict.fromkeys(predictions[model], [db]))
    return made


# Before Snakemake plans, the process that plans (never a job re-parsing this file on a node, which must not touch
# what running jobs read):
# - deletes the temporaries of jobs that died while writing (biobench/atomic.py);
# - deletes artifacts that exist but cannot be read (cut short by a full disk or a crash), with what was made from
#   them, so that Snakemake rebuilds them all (biobench/artifacts.py);
# - writes, for each task, a file standing for its data, newer than the manifest when the files changed since the
#   manifest was built (biobench/data_state.py): Snakemake does not look inside a data folder.
if not _inherited_plan:
    from biobench import artifacts

    for _temp, _size in atomic.sweep_temps("results").deleted:
        logger.info(f"deleted {_temp} ({_size / 2**20:.1f} MiB), left by a job that died while writing it")
    for _message in artifacts.discard_run(made_from_artifacts()):
        logger.warning(_message)
    for _task in CFG.tasks:
        data_state.refresh_state(_task, data_dir(_task), manifest_path(_task), data_state_path(_task), logger.warning)
