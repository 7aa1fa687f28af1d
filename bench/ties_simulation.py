"""Family-wise error rate and power of "tied with the best" (biobench.stats.comparisons), by simulation.

Each data set: n test examples of a 10-class task (Zipf label prior), m synthetic classifiers whose right/wrong draws
share a uniform on 60% of the examples (`biobench.stats.simulate`), the paired bootstrap of their accuracies
(`bootstrap_task`, B resamples), then the tie set at level a = 1 - confidence. Scenarios:
  null     all m models have the same hit rate; FWER = share of data sets where any model is declared worse than
           the best (must be <= a up to Monte Carlo error)
  one      one model has hit rate 0.90, the other m - 1 0.80; reports how often the tie set is the best alone
  spread   hit rates evenly spaced from 0.955 down to 0.37 (27 models, as in the published BioBench overall scores)
For comparison it also applies the previous rule (Holm over the m - 1 two-sided p-values against the empirical best).
Run: python bench/ties_simulation.py --scenario null --models 20 --n 500 --resamples 1000 --datasets 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from biobench.stats import bootstrap, simulate
from biobench.stats.comparisons import bootstrap_p_value, tied_with_best
from biobench.stats.metrics import METRICS, Sample


def hit_rates(scenario: str, m: int) -> np.ndarray:
    if scenario == "null":
        return np.full(m, 0.8)
    if scenario == "one":
        return np.r_[0.9, np.full(m - 1, 0.8)]
    return np.linspace(0.955, 0.37, m)


def draw(rng: np.random.Generator, hits: np.ndarray, n: int, n_resamples: int, task: str) -> bootstrap.Estimates:
    prior = simulate.zipf_prior(10)
    y_true = simulate.Classifier(prior, np.full(10, 0.5), prior).sample_labels(rng, n)
    shared = rng.random(n)
    y_pred = np.stack([simulate.Classifier(prior, np.full(10, h), prior)
                       .predict(rng, y_true, simulate.correlated_uniforms(rng, shared, 0.6)) for h in hits])
    sample = Sample(y_true, y_pred, (y_pred == y_true).astype(np.float64))
    return bootstrap.bootstrap_task(METRICS.get("accuracy"), sample, [f"m{j}" for j in range(len(hits))], seed=0,
                                    task=task, n_resamples=n_resamples)


def holm_ties(est: bootstrap.Estimates, alpha: float) -> np.ndarray:
    """The previous rule: Holm's step-down over the two-sided paired p-values against the empirical best."""
    best = int(np.argmax(est.point))
    others = np.array([j for j in range(len(est.point)) if j != best])
    p = bootstrap_p_value(est.resamples[:, [best]] - est.resamples[:, others])
    order = np.argsort(p, kind="stable")
    passes = p[order] <= alpha / (len(p) - np.arange(len(p)))
    n_rejected = len(p) if passes.all() else int(np.argmin(passes))
    tied = np.ones(len(est.point), dtype=bool)
    tied[others[order[:n_rejected]]] = False
    return tied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=["null", "one", "spread"], default="null")
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    alpha, hits = 1 - args.confidence, hit_rates(args.scenario, args.models)
    rng = np.random.default_rng(args.seed)
    sizes, old_sizes, any_rejected, old_any, best_alone, start = [], [], 0, 0, 0, time.perf_counter()
    for r in range(args.datasets):
        est = draw(rng, hits, args.n, args.resamples, f"sim-{r}")
        tied, old = tied_with_best(est, alpha), holm_ties(est, alpha)
        sizes.append(tied.sum())
        old_sizes.append(old.sum())
        any_rejected += not tied.all()
        old_any += not old.all()
        best_alone += tied.sum() == 1 and tied[0]
    d = args.datasets
    print(f"scenario={args.scenario} models={args.models} n={args.n} B={args.resamples} confidence={args.confidence} "
          f"datasets={d} ({time.perf_counter() - start:.0f} s)")
    print(f"  tie set size: mean {np.mean(sizes):.2f}, median {np.median(sizes):g}, max {np.max(sizes)} "
          f"(previous Holm rule: mean {np.mean(old_sizes):.2f}, max {np.max(old_sizes)})")
    if args.scenario == "null":
        se = np.sqrt(alpha * (1 - alpha) / d)
        print(f"  FWER {any_rejected / d:.4f} (Monte Carlo s.e. at a: {se:.4f}; a = {alpha:g}); "
              f"previous Holm rule {old_any / d:.4f}")
    else:
        print(f"  tie set = the true best alone in {best_alone}/{d} data sets")


if __name__ == "__main__":
    main()
