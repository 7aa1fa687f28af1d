"""Frozen features -> the task's classifier -> one prediction row per evaluation example."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from biobench import artifacts, provenance
from biobench.atomic import atomic_path
from biobench.classifiers import CLASSIFIERS
from biobench.classifiers.few_shot import balanced_subsample
from biobench.embed import METADATA_KEY, read_embeddings
from biobench.errors import BiobenchError, ConfigError
from biobench.tasks import TASKS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitJob:
    task: str
    model: str  # display name
    manifest: Path
    train_embeddings: Path
    eval_embeddings: Path
    out: Path
    classifier: str
    classifier_params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    keys: dict[str, str] = field(default_factory=dict)  # model_key, dataset_key, classifier_key
    n_train: int = 0  # training rows per fit (per group, for tasks fitted per group); 0 = all


def fit_and_predict(job: FitJob) -> dict[str, Any]:
    task = TASKS.get(job.task)
    manifest = artifacts.read_parquet(job.manifest, pd.read_parquet).set_index("example_id")
    train_ids, x_train, train_meta = artifacts.read_parquet(job.train_embeddings, _read_embeddings)
    eval_ids, x_eval, eval_meta = artifacts.read_parquet(job.eval_embeddings, _read_embeddings)
    manifest_sha = provenance.sha256_file(job.manifest)
    for meta, path in ((train_meta, job.train_embeddings), (eval_meta, job.eval_embeddings)):
        if meta["manifest_sha256"] != manifest_sha:
            raise BiobenchError(f"{path} was computed from another version of {job.manifest}; delete it and re-run")
    y_train = manifest.loc[train_ids, "label"].to_numpy(np.int64)
    y_eval = manifest.loc[eval_ids, "label"].to_numpy(np.int64)
    groups_train = manifest.loc[train_ids, "group"].to_numpy(object)
    groups_eval = manifest.loc[eval_ids, "group"].to_numpy(object)

    started = time.perf_counter()
    y_pred = np.empty_like(y_eval)
    prob = np.empty(len(y_eval), np.float32)
    summaries = {}
    n_fitted = 0
    for group in (sorted(set(groups_eval)) if task.fit_per_group else [None]):
        group_rows = np.flatnonzero(groups_train == group) if task.fit_per_group else np.arange(len(y_train))
        fit_rows = group_rows[balanced_subsample(y_train[group_rows], job.n_train, job.seed)]
        n_fitted += len(fit_rows)
        if job.n_train and len(np.unique(y_train[fit_rows])) < 2:
            where = f" in group {group!r}" if task.fit_per_group else ""
            raise ConfigError(
                f"config.yaml: tasks.{job.task}.n_train: {job.n_train} training rows{where} hold a single class, and "
                f"a classifier needs two; use sizes of at least the number of classes "
                f"({len(np.unique(y_train[group_rows]))} here)"
            )
        eval_rows = groups_eval == group if task.fit_per_group else slice(None)
        clf = _make_classifier(job, task.metric)
        clf.fit(x_train[fit_rows], y_train[fit_rows])
        y_pred[eval_rows], prob[eval_rows] = clf.predict(x_eval[eval_rows])
        summaries[str(group)] = clf.summary()
    seconds = time.perf_counter() - started

    names = dict(zip(manifest["label"].astype(int), manifest["label_name"].astype(str)))
    metadata = {
        "model": job.model,
        "model_spec": train_meta["model_spec"],
        "task": job.task,
        "classifier": {"name": job.classifier, "params": job.classifier_params, "seed": job.seed,
                       "fitted": summaries if task.fit_per_group else summaries["None"]},
        "metric": task.metric,
        "benchmark": task.benchmark,
        "labels": [names.get(i, str(i)) for i in range(max(names) + 1)],
        "split": task.eval_split,
        "manifest": str(Path(job.manifest).resolve()),
        "manifest_sha256": manifest_sha,
        "n_train": n_fitted,
        "train_size": job.n_train,
        "embedding": embedding_cost(train_meta, eval_meta),
        "fit": {"seconds": round(seconds, 3)},
        "provenance": provenance.record(),
        **job.keys,
    }
    table = pa.table({
        "example_id": pa.array(eval_ids, pa.string()),
        "y_true": pa.array(y_eval, pa.int64()),
        "y_pred": pa.array(y_pred, pa.int64()),
        "score": pa.array((y_pred == y_eval).astype(np.float64)),
        "prob": pa.array(prob, pa.float32()),
        "group": pa.array([None if g is None else str(g) for g in groups_eval], pa.string()),
        **{column: pa.array([value] * len(eval_ids), pa.string()).dictionary_encode()
           for column, value in {"model": job.model, "task": job.task, **job.keys}.items()},
    })
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata)})
    with atomic_path(job.out) as tmp:
        pq.write_table(table, tmp)
    log.info("%s on %s: %s fitted on %d training rows in %.1f s; accuracy %.4f", metadata["model"], job.task,
             job.classifier, n_fitted, seconds, float((y_pred == y_eval).mean()))
    return metadata


def _read_embeddings(path: Path) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    try:
        return read_embeddings(path)
    except (KeyError, TypeError):
        raise BiobenchError(f"{path} lacks the embedding column or the {METADATA_KEY.decode()!r} metadata that "
                            "biobench's embed rule writes; delete it and re-run `snakemake --cores 8`") from None


def embedding_cost(*metas: dict[str, Any]) -> dict[str, Any]:
    """What embedding the splits this run uses cost: images, device seconds and the resulting images/s, and the
    precision that ran (with the model's dtype and why they differ, biobench/precision.py)."""
    images = sum(m["n_images"] for m in metas)
    seconds = sum(m["seconds"] for m in metas)
    last = metas[-1]
    return {"device": last["device"], "dtype": last["dtype"], "dtype_requested": last.get("dtype_requested"),
            "dtype_reason": last.get("dtype_reason"), "images": images,
            "seconds": round(seconds, 3), "images_per_s": round(images / seconds, 2) if seconds else None}


def _make_classifier(job: FitJob, metric: str):
    cls = CLASSIFIERS.get(job.classifier)
    try:
        return cls(**{"metric": metric, **job.classifier_params}, seed=job.seed, device=job.device)
    except TypeError as err:
        raise ConfigError(f"config.yaml: classifiers.{job.classifier}: {err}") from None
