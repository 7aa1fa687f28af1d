"""org: timm loads through timm's own code: pretrained names and hf-hub ids from a local Hugging Face cache (offline),
and local files; the image feature is biobench's per-family definition; bad names fail at config time."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch

from biobench.errors import ConfigError, ModelLoadError
from biobench.models import ModelSpec
from biobench.models.timm_org import TimmOrg
from biobench.models.weights import UNCACHED
from model_fixtures import encode, hf_cache, plant_hub_repo, random_timm, sample_image, save_timm_repo  # noqa: F401

ORG = TimmOrg()
DINO = "vit_small_patch14_reg4_dinov2"
DINO_REPO = f"timm/{DINO}.lvd142m"
SIZE = 56
SHALLOW = {"depth": 2}  # DINOv2-S/14 with 4 registers, 2 blocks deep instead of 12: same tokens, a fraction of the time


def reference(model, backbone, images) -> torch.Tensor:
    """forward_features of the saved model, on the images as the backbone transforms them."""
    transform = backbone.make_transform()
    with torch.inference_mode():
        return model.forward_features(torch.stack([transform(image) for image in images]))


@pytest.fixture
def dino(hf_cache, tmp_path):
    """A random-init DINOv2-with-registers saved as timm's hub repo for the pretrained tag, in the offline cache."""
    model = random_timm(DINO, seed=1, img_size=SIZE, **SHALLOW)
    commit = plant_hub_repo(hf_cache, DINO_REPO, save_timm_repo(model, tmp_path / "repo"))
    return model, commit


def test_dinov2_with_registers_gives_the_class_token_of_the_cached_weights(dino):
    saved, commit = dino
    spec = ModelSpec(name="dino", org="timm", checkpoint=f"{DINO}.lvd142m", image_size=SIZE, options=SHALLOW)
    ORG.validate(spec)
    assert ORG.weights_identity(spec) == {"hub": DINO_REPO, "revision": commit, "file": None}
    backbone = ORG.load(spec)
    images = [sample_image(0), sample_image(1)]
    features = encode(backbone, images)
    tokens = reference(saved, backbone, images)
    assert saved.num_prefix_tokens == 5 and features.shape == (2, 384)
    torch.testing.assert_close(features, tokens[:, 0])
    with torch.inference_mode():
        torch.testing.assert_close(features, saved.forward_head(tokens, pre_logits=True))  # timm's own CLS head input
    assert not torch.allclose(features, tokens[:, 1])  # a register token, not the class token
    assert backbone.describe_transform()["input_size"] == [3, SIZE, SIZE]
    other = random_timm(DINO, seed=2, img_size=SIZE, **SHALLOW)
    assert not torch.allclose(features, reference(other, backbone, images)[:, 0])


def test_dinov2_token_avg_is_the_class_token_and_the_mean_patch(dino):
    saved, _ = dino
    backbone = ORG.load(ModelSpec(name="d", org="timm", checkpoint=DINO, image_size=SIZE, pooling="token_avg",
                                  options=SHALLOW))
    images = [sample_image(2)]
    tokens = reference(saved, backbone, images)
    torch.testing.assert_close(encode(backbone, images), torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], -1))


def test_hf_hub_id_brings_its_config_and_weights(hf_cache, tmp_path):
    saved = random_timm("test_vit", seed=3, img_size=SIZE)
    folder = save_timm_repo(saved, tmp_path / "repo")
    commit = plant_hub_repo(hf_cache, "biobench-test/tiny-vit", folder)
    spec = ModelSpec(name="hub", org="timm", checkpoint="hf-hub:biobench-test/tiny-vit")
    ORG.validate(spec)
    assert ORG.weights_identity(spec) == {"hub": "biobench-test/tiny-vit", "revision": commit}
    backbone = ORG.load(spec)
    config = json.loads((folder / "config.json").read_text())
    assert backbone.describe_transform()["input_size"] == config["pretrained_cfg"]["input_size"]
    images = [sample_image(4)]
    torch.testing.assert_close(encode(backbone, images), reference(saved, backbone, images)[:, 0])


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_cnn_from_a_local_file_is_max_pooled_by_default(tmp_path, suffix):
    saved = random_timm("test_resnet", seed=5)
    path = tmp_path / f"finetuned{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(saved.state_dict(), path)
    else:
        torch.save(saved.state_dict(), path)
    spec = ModelSpec(name="cnn", org="timm", checkpoint="test_resnet", weights=str(path), image_size=40)
    ORG.validate(spec)
    backbone = ORG.load(spec)
    assert backbone.make_transform()(sample_image()).shape == (3, 40, 40)  # CNNs take any size
    images = [sample_image(5)]
    maps = reference(saved, backbone, images)
    torch.testing.assert_close(encode(backbone, images), maps.amax((2, 3)))
    avg = ORG.load(ModelSpec(name="cnn", org="timm", checkpoint="test_resnet", weights=str(path), pooling="avg"))
    with torch.inference_mode():
        torch.testing.assert_close(encode(avg, images), saved.forward_head(reference(saved, avg, images),
                                                                           pre_logits=True))
    before = ORG.weights_identity(spec)
    safetensors.torch.save_file(random_timm("test_resnet", seed=6).state_dict(), path)
    assert ORG.weights_identity(spec) != before


class Payload:
    """Stands for any object a pickle could smuggle in."""


def test_a_pickle_with_objects_is_refused(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({**random_timm("test_resnet", seed=0).state_dict(), "payload": Payload()}, path)
    with pytest.raises(ModelLoadError, match="Unpickl|weights_only"):
        ORG.load(ModelSpec(name="bad", org="timm", checkpoint="test_resnet", weights=str(path)))


def test_channels_last_feature_maps_are_pooled_over_space():
    spec = ModelSpec(name="m", org="timm", checkpoint="test_mambaout", weights="random", image_size=64, seed=7)
    backbone = ORG.load(spec)
    images = [sample_image(6)]
    maps = reference(backbone.model, backbone, images)  # (b, h, w, c): timm's NHWC models
    assert backbone.model.output_fmt == "NHWC"
    torch.testing.assert_close(encode(backbone, images), maps.amax((1, 2)))


def test_random_init_is_seeded():
    spec = ModelSpec(name="r", org="timm", checkpoint="test_vit", weights="random", seed=1)
    images = [sample_image(7)]
    first, second = encode(ORG.load(spec), images), encode(ORG.load(spec), images)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    other = ModelSpec(name="r", org="timm", checkpoint="test_vit", weights="random", seed=2)
    assert not torch.allclose(first, encode(ORG.load(other), images))
    assert ORG.weights_identity(spec) == {}


def test_class_token_pooling_of_a_cnn_says_what_to_use():
    backbone = ORG.load(ModelSpec(name="c", org="timm", checkpoint="test_resnet", weights="random", pooling="cls"))
    with pytest.raises(ModelLoadError, match="use avg or max"):
        encode(backbone, [sample_image()])


def test_uncached_tutorial_model_plans_offline(hf_cache, caplog):
    spec = ModelSpec(name="dinov2", org="timm", checkpoint="vit_base_patch14_reg4_dinov2.lvd142m", image_size=224)
    ORG.validate(spec)
    assert ORG.weights_identity(spec)["revision"] == UNCACHED
    assert "hf download timm/vit_base_patch14_reg4_dinov2.lvd142m" in caplog.text


def test_uncached_pretrained_weights_fail_to_load_with_the_fix(hf_cache):
    with pytest.raises(ModelLoadError, match="hf download"):
        ORG.load(ModelSpec(name="r", org="timm", checkpoint="test_resnet.r160_in1k"))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"checkpoint": ""}, ["checkpoint is required"]),
        ({"checkpoint": "vit_small_patch14_reg4_dinov3"}, ["timm has no model", "did you mean"]),
        ({"checkpoint": f"{DINO}.lvd124m"}, ["no pretrained tag 'lvd124m'", "did you mean lvd142m"]),
        ({"checkpoint": "coatnet_0_224"}, ["no pretrained weights for coatnet_0_224", "random"]),
        ({"checkpoint": "hf-hub:dinov2"}, ["not a Hugging Face hub id", "owner/name"]),
        ({"checkpoint": "hf-hub:timm/resnet18.a1_in1k", "weights": "/w.pt"}, ["hf-hub: checkpoint brings its own"]),
        ({"checkpoint": "resnet18", "weights": "/nonexistent/w.pt"}, ["no file '/nonexistent/w.pt'"]),
        ({"checkpoint": "resnet18", "options": {"img_size": 64}}, ["options: img_size are set by biobench"]),
    ],
)
def test_bad_checkpoints_fail_at_config_time(fields, expected):
    with pytest.raises(ConfigError) as err:
        ORG.validate(ModelSpec(name="m", org="timm", **fields))
    for text in expected:
        assert text in str(err.value)
