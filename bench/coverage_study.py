"""Coverage of biobench's bootstrap intervals on long-tailed tasks, by simulation.

Each data set: n test examples drawn from a K-class population with a Zipf label prior (`simulate.zipf_prior(K, s)`)
and two correlated synthetic classifiers (`biobench.stats.simulate`): model a is right with probability
hit_a[y] = 0.9 on the most frequent class down to 0.5 on the rarest (linear in the class rank), model b with
hit_a[y] - 0.05; they share the uniform that decides right/wrong on 80% of the examples; a wrong prediction is
drawn from the label prior. Statistics, all computed with biobench's own code (`biobench.stats.metrics` on
bootstrap weights from `biobench.stats.bootstrap.resample_weights`, B resamples):
  accuracy, macro_f1     of model a (macro-F1 over the classes of the data set's truth, `metrics.macro_f1`)
  diff accuracy/macro_f1 a - b on the same (paired) resamples
  overall                the unweighted mean of three independent tasks of n examples each, model a:
                         accuracy (10 classes, Zipf 1), accuracy (100 classes, Zipf 1.5), macro-F1 (100 classes,
                         Zipf 1): the data sets of three scenarios, resampled independently
Intervals (level c = 0.95, a = 1 - c; Q = numpy's linear quantile of the B resampled values t*, t = point):
  percentile  [Q(a/2), Q(1 - a/2)]                                        (biobench's former default)
  centered    [Q(a/2) - d, Q(1 - a/2) - d],  d = mean(t*) - t: the percentile interval of the resamples shifted
              to be centred on the point estimate (biobench's default, `bootstrap.centered_interval`)
  basic       [2t - Q(1 - a/2), 2t - Q(a/2)]
  normal      t -/+ z_(1-a/2) sd(t*)
  bc          percentile at Phi(2 z0 + z_(a/2)), Phi(2 z0 + z_(1-a/2)),   z0 = Phi^-1((#{t* < t} + #{t* <= t}) / 2B)
  bca         percentile at Phi(z0 + (z0 + z)/(1 - acc (z0 + z))) for z = z_(a/2), z_(1-a/2), with the
              acceleration acc = sum_g d_g^3 / (6 (sum_g d_g^2)^1.5), d_g = mean_h(t_(h)) - t_(g), from a grouped
              (delete-a-group) jackknife: the examples split at random into G = 100 groups, t_(g) the statistic
              without group g. It estimates the same skewness ratio as the delete-one jackknife at G/n of the cost.
              For the overall mean, d_g of each task's statistic (divided by the number of tasks) are pooled.
Estimands, each per scenario:
  population  the population value (`Classifier.population_*`; for the overall, the mean of the tasks')
  expected    the expected test-set value: the mean of the statistic over M fresh test sets of the same n
              (independent of the data sets whose intervals are scored)
The B resamples are biobench's own (`resample_weights(seed, task, n, B)`, task = the scenario's name), so, as in
biobench, every data set of a scenario gets the same resample indices (drawn once per scenario).
Coverage = share of the R data sets whose interval contains the estimand (Monte Carlo s.e. about
sqrt(0.95 * 0.05 / R) = 0.015 at R = 200 when the true coverage is 0.95). Also printed: bias = (expected -
population) / sd, sd the standard deviation of the statistic over the M fresh test sets, and sd* / sd, sd* the
average bootstrap standard deviation.

Deterministic: every random stream is seeded from --seed and the scenario. Run:
  python bench/coverage_study.py                 # the README table (R = 200 at n <= 10k, 100 at 50k; B = 1000)
  python bench/coverage_study.py --quick         # a smaller check (R = 60, B = 500, n = 2k and 10k)
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

from biobench.stats import simulate
from biobench.stats.bootstrap import resample_weights
from biobench.stats.metrics import METRICS, Sample

CONFIDENCE = 0.95
METHODS = ("percentile", "centered", "basic", "normal", "bc", "bca")
STATISTICS = ("accuracy", "macro_f1", "diff accuracy", "diff macro_f1")
JACKKNIFE_GROUPS = 100
OVERALL_TASKS = ((10, 1.0, "accuracy"), (100, 1.5, "accuracy"), (100, 1.0, "macro_f1"))  # three scenarios' data


def seed_of(*parts: object) -> list[int]:
    text = "/".join(map(str, parts))
    return [int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")]


def classifiers(n_classes: int, exponent: float) -> tuple[simulate.Classifier, simulate.Classifier]:
    prior = simulate.zipf_prior(n_classes, exponent)
    hit = np.linspace(0.9, 0.5, n_classes)
    return simulate.Classifier(prior, hit, prior), simulate.Classifier(prior, hit - 0.05, prior)


def draw_sample(rng: np.random.Generator, pair: tuple[simulate.Classifier, simulate.Classifier], n: int) -> Sample:
    a, b = pair
    y_true = a.sample_labels(rng, n)
    shared = rng.random(n)
    y_pred = np.stack([clf.predict(rng, y_true, simulate.correlated_uniforms(rng, shared, 0.8)) for clf in (a, b)])
    return Sample(y_true, y_pred, (y_pred == y_true).astype(np.float64))


def population(pair: tuple[simulate.Classifier, simulate.Classifier]) -> dict[str, float]:
    acc = [clf.population_accuracy() for clf in pair]
    f1 = [clf.population_macro_f1() for clf in pair]
    return {"accuracy": acc[0], "macro_f1": f1[0], "diff accuracy": acc[0] - acc[1], "diff macro_f1": f1[0] - f1[1]}


def statistics(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(k, 2) values of each metric for models a, b -> (k,) values of each statistic."""
    return {"accuracy": values["accuracy"][:, 0], "macro_f1": values["macro_f1"][:, 0],
            "diff accuracy": values["accuracy"][:, 0] - values["accuracy"][:, 1],
            "diff macro_f1": values["macro_f1"][:, 0] - values["macro_f1"][:, 1]}


def evaluate(sample: Sample, weights: np.ndarray) -> dict[str, np.ndarray]:
    return statistics({name: METRICS.get(name)(weights, sample) for name in ("accuracy", "macro_f1")})


def jackknife_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    group = rng.permutation(n) % JACKKNIFE_GROUPS
    weights = np.ones((n, JACKKNIFE_GROUPS), dtype=np.float32)
    weights[np.arange(n), group] = 0
    return weights


def jackknife_deviations(values: np.ndarray) -> np.ndarray:
    return values.mean() - values


def acceleration(deviations: np.ndarray) -> float:
    denominator = 6 * np.sum(deviations**2) ** 1.5
    return float(np.sum(deviations**3) / denominator) if denominator > 0 else 0.0


def intervals(point: float, resamples: np.ndarray, deviations: np.ndarray) -> dict[str, tuple[float, float]]:
    alpha = 1 - CONFIDENCE
    levels = np.array([alpha / 2, 1 - alpha / 2])
    low, high = np.quantile(resamples, levels)
    z = ndtri(levels)
    z0 = ndtri(np.clip((np.sum(resamples < point) + np.sum(resamples <= point)) / (2 * len(resamples)),
                       1 / len(resamples), 1 - 1 / len(resamples)))
    acc = acceleration(deviations)
    sd = resamples.std(ddof=1)
    return {
        "percentile": (low, high),
        "centered": (low - (resamples.mean() - point), high - (resamples.mean() - point)),
        "basic": (2 * point - high, 2 * point - low),
        "normal": (point + z[0] * sd, point + z[1] * sd),
        "bc": tuple(np.quantile(resamples, ndtr(2 * z0 + z))),
        "bca": tuple(np.quantile(resamples, ndtr(z0 + (z0 + z) / (1 - acc * (z0 + z))))),
    }


@dataclass
class Tally:
    """Per statistic: hits of each (method, estimand), and the bootstrap sd of each data set."""

    covered: dict[tuple[str, str], list[bool]] = field(default_factory=dict)
    boot_sd: list[float] = field(default_factory=list)

    def add(self, point: float, resamples: np.ndarray, deviations: np.ndarray, targets: dict[str, float]) -> None:
        for method, (low, high) in intervals(point, resamples, deviations).items():
            for estimand, value in targets.items():
                self.covered.setdefault((method, estimand), []).append(bool(low <= value <= high))
        self.boot_sd.append(float(resamples.std(ddof=1)))

    def rate(self, method: str, estimand: str) -> float:
        return float(np.mean(self.covered[(method, estimand)]))


def fresh_values(pair, n: int, n_sets: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The statistics on n_sets fresh test sets of n examples (every example once)."""
    out: dict[str, list[float]] = {}
    ones = np.ones((n, 1), dtype=np.float32)
    for _ in range(n_sets):
        for name, value in evaluate(draw_sample(rng, pair, n), ones).items():
            out.setdefault(name, []).append(float(value[0]))
    return {name: np.array(v) for name, v in out.items()}


def run_scenario(n_classes: int, exponent: float, n: int, *, reps: int, n_resamples: int, n_fresh: int,
                 seed: int) -> tuple[dict[str, Tally], dict[str, dict[str, float]], dict[str, list]]:
    """Tallies per statistic, the estimands and summaries, and the per-data-set material the overall needs."""
    pair = classifiers(n_classes, exponent)
    name = f"K{n_classes}-s{exponent}-n{n}"
    fresh = fresh_values(pair, n, n_fresh, np.random.default_rng(seed_of(seed, name, "fresh")))
    pop = population(pair)
    info = {stat: {"population": pop[stat], "expected": float(fresh[stat].mean()), "sd": float(fresh[stat].std(ddof=1))}
            for stat in STATISTICS}
    tallies = {stat: Tally() for stat in STATISTICS}
    kept: dict[str, list] = {"accuracy": [], "macro_f1": []}
    rng = np.random.default_rng(seed_of(seed, name, "data"))
    weights = resample_weights(seed, name, n, n_resamples)
    for _ in range(reps):
        sample = draw_sample(rng, pair, n)
        point = evaluate(sample, np.ones((n, 1), dtype=np.float32))
        boot = evaluate(sample, weights)
        jack = evaluate(sample, jackknife_weights(rng, n))
        for stat in STATISTICS:
            deviations = jackknife_deviations(jack[stat])
            tallies[stat].add(float(point[stat][0]), boot[stat], deviations,
                              {k: info[stat][k] for k in ("population", "expected")})
            if stat in kept:
                kept[stat].append((float(point[stat][0]), boot[stat], deviations))
    return tallies, info, kept


def overall(parts: list[tuple[dict, list]]) -> tuple[Tally, dict[str, float]]:
    """Coverage of the mean over tasks; parts: per task (its estimand info, its per-data-set material)."""
    k = len(parts)
    targets = {e: float(np.mean([info[e] for info, _ in parts])) for e in ("population", "expected")}
    sd = float(np.sqrt(sum(info["sd"] ** 2 for info, _ in parts)) / k)  # the tasks' test sets are independent
    tally = Tally()
    for per_task in zip(*(material for _, material in parts), strict=True):
        point = float(np.mean([p for p, _, _ in per_task]))
        resamples = np.mean([b for _, b, _ in per_task], axis=0)  # tasks resampled independently, as in biobench
        deviations = np.concatenate([d / k for _, _, d in per_task])
        tally.add(point, resamples, deviations, targets)
    return tally, {**targets, "sd": sd}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="R = 60, B = 500, n = 2k and 10k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--exponents", type=float, nargs="+", default=[1.0, 1.5])
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--reps", type=int, default=None, help="data sets per scenario (50k: half as many)")
    parser.add_argument("--resamples", type=int, default=None)
    parser.add_argument("--fresh", type=int, default=None, help="fresh test sets for the expected value")
    args = parser.parse_args()
    sizes = args.sizes or ([2000, 10000] if args.quick else [2000, 10000, 50000])
    reps = args.reps or (60 if args.quick else 200)
    n_resamples = args.resamples or (500 if args.quick else 1000)
    n_fresh = args.fresh or (200 if args.quick else 400)
    print(f"# coverage of {CONFIDENCE:.0%} intervals; R = {reps} data sets per scenario ({reps // 2} at n >= 50k), "
          f"B = {n_resamples}, M = {n_fresh} fresh test sets, seed {args.seed}")
    header = f"{'scenario':<22} {'statistic':<14} {'bias':>6} {'sd*/sd':>6} | " + " ".join(
        f"{m:>10}" for m in METHODS) + " |  (population / expected)"
    print(header)
    started = time.perf_counter()
    for n in sizes:
        material: dict[tuple[int, float, str], tuple[dict, list]] = {}
        for n_classes in args.classes:
            for exponent in args.exponents:
                t0 = time.perf_counter()
                scenario_reps = reps // 2 if n >= 50_000 else reps
                tallies, info, kept = run_scenario(n_classes, exponent, n, reps=scenario_reps,
                                                   n_resamples=n_resamples, n_fresh=n_fresh, seed=args.seed)
                for stat in STATISTICS:
                    print_row(f"K={n_classes} s={exponent:g} n={n}", stat, tallies[stat], info[stat])
                print(f"#   {time.perf_counter() - t0:.0f} s", flush=True)
                for metric in ("accuracy", "macro_f1"):
                    material[(n_classes, exponent, metric)] = (info[metric], kept[metric])
        if all(task in material for task in OVERALL_TASKS):
            tally, targets = overall([material[task] for task in OVERALL_TASKS])
            print_row(f"3 tasks n={n}", "overall", tally, targets)
    print(f"# total {time.perf_counter() - started:.0f} s")


def print_row(scenario: str, stat: str, tally: Tally, info: dict[str, float]) -> None:
    bias = (info["expected"] - info["population"]) / info["sd"] if info["sd"] > 0 else np.nan
    ratio = np.mean(tally.boot_sd) / info["sd"] if info["sd"] > 0 else np.nan
    cells = " ".join(f"{tally.rate(m, 'population'):.2f}/{tally.rate(m, 'expected'):.2f}".rjust(10) for m in METHODS)
    print(f"{scenario:<22} {stat:<14} {bias:>6.2f} {ratio:>6.2f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
