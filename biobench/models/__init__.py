"""Backbones by org. Importing this package registers every org; heavy libraries load only when a model is built."""

from biobench.models.base import ORGS, Backbone, ModelSpec, Org
from biobench.models import open_clip_org, pixels, python_org, timm_org  # noqa: F401  (registration)

__all__ = ["ORGS", "Backbone", "ModelSpec", "Org", "load_backbone"]


def load_backbone(spec: ModelSpec) -> Backbone:
    return ORGS.get(spec.org)().load(spec)
