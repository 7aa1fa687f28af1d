"""The tutorial models pass config validation and plan offline, before their weights are fetched; bad model entries
stop the run before any job with the key and the fix in the message."""

from __future__ import annotations

import pytest

from biobench import config
from biobench.errors import ConfigError
from biobench.keys import model_key
from model_fixtures import hf_cache  # noqa: F401  (fixture)
from workflow_helpers import ROOT, planned_jobs, small_config, snakemake, write_config

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
TUTORIAL_MODELS = {
    "bioclip": {"org": "open-clip", "checkpoint": "hf-hub:imageomics/bioclip"},
    "dinov2-b14-reg": {"org": "timm", "checkpoint": "vit_base_patch14_reg4_dinov2.lvd142m", "image_size": 224},
}


def tutorial_config() -> dict:
    raw = small_config()
    raw["models"].update(TUTORIAL_MODELS)
    return raw


def test_tutorial_models_validate_and_get_distinct_stable_keys_offline(hf_cache):
    cfg = config.load(tutorial_config(), SCHEMA)
    keys = {name: model_key(spec) for name, spec in cfg.models.items()}
    assert keys["bioclip"].startswith("open-clip-hf-hub-imageomics-bioclip-")
    assert keys["dinov2-b14-reg"].startswith("timm-vit_base_patch14_reg4_dinov2.lvd142m-")
    assert len(set(keys.values())) == len(keys)
    assert keys == {name: model_key(spec) for name, spec in config.load(tutorial_config(), SCHEMA).models.items()}


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"org": "open_clip", "checkpoint": "ViT-B-16/openai"}, ["unknown model org 'open_clip'", "open-clip"]),
        ({"org": "open-clip", "checkpoint": "ViT-B-16/opneai"}, ["models.m.checkpoint", "did you mean openai"]),
        ({"org": "timm", "checkpoint": "vit_base_patch14_reg4_dinov2.lvd124m"}, ["models.m.checkpoint",
                                                                                  "lvd142m"]),
        ({"org": "python", "checkpoint": "not_a_module_xyz:make"}, ["models.m", "cannot import"]),
    ],
)
def test_bad_model_entries_fail_config_validation(entry, expected):
    raw = small_config()
    raw["models"]["m"] = entry
    with pytest.raises(ConfigError) as err:
        config.load(raw, SCHEMA)
    for text in expected:
        assert text in str(err.value)


@pytest.mark.workflow
def test_dry_run_plans_the_tutorial_models_without_their_weights(tmp_path, monkeypatch):
    write_config(tmp_path, tutorial_config())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    result = snakemake(tmp_path, "-n")
    jobs = planned_jobs(result)
    assert jobs["embed"] == 2 * len(tutorial_config()["models"]) and jobs["fit"] == len(tutorial_config()["models"])
    assert "hf download imageomics/bioclip" in result.stderr
