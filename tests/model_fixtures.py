"""Small random-init checkpoints in the libraries' real formats, written to a local file or a temporary Hugging Face
cache laid out as huggingface_hub lays it out (blobs, snapshots/<commit>, refs/main), so that timm and open_clip
load them through their own hub code with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

TINY_CLIP = {  # an open_clip CLIP config small enough to build in milliseconds
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}
TINY_CLIP_ARCH = "biobench-test-tiny-clip"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face hub cache in a temp dir, offline. huggingface_hub reads its cache dir and offline flag
    from module constants set at import, so they are set there as well as in the environment."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def plant_hub_repo(cache: Path, repo_id: str, folder: Path) -> str:
    """Put every file of `folder` into `cache` as a download of `repo_id` at a new commit; returns the commit."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    commit = hashlib.sha1(json.dumps(digests, sort_keys=True).encode()).hexdigest()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for path in files:
        blob = repo / "blobs" / digests[path.name]
        shutil.copyfile(path, blob)
        (snapshot / path.name).symlink_to(Path("../../blobs") / digests[path.name])
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return commit


TINY_CLIP_PREPROCESS = {"size": 32, "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3), "interpolation": "bicubic",
                        "resize_mode": "shortest"}


def tiny_clip(seed: int) -> torch.nn.Module:
    """Built as open_clip's create_model builds it: the model class from the config, then its preprocess config."""
    import dataclasses

    import open_clip
    from open_clip.transform import PreprocessCfg

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP).eval()
    open_clip.set_model_preprocess_cfg(model, dataclasses.asdict(PreprocessCfg(**TINY_CLIP_PREPROCESS)))
    return model


def save_open_clip_repo(model: torch.nn.Module, folder: Path, weights_format: str = "safetensors") -> Path:
    """What open_clip's save_for_hf writes (its config writer, its weight file names), without the tokenizer files,
    which need `transformers` and play no part in image features."""
    import safetensors.torch
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    from open_clip.push_to_hf_hub import save_config_for_hf

    folder.mkdir(parents=True, exist_ok=True)
    save_config_for_hf(model, folder / "open_clip_config.json", model_config=TINY_CLIP)
    state = model.state_dict()
    if weights_format == "safetensors":
        safetensors.torch.save_file(state, folder / HF_SAFE_WEIGHTS_NAME)
    else:
        torch.save(state, folder / HF_WEIGHTS_NAME)
    return folder


@pytest.fixture(scope="session")
def tiny_clip_architecture(tmp_path_factory) -> str:
    """TINY_CLIP registered as an open_clip architecture, through open_clip's own `add_model_config`."""
    import open_clip

    path = tmp_path_factory.mktemp("open-clip-configs") / f"{TINY_CLIP_ARCH}.json"
    path.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(path)
    return TINY_CLIP_ARCH


def save_timm_repo(model: torch.nn.Module, folder: Path) -> Path:
    """timm's own `save_for_hf`: config.json + model.safetensors, as on the hub."""
    from timm.models import save_for_hf

    save_for_hf(model, str(folder), safe_serialization=True)
    return folder


def random_timm(name: str, seed: int, **kwargs) -> torch.nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, num_classes=0, **kwargs).eval()


def sample_image(seed: int = 0, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8))


def encode(backbone, images: list[Image.Image]) -> torch.Tensor:
    """What the embed job does with a backbone, minus the device and the parquet."""
    transform = backbone.make_transform()
    batch = torch.stack([transform(image) for image in images])
    with torch.inference_mode():
        return backbone.img_encode(batch)
