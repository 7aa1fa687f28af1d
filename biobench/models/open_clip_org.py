"""OpenCLIP image towers: `org: open-clip`, with `checkpoint` one of

- `hf-hub:<owner>/<name>` (e.g. `hf-hub:imageomics/bioclip`): config and weights from that Hugging Face hub repo,
  or from the local cache (HF_HUB_OFFLINE=1 works once it is cached);
- `<architecture>/<pretrained tag>` (e.g. `ViT-B-16/openai`), from open_clip's own list (`open_clip.list_pretrained()`);
- `<architecture>` (e.g. `ViT-B-16`) with `weights:` a local file (safetensors or a weights-only torch file) or
  `random`.

Hub repos and tags load through open_clip's own `create_model_from_pretrained`, with `weights_only=True` and required
weights, so weights that cannot be found fail instead of leaving a random model. For `random` and a local file the
model is built by open_clip's `create_model_and_transforms` without weights; a file's keys must then match the
model's (biobench/models/weights_file.py), and its position embeddings are resized by open_clip's own functions.
Tags trained with QuickGELU (e.g. `openai`) get it, as their pretrained config says.

- The transform is open_clip's eval preprocess for the checkpoint, at `image_size` if given (`force_image_size`;
  position embeddings are resampled from the checkpoint's).
- The image feature is `encode_image(normalize=False)`: the visual tower's pooled and projected embedding, the vector
  CLIP matches with text, which is also what biobench takes (`clip.visual` output). It is not L2-normalised: the
  classifiers standardise features themselves. `pooling: cls | avg | max | token_avg` instead reads the ViT tower's
  last-layer tokens after its final norm, before the projection (biobench/models/pooling.py).
- options: extra keyword arguments for open_clip's create function (e.g. `force_quick_gelu: true`)."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any

import torch

from biobench.errors import ConfigError, ModelLoadError
from biobench.models.base import ORGS, ModelSpec
from biobench.models.pooling import pool_tokens
from biobench.models.weights import check_file, check_hub_id, file_identity, hub_identity
from biobench.models.weights_file import match_keys, read_state_dict, shape_error, shape_mismatches

HUB_PREFIX = "hf-hub:"
SET_BY_BIOBENCH = {"model_name", "pretrained", "load_weights", "force_image_size", "weights_only", "device",
                   "require_pretrained", "return_transform"}
UNCHECKED_LOADS = {"pretrained_image_path", "pretrained_text_path"}  # open_clip loads these with strict=False
CHECKPOINT_FORMS = ("hf-hub:<owner>/<name> (e.g. hf-hub:imageomics/bioclip), <architecture>/<pretrained tag> "
                    "(e.g. ViT-B-16/openai), or an architecture (e.g. ViT-B-16) with weights: a local file or random")


@dataclass(frozen=True)
class OpenClipCheckpoint:
    """One of: a hub repo, an architecture with a pretrained tag, or a bare architecture."""

    hub_id: str = ""
    architecture: str = ""
    tag: str = ""

    @property
    def model_name(self) -> str:
        return f"{HUB_PREFIX}{self.hub_id}" if self.hub_id else self.architecture


class OpenClipBackbone:
    def __init__(self, model: torch.nn.Module, preprocess, pooling: str):
        self.model = model
        self.preprocess = preprocess
        self.pooling = pooling

    def make_transform(self):
        return self.preprocess

    def img_encode(self, images: torch.Tensor) -> torch.Tensor:
        if not self.pooling:
            return self.model.encode_image(images, normalize=False)
        out = self.model.visual.forward_intermediates(
            images, indices=1, normalize_intermediates=True, intermediates_only=True, output_fmt="NLC",
            output_extra_tokens=True,
        )
        prefix, patches = out["image_intermediates_prefix"][-1], out["image_intermediates"][-1]
        return pool_tokens(torch.cat([prefix, patches], dim=1), prefix.shape[1], self.pooling)

    def describe_transform(self) -> dict[str, Any]:
        import open_clip

        cfg = open_clip.get_model_preprocess_cfg(self.model)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}

    def to(self, device: torch.device) -> "OpenClipBackbone":
        self.model.to(device)
        return self


@ORGS.register("open-clip")
class OpenClipOrg:
    def validate(self, spec: ModelSpec) -> None:
        where = f"config.yaml: models.{spec.name}"
        checkpoint = parse_checkpoint(spec)
        clash = sorted(SET_BY_BIOBENCH & set(spec.options))
        if clash:
            raise ConfigError(f"{where}.options: {', '.join(clash)} are set by biobench; use checkpoint, weights and "
                              "image_size instead")
        unchecked = sorted(UNCHECKED_LOADS & set(spec.options))
        if unchecked:
            raise ConfigError(f"{where}.options: {', '.join(unchecked)} would load a file without checking its keys; "
                              "save the whole model's state_dict() to one file and give it as weights")
        if checkpoint.hub_id or checkpoint.tag:
            if (checkpoint.hub_id and spec.weights not in ("", "random")) or (checkpoint.tag and spec.weights):
                source = "an hf-hub: checkpoint" if checkpoint.hub_id else f"the pretrained tag {checkpoint.tag!r}"
                raise ConfigError(
                    f"{where}.weights: {source} brings its own weights; remove weights, or name the bare "
                    "architecture as checkpoint (e.g. ViT-B-16) to use a local file or random init"
                )
        elif spec.weights == "":
            raise ConfigError(
                f"{where}.checkpoint: {checkpoint.architecture} alone has no weights; add a pretrained tag "
                f"({_tags_hint(checkpoint.architecture)}), or set weights to a local file or random"
            )
        elif spec.weights != "random":
            check_file(spec.weights, where, "or 'random'")
        if spec.pooling and checkpoint.architecture:
            _check_vit_tower(checkpoint.architecture, spec.pooling, where)

    def weights_identity(self, spec: ModelSpec) -> dict[str, Any]:
        import open_clip

        where = f"config.yaml: models.{spec.name}"
        checkpoint = parse_checkpoint(spec)
        if checkpoint.hub_id:  # the hub repo holds the architecture's config too, so even "random" depends on it
            return hub_identity(checkpoint.hub_id, where)
        if checkpoint.tag:
            cfg = open_clip.get_pretrained_cfg(checkpoint.architecture, checkpoint.tag)
            if cfg.get("hf_hub"):
                repo_id, filename = os.path.split(cfg["hf_hub"])  # as open_clip reads it: "owner/name/[file]"
                return {**hub_identity(repo_id, where), "file": filename}
            return {"url": cfg.get("url", "")}
        if spec.weights == "random":
            return {}
        return file_identity(spec.weights)

    def load(self, spec: ModelSpec) -> OpenClipBackbone:
        import open_clip

        checkpoint = parse_checkpoint(spec)
        kwargs: dict[str, Any] = {"weights_only": True}
        if spec.image_size:
            kwargs["force_image_size"] = spec.image_size
        if checkpoint.tag and open_clip.get_pretrained_cfg(checkpoint.architecture, checkpoint.tag).get("quick_gelu"):
            kwargs["force_quick_gelu"] = True
        kwargs.update(spec.options)
        torch.manual_seed(spec.seed)  # only random init draws from it
        weights_file = spec.weights not in ("", "random")
        try:
            if spec.weights == "random" or weights_file:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    checkpoint.model_name, pretrained=None, load_weights=False, **kwargs
                )
            else:
                model, preprocess = open_clip.create_model_from_pretrained(
                    checkpoint.model_name, pretrained=checkpoint.tag or None, **kwargs
                )
        except Exception as err:  # noqa: BLE001 - open_clip and the hub raise many kinds; the user needs the cause
            raise ModelLoadError(
                f"model {spec.name!r}: open_clip could not load {spec.checkpoint!r}"
                f"{' with ' + spec.weights if spec.weights else ''} ({type(err).__name__}: {err}). Offline? Fetch "
                "it into the Hugging Face cache (`hf download <repo>` where there is internet) first."
            ) from err
        if weights_file:
            _load_file(model, spec)
        if spec.pooling and not isinstance(model.visual, open_clip.transformer.VisionTransformer):
            raise ModelLoadError(
                f"model {spec.name!r}: pooling {spec.pooling!r} reads ViT tokens, but {spec.checkpoint} has a "
                f"{type(model.visual).__name__} image tower; leave pooling empty for its image embedding"
            )
        return OpenClipBackbone(model.eval(), preprocess, spec.pooling)


def _load_file(model: torch.nn.Module, spec: ModelSpec) -> None:
    """The weights of the local file `spec.weights`, every key matched (biobench/models/weights_file.py)."""
    from open_clip.model import resize_pos_embed, resize_text_pos_embed

    where = f"model {spec.name!r}: weights {spec.weights}"
    fix = (f"Give a file of open_clip {spec.checkpoint}'s own state_dict() (the names of "
           f"open_clip.create_model({spec.checkpoint!r}).state_dict()), or set checkpoint to the architecture it "
           "was trained as.")
    expected = model.state_dict()
    state = match_keys(read_state_dict(spec.weights, where), expected, where, fix)
    resize_pos_embed(state, model)  # to force_image_size, as open_clip's load_checkpoint does
    resize_text_pos_embed(state, model)
    mismatches = shape_mismatches(state, expected)
    if mismatches:
        raise shape_error(mismatches, where, fix)
    model.load_state_dict(state, strict=True)


def parse_checkpoint(spec: ModelSpec) -> OpenClipCheckpoint:
    """Raises ConfigError, naming the accepted forms, for anything open_clip does not know."""
    import open_clip

    where = f"config.yaml: models.{spec.name}.checkpoint"
    text = spec.checkpoint
    if not text:
        raise ConfigError(f"{where} is required for org open-clip: {CHECKPOINT_FORMS}")
    if text.startswith(HUB_PREFIX):
        hub_id = text.removeprefix(HUB_PREFIX)
        check_hub_id(hub_id, f"config.yaml: models.{spec.name}", "hf-hub:imageomics/bioclip")
        return OpenClipCheckpoint(hub_id=hub_id)
    architectures = open_clip.list_models()
    if text in architectures:
        return OpenClipCheckpoint(architecture=text)
    architecture, _, tag = text.rpartition("/")
    if architecture not in architectures:
        name = architecture or text
        close = difflib.get_close_matches(name, architectures, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"{where}: open_clip has no architecture {name!r}; {hint}give {CHECKPOINT_FORMS}")
    if not open_clip.get_pretrained_cfg(architecture, tag):
        tags = open_clip.list_pretrained_tags_by_model(architecture)
        close = difflib.get_close_matches(tag, tags, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"{where}: open_clip has no pretrained tag {tag!r} for {architecture}; {hint}"
                          f"{_tags_hint(architecture)}")
    return OpenClipCheckpoint(architecture=architecture, tag=tag)


def _tags_hint(architecture: str) -> str:
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(architecture)
    return f"known tags: {', '.join(tags)}" if tags else "open_clip lists no pretrained tags for it"


def _check_vit_tower(architecture: str, pooling: str, where: str) -> None:
    import open_clip

    vision = (open_clip.get_model_config(architecture) or {}).get("vision_cfg", {})
    if "timm_model_name" in vision or isinstance(vision.get("layers"), (list, tuple)):
        raise ConfigError(
            f"{where}.pooling: {pooling!r} reads ViT tokens, but {architecture} has a "
            f"{'timm' if 'timm_model_name' in vision else 'ResNet'} image tower; leave pooling empty"
        )
