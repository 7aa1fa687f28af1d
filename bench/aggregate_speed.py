"""Speed of the aggregate step at full size, against a straightforward per-model bootstrap loop.

Synthesizes 20 models x 13 tasks x 50,000 test examples (accuracy tasks, long-tailed macro-F1 tasks with 8 to 1,000
classes, one balanced-accuracy and one mean-score task) as prediction parquets in the fit rule's format, then times
  1. biobench.aggregate.aggregate(), the whole step: DuckDB load, statistics, tables, exports (1,000 resamples);
  2. its statistics alone (paired resample weights + every model's metric on every resample);
  3. a straightforward loop over tasks, models and resamples (fancy-index the rows of one model, call numpy /
     scikit-learn on them) on the same indices, for the first --baseline-resamples resamples only, extrapolated
     linearly to all of them (its cost is proportional to the number of resamples), and checks it agrees with 2.
Run: python bench/aggregate_speed.py [--models 20 --tasks 13 --n 50000 --resamples 1000 --baseline-resamples 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, recall_score

from biobench.aggregate import aggregate
from biobench.stats import bootstrap, simulate
from biobench.stats.metrics import METRICS, Sample


@dataclass(frozen=True)
class TaskSpec:
    name: str
    metric: str
    n_classes: int
    exponent: float
    benchmark: bool


TASKS = (
    TaskSpec("imagenet1k", "accuracy", 1000, 0.0, False),
    TaskSpec("newt", "accuracy", 2, 0.0, False),
    TaskSpec("inat21", "accuracy", 1000, 0.0, False),
    TaskSpec("beluga", "macro_f1", 300, 1.0, True),
    TaskSpec("ecdysis", "macro_f1", 500, 1.0, True),
    TaskSpec("fishnet", "mean_score", 2, 0.0, True),
    TaskSpec("fungiclef", "balanced_accuracy", 200, 1.0, True),
    TaskSpec("herbarium19", "macro_f1", 680, 0.8, True),
    TaskSpec("iwildcam", "macro_f1", 180, 1.2, True),
    TaskSpec("kabr", "macro_f1", 8, 1.0, True),
    TaskSpec("mammalnet", "macro_f1", 12, 1.0, True),
    TaskSpec("plankton", "macro_f1", 50, 1.0, True),
    TaskSpec("plantnet", "macro_f1", 1000, 1.1, True),
)

BASELINE_METRICS = {  # (resampled truth, resampled predictions, the task's class set: the eval split's truth)
    "accuracy": lambda y_true, y_pred, classes: float(np.mean(y_true == y_pred)),
    "mean_score": lambda y_true, y_pred, classes: float(np.mean(y_true == y_pred)),  # synthetic scores are 0/1
    "macro_f1": lambda y_true, y_pred, classes: f1_score(y_true, y_pred, labels=classes, average="macro",
                                                         zero_division=0),
    "balanced_accuracy": lambda y_true, y_pred, classes: recall_score(y_true, y_pred, labels=classes,
                                                                      average="macro", zero_division=0),
}


def synthesize(root: Path, specs: list[TaskSpec], n_models: int, n: int) -> tuple[list[Path], dict[str, Sample]]:
    rng = np.random.default_rng(0)
    models = [f"model-{j:02d}" for j in range(n_models)]
    paths, samples = [], {}
    for spec in specs:
        prior = simulate.zipf_prior(spec.n_classes, spec.exponent)
        shared = rng.random(n)
        y_true = None
        predictions = {}
        for j, model in enumerate(models):
            skill = 0.45 + 0.4 * j / max(1, n_models - 1)
            classifier = simulate.Classifier(prior, np.clip(skill + 0.3 * (prior > np.median(prior)), 0, 0.98), prior)
            if y_true is None:
                y_true = classifier.sample_labels(rng, n)
            predictions[model] = classifier.predict(rng, y_true, simulate.correlated_uniforms(rng, shared, 0.7))
        groups = np.array([f"newt-{i % 164:03d}" for i in range(n)], dtype=object) if spec.name == "newt" else None
        paths += simulate.write_task(root, spec.name, metric=spec.metric, y_true=y_true, predictions=predictions,
                                     labels=[f"class-{c}" for c in range(spec.n_classes)], benchmark=spec.benchmark,
                                     groups=groups)
        y_pred = np.stack([predictions[m] for m in models])
        samples[spec.name] = Sample(y_true, y_pred, (y_pred == y_true).astype(np.float64))
    return paths, samples


def fast_statistics(specs: list[TaskSpec], samples: dict[str, Sample], n_resamples: int) -> dict[str, np.ndarray]:
    return {
        spec.name: METRICS.get(spec.metric)(
            bootstrap.resample_weights(0, spec.name, samples[spec.name].n_examples, n_resamples), samples[spec.name]
        )
        for spec in specs
    }


def baseline_statistics(specs: list[TaskSpec], samples: dict[str, Sample], n_resamples: int) -> dict[str, np.ndarray]:
    out = {}
    for spec in specs:
        sample, fn = samples[spec.name], BASELINE_METRICS[spec.metric]
        indices = list(bootstrap.resample_indices(0, spec.name, sample.n_examples, n_resamples))
        classes = np.unique(sample.y_true)
        out[spec.name] = np.array([[fn(sample.y_true[idx], sample.y_pred[j, idx], classes)
                                    for j in range(sample.n_models)] for idx in indices])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=len(TASKS))
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--baseline-resamples", type=int, default=5)
    args = parser.parse_args()
    specs = list(TASKS[: args.tasks])

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        paths, samples = synthesize(root, specs, args.models, args.n)
        print(f"synthesized {args.models} models x {len(specs)} tasks x {args.n:,} examples "
              f"({len(paths)} parquet files) in {time.perf_counter() - start:.1f} s")
        print(f"cpus available: {len(os.sched_getaffinity(0))}")

        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), time.process_time()
        aggregate(paths, root / "biobench.duckdb", n_resamples=args.resamples, exports_dir=root / "exports")
        full, cpu = time.perf_counter() - start, time.process_time() - cpu
        size = (root / "biobench.duckdb").stat().st_size / 2**20
        print(f"aggregate() end to end, {args.resamples} resamples: {full:.1f} s wall (target: <= 60 s) "
              f"-> {'PASS' if full <= 60 else 'FAIL'}; {cpu:.1f} s CPU; database {size:.0f} MiB; "
              f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after (other processes slow the wall time)")

    start, cpu = time.perf_counter(), time.process_time()
    fast = fast_statistics(specs, samples, args.resamples)
    fast_time, fast_cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"fast statistics alone ({args.resamples} resamples, all models and tasks): {fast_time:.1f} s wall, "
          f"{fast_cpu:.1f} s CPU")

    start, cpu = time.perf_counter(), time.process_time()
    slow = baseline_statistics(specs, samples, args.baseline_resamples)
    scale = args.resamples / args.baseline_resamples
    slow_time, slow_cpu = (time.perf_counter() - start) * scale, (time.process_time() - cpu) * scale
    agreement = max(np.abs(slow[s.name] - fast[s.name][: args.baseline_resamples]).max() for s in specs)
    print(f"per-model loop: {args.baseline_resamples} resamples timed, extrapolated (linear) to {args.resamples}: "
          f"{slow_time:.0f} s wall, {slow_cpu:.0f} s CPU; max |difference| from the fast path on those resamples: "
          f"{agreement:.1e}")
    print(f"ratio (per-model loop / fast statistics): {slow_time / fast_time:.0f}x wall, "
          f"{slow_cpu / fast_cpu:.0f}x CPU")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"peak memory (max RSS of this process): {peak:.2f} GiB")


if __name__ == "__main__":
    main()
