"""Logistic-regression probe: sklearn's LogisticRegression(lbfgs) against biobench's torch L-BFGS, same objective,
same features, same C, max_iter and tol, in one process.

Prints, for one C: time (wall and CPU seconds), iterations, evaluations (sklearn: scipy's nfev, two matrix products
each; torch: line-search trials, elementwise), objective (sklearn's, divided by C n) and test macro-F1 of each, and
the speed ratio; then the same for a sweep over C (sklearn: a cold fit per C; torch: one warm-started path).

    python bench/probe_speed.py                                  # 20,000 x 512, 200 classes: ~3 min on 2 cores
    python bench/probe_speed.py --correlated 0 --raw --float32 --sweep
                                                                 # isotropic features; torch also without whitening
                                                                 # and without its bfloat16 phase
    python bench/probe_speed.py --n 50000 --d 768 --classes 1000 # issue 6's size: sklearn's sweep alone takes
                                                                 # 15+ min on 2 cores; add --sweep to skip it
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import torch
from scipy.optimize import minimize as scipy_minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import _logistic as sklearn_logistic
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from biobench.classifiers import multinomial
from biobench.classifiers.base import bfloat16_is_fast, resolve_device
from biobench.classifiers.logreg import DEFAULT_CS, Standardiser


def make_features(n: int, d: int, n_classes: int, noise: float, seed: int, decay: float = 0.0):
    """Gaussian clusters with isotropic noise: balanced train rows and n // 4 test rows, standardised with the
    training statistics. noise=5 gives macro-F1 around 0.85 at 512 x 200 classes and 768 x 1,000 classes.

    decay > 0 mixes the features (centres and noise alike) by a random linear map whose singular values fall as
    j ** (-decay / 2), j = 1..d, so that the covariance's eigenvalues fall roughly as j ** -decay, as those of
    real embeddings do (decay about 1), instead of being all alike. An invertible map: the classes are as
    separable as before, but the problem is far worse conditioned for a solver that works on raw features."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, d), dtype=np.float32)
    mix = None
    if decay > 0:
        left, _ = np.linalg.qr(rng.standard_normal((d, d)))
        right, _ = np.linalg.qr(rng.standard_normal((d, d)))
        mix = ((left * np.arange(1, d + 1) ** (-decay / 2)) @ right.T).astype(np.float32)

    def draw(m: int):
        y = rng.permutation(np.arange(m) % n_classes)
        x = centres[y] + noise * rng.standard_normal((m, d), dtype=np.float32)
        return (x if mix is None else x @ mix), y.astype(np.int64)

    (x, y), (x_test, y_test) = draw(n), draw(n // 4)
    scaler = Standardiser.fit(torch.from_numpy(x))
    return (scaler(torch.from_numpy(x)).numpy(), y), (scaler(torch.from_numpy(x_test)).numpy(), y_test)


class Clock:
    """Wall seconds, and this process's CPU seconds (all threads): on a shared machine the CPU seconds show the
    work done when other jobs stretch the wall time."""

    def __enter__(self) -> "Clock":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def fit_sklearn(x, y, C: float, max_iter: int, tol: float):
    """sklearn's fit, and its scipy L-BFGS-B result (for nfev: loss-and-gradient evaluations, each two matrix
    products), caught on its way out of scipy.optimize.minimize."""
    results = []

    def minimize(*args, **kwargs):
        results.append(scipy_minimize(*args, **kwargs))
        return results[-1]

    with Clock() as clock, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sklearn_logistic.optimize.minimize = minimize
        try:
            model = LogisticRegression(C=C, l1_ratio=0.0, solver="lbfgs", max_iter=max_iter, tol=tol).fit(x, y)
        finally:
            sklearn_logistic.optimize.minimize = scipy_minimize
    return model, clock, results[-1].nfev if results else -1


def fit_torch(x_dev, y_dev, n_classes: int, Cs: list[float], max_iter: int, tol: float, *, whiten: bool = True,
              bfloat16_phase: bool):
    with Clock() as clock:
        path = multinomial.fit_path(x_dev, y_dev, n_classes, Cs, tol=tol, max_iter=max_iter, whiten=whiten,
                                    bfloat16_phase=bfloat16_phase)
        sync(x_dev.device)
    return path, clock


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def macro_f1(y_true, y_pred) -> float:
    return 100.0 * f1_score(y_true, y_pred, average="macro")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="training rows (test rows: n // 4)")
    parser.add_argument("--d", type=int, default=512, help="feature dimension")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--noise", type=float, default=5.0, help="noise std around unit-variance class centres")
    parser.add_argument("--C", type=float, default=1.0, help="C of the single-fit comparison")
    parser.add_argument("--max-iter", type=int, default=100, help="as sklearn's max_iter (its default: 100)")
    parser.add_argument("--tol", type=float, default=1e-6, help="as sklearn's tol (sklearn's default 1e-4 stops "
                        "after 2-3 iterations at 1,000 classes, far from the optimum; biobench's logreg uses 1e-6)")
    parser.add_argument("--sweep", type=float, nargs="*", default=list(DEFAULT_CS), help="Cs of the sweep; none = skip")
    parser.add_argument("--correlated", type=float, default=1.0, metavar="DECAY",
                        help="mix the features so their covariance's eigenvalues fall as j ** -DECAY, as real ones do "
                        "(standardised EfficientNet-Lite0 features of the default workflow: j ** -1.04); 0 = isotropic")
    parser.add_argument("--raw", action="store_true", help="also fit torch without whitening (the single fit only)")
    parser.add_argument("--bfloat16-phase", choices=["auto", "on", "off"], default="auto",
                        help="torch's bfloat16 first phase (auto: where bfloat16 matrix products are fast)")
    parser.add_argument("--float32", action="store_true",
                        help="also fit torch without the bfloat16 phase (single fit and sweep)")
    parser.add_argument("--device", default="auto", help="torch device: auto (CUDA if present), cpu, cuda")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    device = resolve_device(args.device)
    bfloat16_phase = bfloat16_is_fast(device) if args.bfloat16_phase == "auto" else args.bfloat16_phase == "on"
    (x, y), (x_test, y_test) = make_features(
        args.n, args.d, args.classes, args.noise, args.seed, args.correlated
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"features {args.n} x {args.d}, {args.classes} classes, noise {args.noise}, "
        f"{'correlated (decay ' + format(args.correlated, 'g') + ')' if args.correlated else 'isotropic'}; "
        f"test rows {len(y_test)}; "
        f"max_iter {args.max_iter}, tol {args.tol:g}; torch {torch.__version__} on {device} ({name}), "
        f"{torch.get_num_threads()} CPU threads; torch's bfloat16 phase {'on' if bfloat16_phase else 'off'}"
    )

    start = time.perf_counter()
    x_dev, y_dev = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    x_test_dev = torch.from_numpy(x_test).to(device)
    multinomial.fit_path(x_dev[:64], y_dev[:64] % 2, 2, [1.0], tol=args.tol, max_iter=2,
                         bfloat16_phase=bfloat16_phase)  # device/kernel warm-up
    sync(device)
    startup = time.perf_counter() - start
    print(f"torch start-up (copy to {device}, warm-up), outside the timings below: {startup:.2f} s\n")

    def report(label: str, C: float, seconds: str, iterations: int, evaluations: str, weight, bias) -> float:
        f1 = macro_f1(y_test, multinomial.predict(x_test_dev, weight.to(device), bias.to(device))[0])
        objective = multinomial.objective_value(x_dev, y_dev, args.classes, weight.to(device), bias.to(device), C)
        print(f"  {label:8s} C={C:<8.3g} {seconds:>22s}  {iterations:4d} iterations {evaluations:>28s}  "
              f"objective {objective:.7f}  macro-F1 {f1:6.2f}")
        return f1

    def sklearn_run(C: float) -> tuple[float, Clock]:
        model, clock, nfev = fit_sklearn(x, y, C, args.max_iter, args.tol)
        weight, bias = multinomial.weights_from_sklearn(model.coef_, model.intercept_)
        timing = f"{clock.wall:8.2f} s ({clock.cpu:7.1f} cpu)"
        return report("sklearn", C, timing, int(model.n_iter_[0]), f"{nfev:4d} nfev", weight, bias), clock

    def torch_report(label: str, s: multinomial.Solution, timing: str) -> float:
        evaluations = f"{s.evaluations:4d} line evals, {s.bfloat16_iterations:3d} bf16 it"
        return report(label, s.C, timing, s.iterations, evaluations, s.weight, s.bias)

    print(f"single fit, C={args.C:g} (sklearn nfev: loss+gradient evaluations, two n x d x K matrix products each; "
          "torch: two per iteration, its line-search evaluations are elementwise)")
    sk_f1, sk_clock = sklearn_run(args.C)
    variants = [("torch", True, bfloat16_phase)]
    variants += [("raw", False, bfloat16_phase)] if args.raw else []
    variants += [("float32", True, False)] if args.float32 and bfloat16_phase else []
    for label, whiten, phase in variants:
        (solution,), clock = fit_torch(x_dev, y_dev, args.classes, [args.C], args.max_iter, args.tol, whiten=whiten,
                                       bfloat16_phase=phase)
        timing = f"{clock.wall:8.2f} s ({clock.cpu:7.1f} cpu)"
        torch_f1 = torch_report(label, solution, timing)
        print(
            f"  {label}: speed-up {sk_clock.wall / clock.wall:.1f}x wall, {sk_clock.cpu / clock.cpu:.1f}x cpu "
            f"(start-up included: {sk_clock.wall / (clock.wall + startup):.1f}x wall); macro-F1 difference "
            f"{torch_f1 - sk_f1:+.2f} points; stop: {solution.stop}"
        )
    print()

    if not args.sweep:
        return
    print(f"sweep over {len(args.sweep)} Cs (sklearn: a cold fit per C; torch: one warm-started path)")
    path, clock = fit_torch(x_dev, y_dev, args.classes, sorted(args.sweep), args.max_iter, args.tol,
                            bfloat16_phase=bfloat16_phase)
    sk_wall = sk_cpu = 0.0
    gaps = []
    for s in path:
        f1_sk, sk_clock = sklearn_run(s.C)
        sk_wall, sk_cpu = sk_wall + sk_clock.wall, sk_cpu + sk_clock.cpu
        gaps.append(torch_report("torch", s, f"{s.seconds:8.2f} s") - f1_sk)
    print(
        f"  sweep: sklearn {sk_wall:.1f} s ({sk_cpu:.1f} cpu), torch {clock.wall:.1f} s ({clock.cpu:.1f} cpu); "
        f"speed-up {sk_wall / clock.wall:.1f}x wall, {sk_cpu / clock.cpu:.1f}x cpu; "
        f"largest macro-F1 gap {max(gaps, key=abs):+.2f} points"
    )
    if args.float32 and bfloat16_phase:
        _, f32 = fit_torch(x_dev, y_dev, args.classes, sorted(args.sweep), args.max_iter, args.tol,
                           bfloat16_phase=False)
        print(f"  sweep without the bfloat16 phase: torch {f32.wall:.1f} s ({f32.cpu:.1f} cpu); speed-up "
              f"{sk_wall / f32.wall:.1f}x wall, {sk_cpu / f32.cpu:.1f}x cpu; the phase saves "
              f"{f32.wall / clock.wall:.2f}x")


if __name__ == "__main__":
    main()
