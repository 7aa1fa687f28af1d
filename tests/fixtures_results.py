"""A synthetic but schema-valid results database (biobench/results_schema.sql), with real image files, for tests.

The numbers follow the design's definitions (paired percentile bootstrap, unweighted overall mean, two-sided
bootstrap p-values) closely enough to look real; they are not a reference for the stats module.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

import biobench

SCHEMA = Path(biobench.__file__).parent / "results_schema.sql"
OVERALL = "__overall__"
LABELS = ("Acropora", "Bufo bufo", "Calluna", "Daphnia", "Equus zebra", "Fagus", "Gadus morhua", "Hyla")
GIT_COMMIT = "3f9c2b1d0e8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b"

DEFAULT_MODELS: Mapping[str, float] = {"bioclip-vit-b16": 0.78, "dinov2-vit-s14": 0.72, "pixels": 0.41}
DEFAULT_TASKS: Sequence[str] = ("plankton", "kabr", "imagenet1k")
THROUGHPUT = (850.0, 2300.0, 14000.0, 1200.0, 600.0)  # images/s, cycled over models


def write_results_db(
    db_path: Path,
    image_dir: Path,
    *,
    models: Mapping[str, float] = DEFAULT_MODELS,
    tasks: Sequence[str] = DEFAULT_TASKS,
    n_test: int = 120,
    n_classes: int = 5,
    missing: Sequence[tuple[str, str]] = (),
    missing_images: int = 0,
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    train_sizes: Mapping[str, Sequence[int]] = {},
) -> Path:
    """Write `db_path` for `models` (name -> accuracy) on `tasks`; `missing` lists (model, task) never run.

    Tasks whose name starts with "imagenet" are not benchmark tasks. The first `missing_images` examples of each
    task point at image files that do not exist. `train_sizes` gives tasks fitted at several n_train settings
    (0 = all, the headline); smaller sizes score lower.
    """
    rng = np.random.default_rng(seed)
    benchmark = [t for t in tasks if not t.startswith("imagenet")]
    runs, examples, labels, predictions, task_scores, pairwise, size_scores = [], [], [], [], [], [], []
    boot: dict[tuple[str, str], np.ndarray] = {}
    point: dict[tuple[str, str], float] = {}
    for t_index, task in enumerate(tasks):
        paths = _write_images(image_dir / task, task, n_test, n_classes, missing_images, jpeg=t_index % 2 == 1)
        examples.append(_examples(task, paths))
        labels.append(_labels(task, n_classes))
        y_true = rng.integers(0, n_classes, n_test)
        idx = rng.integers(0, n_test, (n_resamples, n_test))  # shared by every model: paired
        present = [m for m in models if (m, task) not in missing]
        correct = {}
        for m_index, model in enumerate(present):
            ok = rng.random(n_test) < models[model] - 0.05 * t_index
            y_pred = np.where(ok, y_true, (y_true + rng.integers(1, n_classes, n_test)) % n_classes)
            correct[model] = ok.astype(float)
            point[model, task] = float(correct[model].mean())
            boot[model, task] = correct[model][idx].mean(axis=1)
            predictions.append(_prediction_rows(model, task, y_true, y_pred, rng))
            runs.append(_run(model, task, m_index, task in benchmark, n_test))
        task_scores += _scores(task, present, point, boot, confidence)
        size_scores += _train_size_scores(task, present, point, boot, confidence, train_sizes.get(task, (0,)),
                                          n_train=4 * n_test)
        pairwise += _pairs(task, present, point, boot, confidence)

    complete = [m for m in models if all((m, t) in point for t in benchmark)]
    for model in complete:
        point[model, OVERALL] = float(np.mean([point[model, t] for t in benchmark]))
        boot[model, OVERALL] = np.mean([boot[model, t] for t in benchmark], axis=0)
    overall = pd.DataFrame(_scores(OVERALL, complete, point, boot, confidence)).drop(columns=["task", "metric", "n"])
    overall["n_tasks"] = len(benchmark)
    overall["missing_tasks"] = [[] for _ in complete]
    overall["note"] = None
    incomplete = [
        {
            "model": m,
            "n_tasks": len(benchmark),
            "missing_tasks": [t for t in benchmark if (m, t) not in point],
            "note": "no overall score: not run on benchmark task(s) "
            + ", ".join(t for t in benchmark if (m, t) not in point),
        }
        for m in models
        if m not in complete
    ]
    overall = pd.concat([overall, pd.DataFrame(incomplete)], ignore_index=True) if incomplete else overall
    pairwise += _pairs(OVERALL, complete, point, boot, confidence)

    settings = pd.DataFrame(
        {
            "key": ["n_resamples", "confidence", "seed", "biobench_version", "created_at"],
            "value": [str(n_resamples), str(confidence), str(seed), "0.1.0", "2025-01-02T03:04:05"],
        }
    )
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db_path.unlink(missing_ok=True)
    with duckdb.connect(str(db_path)) as con:
        con.execute(SCHEMA.read_text())
        for table, frame in [
            ("runs", pd.DataFrame(runs)),
            ("examples", pd.concat(examples, ignore_index=True)),
            ("labels", pd.concat(labels, ignore_index=True)),
            ("prediction_rows", pd.concat(predictions, ignore_index=True)),
            ("task_scores", pd.DataFrame(task_scores)),
            ("train_size_scores", pd.DataFrame(size_scores)),
            ("overall_scores", overall),
            ("pairwise", pd.DataFrame(pairwise)),
            ("settings", settings),
        ]:
            con.register("frame", frame)
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM frame")
            con.unregister("frame")
    return db_path


def _train_size_scores(task, models, point, boot, confidence, sizes, n_train) -> list[dict]:
    lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    rows = []
    for model in models:
        for size in sizes:
            shrink = 1.0 if size == 0 else 0.4 + 0.6 * np.log(size) / np.log(n_train)
            values = boot[model, task] * shrink
            rows.append({"model": model, "task": task, "train_size": size, "n_train": size or n_train,
                         "headline": size == 0, "metric": "accuracy", "value": point[model, task] * shrink,
                         "ci_low": float(np.percentile(values, lo)), "ci_high": float(np.percentile(values, hi)),
                         "n": len(values)})
    return rows


def _write_images(folder: Path, task: str, n: int, n_classes: int, n_missing: int, jpeg: bool) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(task))
    paths = []
    for i in range(n):
        path = folder / f"{task}-{i:05d}.{'jpg' if jpeg else 'png'}"
        paths.append(str(path))
        if i < n_missing:
            continue
        hue = rng.integers(0, 255, 3)
        image = Image.new("RGB", (160, 120), tuple(int(c) for c in hue // 2 + 64))
        draw = ImageDraw.Draw(image)
        x, y = rng.integers(10, 100), rng.integers(10, 60)
        draw.ellipse((x, y, x + 50, y + 45), fill=tuple(int(c) for c in 255 - hue), outline=(20, 20, 20), width=3)
        image.save(path)
    return paths


def _examples(task: str, paths: list[str]) -> pd.DataFrame:
    ids = [f"{task}-{i:05d}" for i in range(len(paths))]  # already in ascending order: index = position
    return pd.DataFrame({"task": task, "example_index": range(len(ids)), "example_id": ids, "path": paths, "grp": None})


def _labels(task: str, n_classes: int) -> pd.DataFrame:
    return pd.DataFrame({"task": task, "y": range(n_classes), "label": list(LABELS[:n_classes])})


def _prediction_rows(model, task, y_true, y_pred, rng) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": model,
            "task": task,
            "example_index": range(len(y_true)),
            "y_true": y_true,
            "y_pred": y_pred,
            "score": (y_true == y_pred).astype(float),
            "prob": rng.uniform(0.3, 1.0, len(y_true)),
        }
    )


def _run(model: str, task: str, m_index: int, benchmark: bool, n_test: int) -> dict:
    ips = THROUGHPUT[m_index % len(THROUGHPUT)]
    n_train = 4 * n_test
    return {
        "model": model,
        "model_key": f"{model}-{abs(hash(model)) % 10**8:08x}",
        "org": "timm",
        "checkpoint": model,
        "model_spec": json.dumps({"org": "timm", "checkpoint": model}),
        "task": task,
        "dataset_key": f"{task}-0a1b2c3d",
        "classifier_key": "linear-4e5f6a7b",
        "classifier": json.dumps({"protocol": "linear", "C": 1.0}),
        "metric": "accuracy",
        "benchmark": benchmark,
        "n_train": n_train,
        "n_test": n_test,
        "manifest_sha256": "0" * 64,
        "embed_device": "NVIDIA H100 80GB HBM3",
        "embed_images_per_s": ips,
        "embed_seconds": (n_train + n_test) / ips * 40,
        "fit_seconds": 3.5,
        "git_commit": GIT_COMMIT,
        "host": "gpu-node-01",
        "packages": json.dumps({"torch": "2.4.0"}),
        "created_at": dt.datetime(2025, 1, 2, 3, 4, 5),
        "predictions_path": f"results/predictions/{model}/{task}.parquet",
    }


def _scores(task, models, point, boot, confidence) -> list[dict]:
    if not models:
        return []
    lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    order = sorted(models, key=lambda m: -point[m, task])
    best = order[0]
    rows = []
    for rank, model in enumerate(order, start=1):
        p = _p_value(boot[best, task] - boot[model, task])
        rows.append(
            {
                "model": model,
                "task": task,
                "metric": "accuracy",
                "value": point[model, task],
                "ci_low": float(np.percentile(boot[model, task], lo)),
                "ci_high": float(np.percentile(boot[model, task], hi)),
                "n": len(boot[model, task]),
                "rank": rank,
                "tied_with_best": bool(model == best or p * (len(order) - 1) >= 1 - confidence),
            }
        )
    return rows


def _pairs(task, models, point, boot, confidence) -> list[dict]:
    lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    rows = []
    for a in models:
        for b in models:
            if a != b:
                d = boot[a, task] - boot[b, task]
                rows.append(
                    {
                        "task": task,
                        "model_a": a,
                        "model_b": b,
                        "diff": point[a, task] - point[b, task],
                        "ci_low": float(np.percentile(d, lo)),
                        "ci_high": float(np.percentile(d, hi)),
                        "p_value": _p_value(d),
                    }
                )
    return rows


def _p_value(d: np.ndarray) -> float:
    return float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())))
