"""A local weights file loads only when its keys match the model's: wrapper prefixes and nesting as training scripts
write them are undone where that makes every key match, a fine-tuned classifier head is dropped, and anything else
(missing, unknown or wrong-shape tensors) fails with the keys named, instead of running a partly random model."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch

from biobench.errors import ConfigError, ModelLoadError
from biobench.models import ModelSpec
from biobench.models.open_clip_org import OpenClipOrg
from biobench.models.timm_org import TimmOrg
from model_fixtures import encode, random_timm, sample_image, tiny_clip, tiny_clip_architecture  # noqa: F401

TIMM = TimmOrg()
OPEN_CLIP = OpenClipOrg()
CNN = "test_resnet"
IMAGES = [sample_image(0), sample_image(1)]


def save(state: dict, path: Path) -> Path:
    """As safetensors or torch.save, by the file's suffix."""
    if path.suffix == ".safetensors":
        safetensors.torch.save_file({k: v.clone().contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path


def prefixed(state: dict, prefix: str) -> dict:
    return {prefix + key: value for key, value in state.items()}


def timm_features(path: Path, **fields) -> torch.Tensor:
    spec = ModelSpec(name="m", org="timm", checkpoint=fields.pop("checkpoint", CNN), weights=str(path), **fields)
    TIMM.validate(spec)
    return encode(TIMM.load(spec), IMAGES)


def timm_load_error(path: Path) -> str:
    with pytest.raises(ModelLoadError) as err:
        TIMM.load(ModelSpec(name="m", org="timm", checkpoint=CNN, weights=str(path)))
    return str(err.value)


@pytest.fixture
def cnn(tmp_path):
    """A random-init timm CNN, its state dict, and the features of that state dict saved as a plain file."""
    model = random_timm(CNN, seed=11)
    state = model.state_dict()
    return state, timm_features(save(state, tmp_path / "plain.safetensors"))


def test_the_plain_file_gives_the_saved_model_and_not_random_init(cnn):
    state, features = cnn
    random = encode(TIMM.load(ModelSpec(name="m", org="timm", checkpoint=CNN, weights="random", seed=0)), IMAGES)
    assert not torch.allclose(features, random)


@pytest.mark.parametrize("prefix", ["model.", "module.", "_orig_mod.", "module.model."])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_wrapper_prefix_every_key_carries_is_removed(cnn, tmp_path, prefix, suffix):
    state, features = cnn
    path = save(prefixed(state, prefix), tmp_path / f"wrapped{suffix}")
    torch.testing.assert_close(timm_features(path), features, rtol=0, atol=0)


@pytest.mark.parametrize("prefix", ["", "model."])
@pytest.mark.parametrize("nesting", ["state_dict", "model"])
def test_a_state_dict_nested_in_a_training_checkpoint_is_found(cnn, tmp_path, nesting, prefix):
    state, features = cnn
    checkpoint = {"epoch": 3, "global_step": 120, nesting: prefixed(state, prefix)}
    torch.testing.assert_close(timm_features(save(checkpoint, tmp_path / "last.pt")), features, rtol=0, atol=0)


def test_the_ema_copy_of_a_training_checkpoint_is_preferred_as_timm_prefers_it(cnn, tmp_path):
    state, features = cnn
    checkpoint = {"state_dict": random_timm(CNN, seed=14).state_dict(), "state_dict_ema": state, "epoch": 9}
    torch.testing.assert_close(timm_features(save(checkpoint, tmp_path / "last.pth")), features, rtol=0, atol=0)


@pytest.mark.parametrize("prefix", ["", "model."])
def test_the_fine_tuned_classifier_head_is_dropped(tmp_path, prefix):
    import timm

    torch.manual_seed(12)
    finetuned = timm.create_model(CNN, pretrained=False, num_classes=7)  # as saved after fine-tuning: with its fc
    state = finetuned.state_dict()
    assert {"fc.weight", "fc.bias"} <= set(state)
    backbone_only = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = timm_features(save(backbone_only, tmp_path / "backbone.safetensors"))
    features = timm_features(save(prefixed(state, prefix), tmp_path / "finetuned.safetensors"))
    torch.testing.assert_close(features, expected, rtol=0, atol=0)


def test_a_missing_backbone_key_is_named(cnn, tmp_path):
    state, _ = cnn
    del state["layer2.0.conv1.weight"]
    message = timm_load_error(save(state, tmp_path / "partial.safetensors"))
    assert "1 of the model's" in message and "not in the file (layer2.0.conv1.weight)" in message
    assert f"timm.create_model('{CNN}').state_dict()" in message


def test_missing_keys_of_a_prefixed_file_are_named_after_the_prefix_is_removed(cnn, tmp_path):
    state, _ = cnn
    del state["bn1.weight"]
    message = timm_load_error(save(prefixed(state, "model."), tmp_path / "partial.safetensors"))
    assert "(bn1.weight)" in message and "removing the prefix 'model.'" in message


def test_an_unknown_key_is_named(cnn, tmp_path):
    state, _ = cnn
    state["projector.weight"] = torch.zeros(4, 4)
    message = timm_load_error(save(state, tmp_path / "extra.safetensors"))
    assert "1 keys of the file are not in the model (projector.weight)" in message


def test_only_the_first_few_mismatches_are_listed(cnn, tmp_path):
    state, _ = cnn
    for i in range(8):
        state[f"aux.{i}.weight"] = torch.zeros(1)
    message = timm_load_error(save(state, tmp_path / "extra.safetensors"))
    assert "8 keys of the file" in message and "aux.4.weight, ... 3 more" in message and "aux.5" not in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("model.criterion.weight", "1 keys of the file are not in the model (criterion.weight), compared after "
                                   "removing the prefix 'model.'"),
        ("criterion.weight", "91 keys of the file are not in the model (model."),
    ],
)
def test_a_prefix_that_makes_only_some_keys_match_is_not_stripped(cnn, tmp_path, extra, expected):
    """A Lightning module holding a loss with weights besides the backbone: removing `model.` does not make it fit."""
    state, _ = cnn
    wrapped = {**prefixed(state, "model."), extra: torch.ones(3)}
    assert expected in timm_load_error(save(wrapped, tmp_path / "lightning.safetensors"))


def test_a_prefix_on_only_some_keys_is_not_stripped(cnn, tmp_path):
    state, _ = cnn
    half = {(f"model.{k}" if i % 2 else k): v for i, (k, v) in enumerate(state.items())}
    message = timm_load_error(save(half, tmp_path / "mixed.safetensors"))
    assert "not in the file" in message and "not in the model (model." in message


def test_a_wrong_shape_is_named_with_both_shapes(cnn, tmp_path):
    state, _ = cnn
    state["conv1.0.weight"] = torch.zeros(state["conv1.0.weight"].shape[0] + 1, *state["conv1.0.weight"].shape[1:])
    message = timm_load_error(save(state, tmp_path / "wide.safetensors"))
    assert "conv1.0.weight is (" in message and "in the file" in message and "Offline" not in message


def test_absent_batchnorm_counters_are_not_weights(cnn, tmp_path):
    state, features = cnn
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert counters
    converted = {k: v for k, v in state.items() if k not in counters}
    torch.testing.assert_close(timm_features(save(converted, tmp_path / "converted.safetensors")), features)


@pytest.mark.parametrize("contents", [[torch.zeros(1)], {"epoch": 3, "optimizer": {"lr": 0.1}}])
def test_a_file_without_a_state_dict_says_what_to_save(tmp_path, contents):
    message = timm_load_error(save(contents, tmp_path / "other.pt"))
    assert "no state dict" in message and "model.state_dict()" in message


def test_a_vit_file_at_another_size_goes_through_timms_position_embedding_resampling(tmp_path):
    """The file's pos_embed is for 32x32 images; timm's checkpoint filter resamples it for image_size 48, as timm
    itself does when it loads the file."""
    import timm

    saved = random_timm("test_vit", seed=13, img_size=32)
    path = save(prefixed(saved.state_dict(), "model."), tmp_path / "vit.safetensors")
    features = timm_features(path, checkpoint="test_vit", image_size=48)
    plain = save(saved.state_dict(), tmp_path / "plain.safetensors")
    by_timm = timm.create_model("test_vit", pretrained=True, num_classes=0, img_size=48,
                                pretrained_cfg_overlay={"file": str(plain)}).eval()
    with torch.inference_mode():
        transform = TIMM.load(ModelSpec(name="m", org="timm", checkpoint="test_vit", weights=str(plain),
                                        image_size=48)).make_transform()
        expected = by_timm.forward_features(torch.stack([transform(image) for image in IMAGES]))[:, 0]
    torch.testing.assert_close(features, expected)


def test_timm_pretrained_cfg_in_options_is_refused():
    with pytest.raises(ConfigError, match="pretrained_cfg are set by biobench"):
        TIMM.validate(ModelSpec(name="m", org="timm", checkpoint=CNN, options={"pretrained_cfg": {"file": "/w.pt"}}))


def clip_features(path: Path, architecture: str, **fields) -> torch.Tensor:
    spec = ModelSpec(name="c", org="open-clip", checkpoint=architecture, weights=str(path), **fields)
    OPEN_CLIP.validate(spec)
    return encode(OPEN_CLIP.load(spec), IMAGES)


def clip_load_error(path: Path, architecture: str) -> str:
    with pytest.raises(ModelLoadError) as err:
        OPEN_CLIP.load(ModelSpec(name="c", org="open-clip", checkpoint=architecture, weights=str(path)))
    return str(err.value)


@pytest.fixture
def clip(tiny_clip_architecture, tmp_path):
    state = tiny_clip(seed=21).state_dict()
    return state, clip_features(save(state, tmp_path / "plain.safetensors"), tiny_clip_architecture)


def test_open_clip_plain_file_is_not_random_init(clip, tiny_clip_architecture):
    _, features = clip
    random = encode(OPEN_CLIP.load(ModelSpec(name="c", org="open-clip", checkpoint=tiny_clip_architecture,
                                             weights="random", seed=0)), IMAGES)
    assert not torch.allclose(features, random)


def test_open_clip_lightning_file_loads_as_the_plain_one(clip, tiny_clip_architecture, tmp_path):
    state, features = clip
    path = save(prefixed(state, "model."), tmp_path / "lightning.safetensors")
    torch.testing.assert_close(clip_features(path, tiny_clip_architecture), features, rtol=0, atol=0)


def test_open_clip_training_checkpoint_loads_as_the_plain_one(clip, tiny_clip_architecture, tmp_path):
    """What open_clip's own training script saves under DDP: {"epoch", "state_dict": {"module.…"}, ...}."""
    state, features = clip
    path = save({"epoch": 5, "name": "run", "state_dict": prefixed(state, "module.")}, tmp_path / "epoch_5.pt")
    torch.testing.assert_close(clip_features(path, tiny_clip_architecture), features, rtol=0, atol=0)


def test_open_clip_missing_and_unknown_keys_are_named(clip, tiny_clip_architecture, tmp_path):
    state, _ = clip
    del state["visual.ln_post.weight"]
    state["classification_head.weight"] = torch.zeros(3, 32)
    message = clip_load_error(save(state, tmp_path / "bad.safetensors"), tiny_clip_architecture)
    assert "not in the file (visual.ln_post.weight)" in message
    assert "not in the model (classification_head.weight)" in message and "Offline" not in message


def test_open_clip_wrong_shape_is_named(clip, tiny_clip_architecture, tmp_path):
    state, _ = clip
    state["visual.proj"] = torch.zeros(64, 16)
    message = clip_load_error(save(state, tmp_path / "bad.safetensors"), tiny_clip_architecture)
    assert "visual.proj is (64, 16) in the file, (64, 32) in the model" in message


def test_open_clip_file_at_another_size_resizes_position_embeddings(clip, tiny_clip_architecture, tmp_path):
    state, _ = clip
    path = save(prefixed(state, "model."), tmp_path / "lightning.safetensors")
    assert clip_features(path, tiny_clip_architecture, image_size=48).shape == (2, 32)


def test_open_clip_unchecked_tower_loads_in_options_are_refused(tiny_clip_architecture):
    spec = ModelSpec(name="c", org="open-clip", checkpoint=tiny_clip_architecture, weights="random",
                     options={"pretrained_image_path": "/visual.pt"})
    with pytest.raises(ConfigError, match="pretrained_image_path would load a file without checking its keys"):
        OPEN_CLIP.validate(spec)


def test_a_file_in_another_codebases_names_loads_through_the_architectures_converter(tmp_path):
    """timm converts some foreign layouts when it loads a file (here open_clip's timm tower, `visual.trunk.`); such a
    file still loads, every key matched after the conversion, and gives the plain file's features."""
    saved = random_timm("test_vit", seed=17)
    plain = timm_features(save(saved.state_dict(), tmp_path / "plain.safetensors"), checkpoint="test_vit")
    foreign = save(prefixed(saved.state_dict(), "visual.trunk."), tmp_path / "tower.safetensors")
    torch.testing.assert_close(timm_features(foreign, checkpoint="test_vit"), plain)


def test_a_converted_file_with_a_missing_key_is_still_refused(tmp_path):
    saved = random_timm("test_vit", seed=17).state_dict()
    del saved["blocks.0.attn.qkv.weight"]
    path = save(prefixed(saved, "visual.trunk."), tmp_path / "tower.safetensors")
    with pytest.raises(ModelLoadError, match="keys do not match"):
        TIMM.load(ModelSpec(name="m", org="timm", checkpoint="test_vit", weights=str(path)))
