"""org: open-clip loads through open_clip's own code: hf-hub ids from a local Hugging Face cache (offline), pretrained
tags, and local files; bad checkpoints fail at config time with the fix in the message."""

from __future__ import annotations

import pytest
import torch

from biobench.errors import ConfigError, ModelLoadError
from biobench.models import ModelSpec
from biobench.models.open_clip_org import OpenClipOrg
from biobench.models.weights import UNCACHED
from model_fixtures import (  # noqa: F401  (fixtures)
    TINY_CLIP, encode, hf_cache, plant_hub_repo, sample_image, save_open_clip_repo, tiny_clip, tiny_clip_architecture,
)

REPO = "biobench-test/tiny-clip"
ORG = OpenClipOrg()


def hub_spec(**fields) -> ModelSpec:
    return ModelSpec(name="tiny", org="open-clip", checkpoint=f"hf-hub:{REPO}", **fields)


def reference_features(model, images, transform=None) -> torch.Tensor:
    """The saved model's own image embedding, through its own eval preprocess unless another is given."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    transform = transform or image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    with torch.inference_mode():
        return model.encode_image(torch.stack([transform(image) for image in images]))


@pytest.fixture
def hub_model(hf_cache, tmp_path):
    model = tiny_clip(seed=1)
    plant_hub_repo(hf_cache, REPO, save_open_clip_repo(model, tmp_path / "repo"))
    return model


@pytest.mark.parametrize("weights_format", ["safetensors", "bin"])
def test_hf_hub_id_loads_the_cached_weights(hf_cache, tmp_path, weights_format):
    saved = tiny_clip(seed=1)
    plant_hub_repo(hf_cache, REPO, save_open_clip_repo(saved, tmp_path / "repo", weights_format))
    spec = hub_spec()
    ORG.validate(spec)
    images = [sample_image(0), sample_image(1)]
    features = encode(ORG.load(spec), images)
    assert features.shape == (2, TINY_CLIP["embed_dim"])
    torch.testing.assert_close(features, reference_features(saved, images))
    assert not torch.allclose(features, reference_features(tiny_clip(seed=2), images))


def test_hub_features_are_deterministic_and_the_transform_is_recorded(hub_model):
    images = [sample_image(3)]
    first, second = encode(ORG.load(hub_spec()), images), encode(ORG.load(hub_spec()), images)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    described = ORG.load(hub_spec()).describe_transform()
    assert described["size"] == [32, 32] and described["mean"] == list(hub_model.visual.image_mean)


def test_image_size_resamples_the_position_embedding(hub_model):
    backbone = ORG.load(hub_spec(image_size=48))
    assert backbone.make_transform()(sample_image()).shape == (3, 48, 48)
    assert encode(backbone, [sample_image()]).shape == (1, TINY_CLIP["embed_dim"])


def test_token_poolings_read_the_vit_tokens_before_the_projection(hub_model):
    images = [sample_image(4)]
    width = TINY_CLIP["vision_cfg"]["width"]
    cls = encode(ORG.load(hub_spec(pooling="cls")), images)
    torch.testing.assert_close(cls @ hub_model.visual.proj.detach(), reference_features(hub_model, images))
    assert encode(ORG.load(hub_spec(pooling="avg")), images).shape == (1, width)
    token_avg = encode(ORG.load(hub_spec(pooling="token_avg")), images)
    assert token_avg.shape == (1, 2 * width)
    torch.testing.assert_close(token_avg[:, :width], cls)


def test_weights_identity_is_the_cached_commit(hf_cache, tmp_path):
    first = plant_hub_repo(hf_cache, REPO, save_open_clip_repo(tiny_clip(seed=1), tmp_path / "a"))
    assert ORG.weights_identity(hub_spec()) == {"hub": REPO, "revision": first}
    second = plant_hub_repo(hf_cache, REPO, save_open_clip_repo(tiny_clip(seed=2), tmp_path / "b"))
    assert second != first and ORG.weights_identity(hub_spec()) == {"hub": REPO, "revision": second}


def test_uncached_hub_weights_warn_offline_and_fail_to_load_with_the_fix(hf_cache, caplog):
    spec = ModelSpec(name="bioclip", org="open-clip", checkpoint="hf-hub:imageomics/bioclip")
    ORG.validate(spec)  # the id is well formed; the cache is checked when the key is computed
    assert ORG.weights_identity(spec) == {"hub": "imageomics/bioclip", "revision": UNCACHED}
    assert "models.bioclip: the weights of imageomics/bioclip are not in" in caplog.text
    assert "hf download imageomics/bioclip" in caplog.text
    with pytest.raises(ModelLoadError, match="hf download"):
        ORG.load(spec)


def test_a_cached_config_without_weights_fails_instead_of_random_init(hf_cache, tmp_path):
    folder = save_open_clip_repo(tiny_clip(seed=1), tmp_path / "repo")
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    plant_hub_repo(hf_cache, REPO, folder)
    with pytest.raises(ModelLoadError, match="could not load"):
        ORG.load(hub_spec())


class Payload:
    """Stands for any object a pickle could smuggle in."""


def test_a_pickle_with_objects_is_refused(hf_cache, tmp_path):
    from open_clip.constants import HF_WEIGHTS_NAME

    folder = save_open_clip_repo(tiny_clip(seed=1), tmp_path / "repo", weights_format="bin")
    torch.save({**tiny_clip(seed=1).state_dict(), "payload": Payload()}, folder / HF_WEIGHTS_NAME)
    plant_hub_repo(hf_cache, REPO, folder)
    with pytest.raises(ModelLoadError, match="Unpickl|weights_only"):
        ORG.load(hub_spec())


def test_architecture_with_a_local_file(tiny_clip_architecture, tmp_path):
    import safetensors.torch
    from open_clip import OPENAI_DATASET_MEAN

    saved = tiny_clip(seed=5)
    path = tmp_path / "finetuned.safetensors"
    safetensors.torch.save_file(saved.state_dict(), path)
    spec = ModelSpec(name="mine", org="open-clip", checkpoint=tiny_clip_architecture, weights=str(path))
    ORG.validate(spec)
    images = [sample_image(6)]
    backbone = ORG.load(spec)
    assert backbone.describe_transform()["mean"] == list(OPENAI_DATASET_MEAN)  # the architecture's default preprocess
    torch.testing.assert_close(encode(backbone, images), reference_features(saved, images, backbone.make_transform()))
    before = ORG.weights_identity(spec)
    safetensors.torch.save_file(tiny_clip(seed=6).state_dict(), path)
    assert ORG.weights_identity(spec) != before


def test_random_init_from_a_hub_config_ignores_its_weights(hub_model):
    images = [sample_image(9)]
    random = encode(ORG.load(hub_spec(weights="random", seed=7)), images)
    assert random.shape == (1, TINY_CLIP["embed_dim"])
    assert not torch.allclose(random, reference_features(hub_model, images))


def test_random_init_is_seeded(tiny_clip_architecture):
    spec = ModelSpec(name="r", org="open-clip", checkpoint=tiny_clip_architecture, weights="random", seed=3)
    ORG.validate(spec)
    images = [sample_image(7)]
    torch.testing.assert_close(encode(ORG.load(spec), images), encode(ORG.load(spec), images), rtol=0, atol=0)
    other = ModelSpec(name="r", org="open-clip", checkpoint=tiny_clip_architecture, weights="random", seed=4)
    assert not torch.allclose(encode(ORG.load(spec), images), encode(ORG.load(other), images))
    assert ORG.weights_identity(spec) == {}


def test_pretrained_tag_resolves_to_its_hub_repo(hf_cache, tmp_path):
    spec = ModelSpec(name="clip", org="open-clip", checkpoint="ViT-B-16/openai")
    ORG.validate(spec)
    folder = tmp_path / "tag"
    folder.mkdir()
    (folder / "open_clip_model.safetensors").write_bytes(b"stand-in")
    commit = plant_hub_repo(hf_cache, "timm/vit_base_patch16_clip_224.openai", folder)
    assert ORG.weights_identity(spec) == {"hub": "timm/vit_base_patch16_clip_224.openai", "revision": commit,
                                          "file": ""}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"checkpoint": ""}, ["checkpoint is required", "hf-hub:imageomics/bioclip"]),
        ({"checkpoint": "ViT-B-61/openai"}, ["no architecture 'ViT-B-61'", "did you mean", "ViT-B-16"]),
        ({"checkpoint": "ViT-B-16/opnai"}, ["no pretrained tag 'opnai'", "did you mean openai", "laion2b_s34b_b88k"]),
        ({"checkpoint": "ViT-B-16"}, ["ViT-B-16 alone has no weights", "known tags: openai"]),
        ({"checkpoint": "hf-hub:bioclip"}, ["not a Hugging Face hub id", "owner/name"]),
        ({"checkpoint": "ViT-B-16/openai", "weights": "random"}, ["pretrained tag 'openai' brings its own weights"]),
        ({"checkpoint": "hf-hub:imageomics/bioclip", "weights": "/w.pt"}, ["hf-hub: checkpoint brings its own"]),
        ({"checkpoint": "ViT-B-16", "weights": "/nonexistent/w.pt"}, ["no file '/nonexistent/w.pt'"]),
        ({"checkpoint": "RN50/openai", "pooling": "cls"}, ["reads ViT tokens", "ResNet image tower"]),
        ({"checkpoint": "ViT-B-16/openai", "options": {"pretrained": "x"}}, ["options: pretrained are set by"]),
    ],
)
def test_bad_checkpoints_fail_at_config_time(fields, expected):
    with pytest.raises(ConfigError) as err:
        ORG.validate(ModelSpec(name="m", org="open-clip", **fields))
    for text in expected:
        assert text in str(err.value)



def test_pretrained_tag_loads_from_the_cache_with_its_quick_gelu(tiny_clip_architecture, hf_cache, tmp_path,
                                                                 monkeypatch):
    """Tags such as ViT-B-16/openai were trained with QuickGELU, as their pretrained config says; loading them into
    the plain-GELU architecture would change every feature. A tag for the tiny architecture is added to open_clip's
    own table (as for the real tags: weights in a hub repo), then loaded through open_clip's hub download."""
    import open_clip
    import safetensors.torch
    from open_clip.pretrained import _PRETRAINED, _pcfg

    repo = "biobench-test/tiny-clip-quickgelu"
    monkeypatch.setitem(_PRETRAINED, tiny_clip_architecture, {"quick": _pcfg(hf_hub=f"{repo}/", quick_gelu=True)})
    torch.manual_seed(0)
    saved = open_clip.CLIP(**TINY_CLIP, quick_gelu=True).eval()
    folder = tmp_path / "tag"
    folder.mkdir()
    safetensors.torch.save_file(saved.state_dict(), folder / "open_clip_model.safetensors")
    commit = plant_hub_repo(hf_cache, repo, folder)
    spec = ModelSpec(name="clip", org="open-clip", checkpoint=f"{tiny_clip_architecture}/quick")
    ORG.validate(spec)
    assert ORG.weights_identity(spec) == {"hub": repo, "revision": commit, "file": ""}

    backbone = ORG.load(spec)
    images = [sample_image(8)]
    features = encode(backbone, images)
    torch.testing.assert_close(features, reference_features(saved, images, backbone.make_transform()))
    plain_gelu = open_clip.CLIP(**TINY_CLIP).eval()
    plain_gelu.load_state_dict(saved.state_dict())
    assert not torch.allclose(features, reference_features(plain_gelu, images, backbone.make_transform()))
