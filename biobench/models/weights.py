"""What identifies a backbone's weights in the model key, checked at DAG time without loading anything: a local file
(its sha256) or a Hugging Face hub repo (its commit).

A hub repo's commit comes from the local Hugging Face cache when the repo is there (no network). Otherwise, unless
HF_HUB_OFFLINE=1, one metadata request asks the hub for the commit of `main`, which is the commit the embed job
will download, so the key does not change once the weights are cached. With neither, the key says "uncached" and
a logged warning tells how to pre-fetch the weights (the embed job would fail offline anyway)."""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any

from biobench.errors import ConfigError
from biobench.provenance import sha256_file

log = logging.getLogger(__name__)
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
REMOTE_TIMEOUT_S = 10
UNCACHED = "uncached"


def check_file(path: str, where: str, alternatives: str) -> None:
    if not Path(path).is_file():
        raise ConfigError(f"{where}.weights: no file {path!r}; give a local checkpoint file, {alternatives}")


def file_identity(path: str) -> dict[str, Any]:
    return {"sha256": sha256_file(path)}


def check_hub_id(repo_id: str, where: str, example: str) -> None:
    if not HUB_ID.fullmatch(repo_id):
        raise ConfigError(
            f"{where}.checkpoint: {repo_id!r} is not a Hugging Face hub id; write it as owner/name, e.g. {example}"
        )


def hub_identity(repo_id: str, where: str) -> dict[str, Any]:
    return {"hub": repo_id, "revision": hub_commit(repo_id, where)}


def hub_commit(repo_id: str, where: str) -> str:
    """The commit the loader will use: the cached one, else the hub's `main`, else "uncached" (with a warning)."""
    cached = cached_commit(repo_id)
    if cached is not None:
        if hub_offline() and not has_cached_weights(repo_id, cached):
            _warn_not_cached(repo_id, where)
        return cached
    remote = None if hub_offline() else _remote_commit(repo_id, where)
    if remote is None:
        _warn_not_cached(repo_id, where)
        return UNCACHED
    return remote


def cache_folder(repo_id: str) -> Path:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")


def cached_commit(repo_id: str) -> str | None:
    ref = cache_folder(repo_id) / "refs" / "main"
    return ref.read_text().strip() if ref.is_file() else None


def has_cached_weights(repo_id: str, commit: str) -> bool:
    snapshot = cache_folder(repo_id) / "snapshots" / commit
    return snapshot.is_dir() and any(p.suffix in WEIGHT_SUFFIXES for p in snapshot.iterdir())


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@functools.lru_cache(maxsize=64)
def _remote_commit(repo_id: str, where: str) -> str | None:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError

    try:
        return HfApi().model_info(repo_id, timeout=REMOTE_TIMEOUT_S).sha
    except GatedRepoError:
        raise ConfigError(
            f"{where}.checkpoint: {repo_id} is gated on the Hugging Face hub; accept its terms on the model page "
            "and log in (`hf auth login`), or pre-fetch it into the cache"
        ) from None
    except RepositoryNotFoundError:
        raise ConfigError(
            f"{where}.checkpoint: the Hugging Face hub has no model {repo_id!r} (or it is private: log in with "
            "`hf auth login`); check the spelling"
        ) from None
    except Exception:  # noqa: BLE001 - no network, proxy, timeout: fall back to the offline answer
        return None


def _warn_not_cached(repo_id: str, where: str) -> None:
    log.warning(
        "%s: the weights of %s are not in the local Hugging Face cache (%s) and the hub is not reachable "
        "(HF_HUB_OFFLINE=1 or no network). The embed job will fail unless they are fetched first: run "
        "`hf download %s` where there is internet (with the same HF_HOME), then re-run; the model key changes once "
        "they are cached.", where, repo_id, cache_folder(repo_id).parent, repo_id,
    )
