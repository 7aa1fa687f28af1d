"""org: python plugs in a user's own backbone by dotted path; what the config asks of it is checked before any job."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch

from biobench.embed import EmbedJob, embed, read_embeddings
from biobench.errors import ConfigError, ModelLoadError
from biobench.images import open_rgb
from biobench.models import ModelSpec
from biobench.models.python_org import PythonOrg
from model_fixtures import sample_image

ORG = PythonOrg()

MODULE = '''
import torch
from torchvision.transforms import v2


class Backbone(torch.nn.Module):
    def __init__(self, width, size):
        super().__init__()
        self.size = size
        self.conv = torch.nn.Conv2d(3, width, 4, 4)

    def make_transform(self):
        return v2.Compose([v2.PILToTensor(), v2.Resize((self.size, self.size)), v2.ToDtype(torch.float32, scale=True)])

    def img_encode(self, images):
        return self.conv(images).amax((2, 3))


class Plain:
    """No to(), no describe_transform(): both are optional."""

    def make_transform(self):
        return v2.Compose([v2.PILToTensor(), v2.Resize((8, 8)), v2.ToDtype(torch.float32, scale=True)])

    def img_encode(self, images):
        return images.flatten(1)


def make_backbone(width: int = 8, image_size: int = 16, weights: str = ""):
    backbone = Backbone(width, image_size)
    if weights:
        from safetensors.torch import load_file
        backbone.load_state_dict(load_file(weights))
    return backbone


def make_plain():
    return Plain()


def make_nothing():
    return object()


NOT_CALLABLE = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch, request):
    """A module file in the working directory (where Snakemake runs), under a name unique to the test."""
    name = f"user_backbones_{request.node.name.split('[')[0]}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name
    sys.modules.pop(name, None)


def spec_for(module: str, factory: str = "make_backbone", **fields) -> ModelSpec:
    return ModelSpec(name="mine", org="python", checkpoint=f"{module}:{factory}", **fields)


def test_factory_gets_options_and_config_fields_and_its_backbone_embeds(user_module, tmp_path):
    spec = spec_for(user_module, options={"width": 5}, image_size=12, seed=3)
    ORG.validate(spec)
    backbone = ORG.load(spec)
    assert backbone.inner.conv.out_channels == 5 and not backbone.inner.training
    assert backbone.make_transform()(sample_image()).shape == (3, 12, 12)
    rows = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        sample_image(i).save(path)
        rows.append({"example_id": f"e{i}", "split": "test", "label": 0, "label_name": "0", "path": str(path),
                     "group": None})
    pd.DataFrame(rows).to_parquet(tmp_path / "manifest.parquet")
    out = tmp_path / "emb.parquet"
    meta = embed(EmbedJob(tmp_path / "manifest.parquet", "test", spec, out, num_workers=0))
    ids, matrix, _ = read_embeddings(out)
    assert ids == ["e0", "e1", "e2"] and matrix.shape == (3, 5) and meta["transform"]["factory"].endswith(
        "make_backbone")
    with torch.inference_mode():
        expected = backbone.img_encode(backbone.make_transform()(open_rgb(rows[1]["path"]))[None])
    np.testing.assert_allclose(matrix[1], expected[0].numpy(), rtol=1e-5)


def test_objects_without_to_or_describe_transform_work(user_module):
    backbone = ORG.load(spec_for(user_module, "make_plain"))
    assert backbone.to(torch.device("cpu")) is backbone
    assert "Resize" in backbone.describe_transform()["transform"]


def test_key_follows_the_module_source_and_the_weights_file(user_module, tmp_path):
    from safetensors.torch import save_file

    weights = tmp_path / "w.safetensors"
    saved = torch.nn.Conv2d(3, 8, 4, 4)
    save_file({f"conv.{k}": v for k, v in saved.state_dict().items()}, weights)
    spec = spec_for(user_module, weights=str(weights))
    ORG.validate(spec)
    first = ORG.weights_identity(spec)
    torch.testing.assert_close(ORG.load(spec).inner.conv.weight.detach(), saved.weight.detach())
    save_file({f"conv.{k}": v for k, v in torch.nn.Conv2d(3, 8, 4, 4).state_dict().items()}, weights)
    second = ORG.weights_identity(spec)
    assert second["weights_sha256"] != first["weights_sha256"]
    assert second["module_sha256"] == first["module_sha256"]
    (tmp_path / f"{user_module}.py").write_text(MODULE + "\n# edited\n")
    assert ORG.weights_identity(spec)["module_sha256"] != first["module_sha256"]


@pytest.mark.parametrize(
    ("checkpoint", "fields", "expected"),
    [
        ("{m}.make_backbone", {}, ["not a factory path", "<module>:<function>"]),
        ("no_such_module_xyz:make", {}, ["cannot import 'no_such_module_xyz'", "PYTHONPATH", "working directory"]),
        ("{m}:make_backbon", {}, ["has no attribute 'make_backbon'", "did you mean make_backbone"]),
        ("{m}:NOT_CALLABLE", {}, ["is a int, not a function or class"]),
        ("{m}:make_backbone", {"options": {"depth": 3}}, ["cannot be called with ['depth']", "unexpected keyword"]),
        ("{m}:make_plain", {"pooling": "avg"}, ["cannot be called with ['pooling']"]),
        ("{m}:make_backbone", {"options": {"weights": "x"}}, ["options: weights are model keys of their own"]),
        ("{m}:make_backbone", {"weights": "/nonexistent.safetensors"}, ["no file '/nonexistent.safetensors'"]),
    ],
)
def test_bad_factories_fail_at_config_time(user_module, checkpoint, fields, expected):
    spec = ModelSpec(name="mine", org="python", checkpoint=checkpoint.format(m=user_module), **fields)
    with pytest.raises(ConfigError) as err:
        ORG.validate(spec)
    for text in expected:
        assert text in str(err.value)


def test_a_module_that_fails_to_import_names_the_cause(tmp_path, monkeypatch):
    (tmp_path / "broken_backbones.py").write_text("import not_installed_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(ConfigError, match="not_installed_dependency_xyz.*a module it imports"):
        ORG.validate(ModelSpec(name="b", org="python", checkpoint="broken_backbones:make"))


def test_a_factory_returning_no_backbone_fails_with_the_contract(user_module):
    with pytest.raises(ModelLoadError, match="without make_transform and img_encode.*python_org.py"):
        ORG.load(spec_for(user_module, "make_nothing"))
