"""The "svm" protocol's search (NeWT): sklearn's RandomizedSearchCV over make_pipeline(StandardScaler(), SVC), as
biobench ran it before, against biobench's search over per-fold Gram matrices with precomputed kernels, in one
process, on NeWT-like synthetic binary tasks.

Prints, per task and in total: wall and CPU seconds of each (CPU: this process, all threads; on a shared machine it
shows the work when other jobs stretch the wall time; with --n-jobs > 1 the old search works in joblib's worker
processes, which it does not count, while the new one uses threads, which it does), the ratio, and whether the two
choose the same (kernel, C, gamma) with the same cv score, predict the same test labels, and how far apart their
decision values are.

    python bench/svm_speed.py                         # 10 tasks of 300 x 768, 100 candidates, 5 folds
    python bench/svm_speed.py --tasks 3 --blas-threads 1
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import sklearn

from biobench.classifiers import CLASSIFIERS, svm


def make_task(n: int, d: int, seed: int):
    """Two classes, NeWT-like: d-dimensional features with a low-rank structure shared by both classes, a class
    difference of varying strength (cv accuracy from about 0.6 to 1) and a varying class balance; n training and
    n // 2 test rows."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((32, d))
    shift = rng.uniform(0.03, 0.15) * rng.standard_normal(d)
    share = rng.uniform(0.3, 0.5)

    def draw(m: int):
        y = (rng.random(m) < share).astype(np.int64)
        y[:2], y[2:4] = 0, 1
        x = rng.standard_normal((m, 32)) @ basis * 0.3 + rng.standard_normal((m, d)) + shift * y[:, None] + 0.5
        return x.astype(np.float32), y

    return draw(n), draw(n // 2)


class Clock:
    def __enter__(self) -> "Clock":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def old(clf, x, y, folds):
    """biobench's svm protocol before: the same features, then RandomizedSearchCV (refit on all rows)."""
    unit = svm._unit_rows(x)
    mean = unit.mean(axis=0, keepdims=True)
    with Clock() as clock:
        search = clf.reference_search(folds).fit(svm._unit_rows(unit - mean), y)
    return search, mean, clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--n", type=int, default=300, help="training rows per task")
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--n-iter", type=int, default=100)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--blas-threads", type=int, default=None, help="limit BLAS threads (default: as found)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from threadpoolctl import threadpool_info, threadpool_limits

    if args.blas_threads:
        threadpool_limits(args.blas_threads)
    blas = ", ".join(f"{i['internal_api']} {i['num_threads']} threads" for i in threadpool_info())
    print(f"{platform.node()}: {platform.processor() or platform.machine()}, scikit-learn {sklearn.__version__}, "
          f"{blas}; {args.tasks} tasks of {args.n} x {args.d}, {args.n_iter} candidates, {args.folds} folds, "
          f"n_jobs {args.n_jobs}")

    def classifier(seed):
        return CLASSIFIERS.get("svm")(n_iter=args.n_iter, folds=args.folds, n_jobs=args.n_jobs, metric="accuracy",
                                      seed=seed)

    # warm up both (imports, libsvm binding check) on a small task
    (x, y), _ = make_task(40, 16, seed=12345)
    small = CLASSIFIERS.get("svm")(n_iter=4, metric="accuracy")
    small.fit(x, y)
    small.reference_search(5).fit(x, y)

    print(f"{'task':>4} {'old wall':>9} {'old cpu':>8} {'new wall':>9} {'new cpu':>8} {'ratio':>6}  "
          f"{'same choice':>11} {'same pred':>9} {'max |dec diff|':>14}  choice")
    totals = np.zeros(4)
    agree_all = True
    for t in range(args.tasks):
        (x, y), (x_test, _) = make_task(args.n, args.d, seed=args.seed + t)
        clf = classifier(args.seed + t)
        folds = min(args.folds, int(np.bincount(y).min()))
        ref, mean, old_clock = old(clf, x, y, folds)
        with Clock() as new_clock:
            clf.fit(x, y)
        s, best = clf.summary(), ref.best_params_
        same = ((s["kernel"], s["C"], s["gamma"], s["cv_score"])
                == (best["svc__kernel"], best["svc__C"], best["svc__gamma"], ref.best_score_))
        x_ref = svm._unit_rows(svm._unit_rows(x_test) - mean)
        y_pred, _ = clf.predict(x_test)
        same_pred = bool((y_pred == ref.predict(x_ref)).all())
        x_new = svm._unit_rows(svm._unit_rows(x_test) - clf.mean)
        gap = float(np.abs(clf.model.decision_function(x_new) - ref.decision_function(x_ref)).max())
        agree_all &= same and same_pred
        row = np.array([old_clock.wall, old_clock.cpu, new_clock.wall, new_clock.cpu])
        totals += row
        print(f"{t:>4} {row[0]:>9.2f} {row[1]:>8.2f} {row[2]:>9.2f} {row[3]:>8.2f} {row[0] / row[2]:>6.1f}  "
              f"{str(same):>11} {str(same_pred):>9} {gap:>14.1e}  {s['kernel']} C={s['C']:.4g} "
              f"gamma={s['gamma']:.3g} cv={s['cv_score']:.4f}")
    print(f" all {totals[0]:>9.2f} {totals[1]:>8.2f} {totals[2]:>9.2f} {totals[3]:>8.2f} "
          f"{totals[0] / totals[2]:>6.1f}  (cpu ratio {totals[1] / totals[3]:.1f}); every task agrees: {agree_all}")


if __name__ == "__main__":
    main()
