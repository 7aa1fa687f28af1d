"""The torch L-BFGS solver against sklearn's LogisticRegression(lbfgs), with and without class weights, and the
"logreg" protocol around it: hold-out or k-fold choice of C, class weights, too few rows to validate."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight

from biobench.classifiers import CLASSIFIERS, multinomial
from biobench.classifiers.logreg import LogRegParams, balanced_weights
from biobench.classifiers.split import stratified_folds
from biobench.errors import ConfigError


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def problem(n: int, d: int, n_classes: int, seed: int, spread: float = 1.4):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, d))
    y = rng.integers(0, n_classes, n)
    x = centres[y] + spread * rng.standard_normal((n, d))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x.astype(np.float32), y.astype(np.int64)


def sklearn_fit(x, y, C):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning would make the reference unfit to compare with
        return LogisticRegression(C=C, l1_ratio=0.0, solver="lbfgs", tol=1e-10, max_iter=10_000).fit(
            x.astype(np.float64), y
        )


@pytest.fixture(scope="module")
def five_classes():
    return problem(600, 32, 5, seed=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_classes", [5, 2])
@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_float32_solution_matches_sklearn(n_classes, C, device):
    x, y = problem(600, 32, n_classes, seed=n_classes)
    ref = sklearn_fit(x, y, C)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    ours = multinomial.fit_path(X.to(device), Y.to(device), n_classes, [C], tol=1e-6, max_iter=1000)[0]
    ours = dataclasses.replace(ours, weight=ours.weight.cpu(), bias=ours.bias.cpu())
    ref_w, ref_b = multinomial.weights_from_sklearn(ref.coef_, ref.intercept_)
    X64, Y64 = X.double(), Y
    f_ours = multinomial.objective_value(X64, Y64, n_classes, ours.weight.double(), ours.bias.double(), C)
    f_ref = multinomial.objective_value(X64, Y64, n_classes, ref_w.double(), ref_b.double(), C)
    assert abs(f_ours - f_ref) <= 1e-4 * f_ref
    pred = multinomial.predict(X, ours.weight, ours.bias)[0]
    assert np.mean(pred == ref.predict(x)) > 0.99
    scale = ref_w.abs().max().item()
    assert (ours.weight.double() - ref_w).abs().max().item() <= 0.02 * scale


def test_float64_solution_is_sklearns_to_solver_precision(five_classes):
    x, y = five_classes
    ref = sklearn_fit(x, y, 1.0)
    ours = multinomial.fit_path(torch.from_numpy(x).double(), torch.from_numpy(y), 5, [1.0], tol=1e-9, max_iter=1000)[0]
    assert ours.converged
    np.testing.assert_allclose(ours.weight.numpy(), ref.coef_, atol=1e-5)
    np.testing.assert_allclose(ours.bias.numpy(), ref.intercept_, atol=1e-5)


def test_objective_is_sklearns_divided_by_C_n(five_classes):
    x, y = five_classes
    C, n = 0.3, len(y)
    ref = sklearn_fit(x, y, C)
    logits = x.astype(np.float64) @ ref.coef_.T + ref.intercept_
    ce = np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(n), y]
    sklearn_objective = C * ce.sum() + 0.5 * (ref.coef_**2).sum()
    w, b = multinomial.weights_from_sklearn(ref.coef_, ref.intercept_)
    ours = multinomial.objective_value(torch.from_numpy(x).double(), torch.from_numpy(y), 5, w, b, C)
    assert ours * C * n == pytest.approx(sklearn_objective, rel=1e-12)


def test_warm_started_path_gives_the_cold_fits(five_classes):
    x, y = five_classes
    X, Y = torch.from_numpy(x).double(), torch.from_numpy(y)
    Cs = [0.01, 0.1, 1.0, 10.0]
    path = multinomial.fit_path(X, Y, 5, Cs, tol=1e-7, max_iter=1000)
    assert [s.C for s in path] == Cs and all(s.converged for s in path)
    for warm in path:
        cold = multinomial.fit_path(X, Y, 5, [warm.C], tol=1e-7, max_iter=1000)[0]
        np.testing.assert_allclose(warm.weight.numpy(), cold.weight.numpy(), atol=1e-3)  # |dW| <~ tol C n
        assert warm.objective == pytest.approx(cold.objective, rel=1e-7)
    assert sum(s.iterations for s in path[1:]) < sum(
        multinomial.fit_path(X, Y, 5, [s.C], tol=1e-7, max_iter=1000)[0].iterations for s in path[1:]
    )


def test_stopping_rules(five_classes):
    x, y = five_classes
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    capped = multinomial.fit_path(X, Y, 5, [1.0], tol=1e-12, max_iter=3)[0]
    assert capped.stop == "max_iter" and capped.iterations == 3 and not capped.converged
    loose = multinomial.fit_path(X, Y, 5, [1.0], tol=1e-2, max_iter=1000)[0]
    assert loose.converged and loose.grad_max <= 1e-2 and loose.iterations < 10
    floor = multinomial.fit_path(X, Y, 5, [100.0], tol=1e-12, max_iter=1000)[0]
    assert floor.stop == "line_search" and floor.iterations < 1000  # float32 cannot get the gradient to 1e-12


def protocol_data(seed: int = 0):
    x, y = problem(900, 24, 6, seed=seed, spread=2.5)
    return x[:600], y[:600], x[600:], y[600:]


def test_protocol_fits_selects_and_predicts():
    x, y, x_test, y_test = protocol_data()
    clf = CLASSIFIERS.get("logreg")(Cs=[0.001, 0.01, 0.1, 1.0, 10.0], seed=0, device="cpu", metric="macro_f1")
    clf.fit(x, y)
    y_pred, prob = clf.predict(x_test)
    assert np.mean(y_pred == y_test) > 0.6
    summary = clf.summary()
    per_C = summary["validation"]["per_C"]
    assert [r["C"] for r in per_C] == [0.001, 0.01, 0.1, 1.0, 10.0]
    best = max(per_C, key=lambda r: r["score"])
    assert summary["C"] == best["C"] and summary["refit"]["C"] == best["C"]
    assert summary["validation"]["n_val"] == pytest.approx(0.2 * len(y), abs=6)
    assert summary["tol"] == 1e-4  # min(1e-4, 1e-3 / 6 classes)
    assert summary["refit"]["stop"] in ("gtol", "line_search") and summary["refit"]["grad_max"] <= summary["tol"]


def test_default_tolerance_tightens_with_the_number_of_classes():
    params = CLASSIFIERS.get("logreg").Params
    assert params().tol_for(10) == 1e-4 and params().tol_for(1000) == pytest.approx(1e-6)
    assert params(tol=1e-8).tol_for(1000) == 1e-8


def test_chosen_C_never_depends_on_the_test_rows():
    x, y, x_test, _ = protocol_data(seed=1)
    chosen = []
    for variant in (x_test, x_test[::-1].copy(), x_test + np.float32(5.0), x_test[:10]):
        clf = CLASSIFIERS.get("logreg")(Cs=[0.001, 0.03, 1.0, 30.0], seed=3, device="cpu")
        clf.fit(x, y)
        clf.predict(variant)
        chosen.append((clf.summary()["C"], [r["score"] for r in clf.summary()["validation"]["per_C"]]))
    assert all(c == chosen[0] for c in chosen)


def test_single_C_skips_the_validation_split_and_singletons_stay_in_fitting():
    x, y, x_test, _ = protocol_data()
    clf = CLASSIFIERS.get("logreg")(Cs=[0.5], device="cpu")
    clf.fit(x, y)
    assert "validation" not in clf.summary() and clf.summary()["C"] == 0.5
    singleton = np.concatenate([y[:-1], [99]])  # one class with a single training row
    clf = CLASSIFIERS.get("logreg")(Cs=[0.1, 1.0], device="cpu")
    clf.fit(x, singleton)
    assert 99 in clf.classes and clf.summary()["validation"]["n_fit"] + clf.summary()["validation"]["n_val"] == 600


def test_labels_are_mapped_back_and_binary_works():
    x, y, x_test, y_test = protocol_data()
    keep, keep_test = y < 2, y_test < 2
    labels = np.where(y[keep] == 0, -5, 12)
    clf = CLASSIFIERS.get("logreg")(Cs=[0.01, 1.0], device="cpu", metric="accuracy")
    clf.fit(x[keep], labels)
    y_pred, prob = clf.predict(x_test[keep_test])
    assert set(y_pred) <= {-5, 12} and (prob >= 0.5).all()
    assert np.mean(y_pred == np.where(y_test[keep_test] == 0, -5, 12)) > 0.8


def test_untrainable_inputs_raise_clear_errors():
    x, y, *_ = protocol_data()
    with pytest.raises(ValueError, match="at least two classes"):
        CLASSIFIERS.get("logreg")(device="cpu").fit(x, np.zeros(len(y), dtype=np.int64))


# Class weights in the solver.


def imbalanced_problem(n: int, d: int, n_classes: int, seed: int, spread: float = 1.4):
    """Class c drawn with probability proportional to 1 + 14 (c / (K - 1))^2: 15 to 1 from the largest class to the
    smallest."""
    rng = np.random.default_rng(seed)
    share = 1.0 + 14.0 * (np.arange(n_classes) / (n_classes - 1)) ** 2
    y = rng.choice(n_classes, n, p=share / share.sum())
    centres = rng.standard_normal((n_classes, d))
    x = centres[y] + spread * rng.standard_normal((n, d))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x.astype(np.float32), y.astype(np.int64)


def sklearn_balanced_fit(x, y, C):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return LogisticRegression(
            C=C, l1_ratio=0.0, class_weight="balanced", solver="lbfgs", tol=1e-10, max_iter=100_000
        ).fit(x.astype(np.float64), y)


def test_balanced_weights_are_sklearns():
    y = np.array([0] * 7 + [1] * 2 + [2] * 30 + [3])
    expected = compute_class_weight("balanced", classes=np.arange(4), y=y)[y]
    np.testing.assert_allclose(balanced_weights(y), expected, rtol=1e-7)
    assert balanced_weights(y).sum() == pytest.approx(len(y), rel=1e-6)  # so lam stays 1 / (C n)


@pytest.mark.parametrize("bfloat16_phase", [False, True])
@pytest.mark.parametrize("n_classes", [2, 6])
@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_balanced_class_weights_reach_sklearns_optimum(n_classes, C, bfloat16_phase):
    x, y = imbalanced_problem(900, 24, n_classes, seed=40 + n_classes)
    assert np.bincount(y).max() >= 8 * np.bincount(y).min()
    ref = sklearn_balanced_fit(x, y, C)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    weights = torch.from_numpy(balanced_weights(y))
    ours = multinomial.fit_path(
        X, Y, n_classes, [C], tol=1e-6, max_iter=2000, bfloat16_phase=bfloat16_phase, sample_weight=weights
    )[0]
    assert ours.stop in ("gtol", "line_search") and ours.grad_max <= 1e-6
    assert (ours.bfloat16_iterations > 0) is bfloat16_phase
    ref_w, ref_b = multinomial.weights_from_sklearn(ref.coef_, ref.intercept_)
    X64, W64 = X.double(), weights.double()
    f_ours = multinomial.objective_value(X64, Y, n_classes, ours.weight.double(), ours.bias.double(), C, W64)
    f_ref = multinomial.objective_value(X64, Y, n_classes, ref_w.double(), ref_b.double(), C, W64)
    assert abs(f_ours - f_ref) <= 1e-4 * f_ref
    assert ours.objective == pytest.approx(f_ours, rel=1e-5)
    pred = multinomial.predict(X, ours.weight, ours.bias)[0]
    assert np.mean(pred == ref.predict(x)) >= 0.995


def test_weighted_objective_is_sklearns_divided_by_C_times_the_total_weight():
    x, y = imbalanced_problem(500, 16, 4, seed=3)
    C = 0.3
    ref = sklearn_balanced_fit(x, y, C)
    w = balanced_weights(y).astype(np.float64)
    logits = x.astype(np.float64) @ ref.coef_.T + ref.intercept_
    ce = np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(y)), y]
    sklearn_objective = C * (w * ce).sum() + 0.5 * (ref.coef_**2).sum()
    weight, bias = multinomial.weights_from_sklearn(ref.coef_, ref.intercept_)
    X, Y = torch.from_numpy(x).double(), torch.from_numpy(y)
    ours = multinomial.objective_value(X, Y, 4, weight, bias, C, torch.from_numpy(w))
    assert ours * C * w.sum() == pytest.approx(sklearn_objective, rel=1e-12)


def test_integer_weights_count_as_repeated_rows():
    x, y = imbalanced_problem(300, 12, 3, seed=5)
    repeats = np.random.default_rng(0).integers(1, 4, len(y))
    X, Y = torch.from_numpy(x).double(), torch.from_numpy(y)
    weighted = multinomial.fit_path(X, Y, 3, [0.1, 3.0], tol=1e-9, max_iter=2000,
                                    sample_weight=torch.from_numpy(repeats.astype(np.float64)))
    index = torch.from_numpy(np.repeat(np.arange(len(y)), repeats))
    repeated = multinomial.fit_path(X[index], Y[index], 3, [0.1, 3.0], tol=1e-9, max_iter=2000)
    for a, b in zip(weighted, repeated):
        assert a.converged and b.converged
        np.testing.assert_allclose(a.weight.numpy(), b.weight.numpy(), atol=1e-6)
        np.testing.assert_allclose(a.bias.numpy(), b.bias.numpy(), atol=1e-6)
        assert a.objective == pytest.approx(b.objective, rel=1e-10)


def test_weighted_loss_slope_and_gradient_are_exact_where_probabilities_underflow():
    """Against autograd in float64: the weighted loss (with its -log_softmax fallback), its rate along the step
    direction and its gradient."""
    torch.manual_seed(1)
    n, d, k = 64, 8, 5
    x, y = torch.randn(n, d), torch.randint(0, k, (n,))
    weights = torch.rand(n) * 3
    problem = multinomial.MultinomialProblem(x, y, k, weights)
    theta, direction = torch.randn(problem.size) * 15, torch.randn(problem.size) * 8
    problem.set_logits(theta)
    problem.set_direction(direction)
    for t in (0.0, 0.7):
        point = (theta + t * direction).double().requires_grad_(True)
        w, b = point[: k * d].view(k, d), point[k * d :]
        ce = torch.nn.functional.cross_entropy(x.double() @ w.T + b, y, reduction="none")
        assert (ce > -math.log(multinomial.UNDERFLOW)).any()
        loss = (ce * weights.double()).sum() / weights.double().sum()
        (gradient,) = torch.autograd.grad(loss, point)
        assert problem.data_loss(t).item() == pytest.approx(loss.item(), rel=1e-5)
        assert problem.data_slope().item() == pytest.approx(torch.dot(gradient, direction.double()).item(), rel=1e-4)
        np.testing.assert_allclose(problem.data_gradient().numpy(), gradient.numpy(), atol=1e-6)


def test_without_weights_the_loss_slope_and_gradient_are_the_plain_means_bit_for_bit():
    """sample_weight None leaves the unweighted arithmetic as it was: mean, and sums divided by n."""
    torch.manual_seed(2)
    n, d, k = 200, 10, 6
    x, y = torch.randn(n, d), torch.randint(0, k, (n,))
    problem = multinomial.MultinomialProblem(x, y, k)
    theta, direction = torch.randn(problem.size), torch.randn(problem.size)
    problem.set_logits(theta)
    problem.set_direction(direction)
    loss = problem.data_loss(0.4)
    probs = torch.softmax(torch.add(problem.logits, problem.step_logits, alpha=0.4), dim=1)
    assert torch.equal(problem.probs, probs)
    assert torch.equal(loss, (-probs.view(-1)[problem.flat_target].log()).mean())
    target_rate = problem.step_logits.view(-1)[problem.flat_target].sum()
    rate = torch.dot(probs.view(-1), problem.step_logits.view(-1)) - target_rate
    assert torch.equal(problem.data_slope(), rate / n)
    residual = probs.clone()
    residual.view(-1)[problem.flat_target] -= 1.0
    expected = torch.cat([(residual.T @ x).view(-1), residual.sum(dim=0)]) / n
    assert torch.equal(problem.data_gradient(), expected)


def test_uniform_weights_give_the_unweighted_solution_at_C_times_the_weight():
    """As in sklearn, a weight of 2.5 on every row is C times 2.5."""
    x, y = imbalanced_problem(400, 16, 4, seed=6)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    plain = multinomial.fit_path(X, Y, 4, [0.1, 10.0], tol=1e-6, max_iter=1000)
    same = multinomial.fit_path(X, Y, 4, [0.1, 10.0], tol=1e-6, max_iter=1000, sample_weight=None)
    assert all(torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) for a, b in zip(plain, same))
    ones = multinomial.fit_path(X, Y, 4, [0.1, 10.0], tol=1e-6, max_iter=1000, sample_weight=torch.ones(400))
    heavy = multinomial.fit_path(X, Y, 4, [0.04, 4.0], tol=1e-6, max_iter=1000, sample_weight=torch.full((400,), 2.5))
    for a, b, c in zip(plain, ones, heavy):
        assert b.objective == pytest.approx(a.objective, rel=1e-6)
        assert c.objective == pytest.approx(a.objective, rel=1e-6)  # the same function: lam = 1 / (0.04 * 2.5 n)
        for other in (b, c):
            np.testing.assert_allclose(other.weight.numpy(), a.weight.numpy(), atol=2e-3 * a.weight.abs().max().item())


@pytest.mark.parametrize("weights, message", [
    (torch.full((10,), -1.0), ">= 0"), (torch.zeros(10), "not all 0"), (torch.ones(9), "shape"),
    (torch.tensor([float("nan")] * 10), "finite"),
])
def test_bad_sample_weights_are_refused(weights, message):
    x, y = torch.randn(10, 3), torch.arange(10) % 2
    with pytest.raises(ValueError, match=message):
        multinomial.objective_value(x, y, 2, torch.zeros(2, 3), torch.zeros(2), 1.0, weights)
    if weights.shape == (10,):
        with pytest.raises(ValueError, match=message):
            multinomial.fit_path(x, y, 2, [1.0], tol=1e-4, max_iter=10, sample_weight=weights)


# The protocol: class weights, k-fold choice of C, too few rows to validate.


def test_folds_are_stratified_like_sklearns_and_seeded():
    y = np.repeat(np.arange(6), [40, 13, 7, 3, 1, 2])
    folds = stratified_folds(y, 5, seed=4)
    counts = [np.bincount(y[folds == f], minlength=6).tolist() for f in range(5)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes with fewer rows than folds
        sklearn_counts = [np.bincount(y[test], minlength=6).tolist()
                          for _, test in StratifiedKFold(5).split(np.zeros(len(y)), y)]
    assert counts == sklearn_counts
    assert np.array_equal(folds, stratified_folds(y, 5, seed=4))
    assert not np.array_equal(folds, stratified_folds(y, 5, seed=5))
    with pytest.raises(ValueError, match="at least 2"):
        stratified_folds(y, 1, seed=0)


def reference_fold_scores(x, y, folds, Cs, class_weight):
    """sklearn's StandardScaler + LogisticRegression on each fold's other rows, macro-F1 on the fold: [folds, Cs]."""
    scores = np.zeros((folds.max() + 1, len(Cs)))
    for fold in range(folds.max() + 1):
        train, test = folds != fold, folds == fold
        scaler = StandardScaler().fit(x[train])
        for j, C in enumerate(Cs):
            model = LogisticRegression(C=C, l1_ratio=0.0, class_weight=class_weight, tol=1e-8, max_iter=10_000)
            model.fit(scaler.transform(x[train]).astype(np.float64), y[train])
            scores[fold, j] = f1_score(y[test], model.predict(scaler.transform(x[test])), average="macro")
    return scores


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_cv_folds_choose_the_C_with_the_best_mean_fold_score(class_weight):
    x, y = imbalanced_problem(300, 40, 4, seed=12, spread=3.0)
    Cs = [1e-4, 1e-2, 1.0, 100.0]
    clf = CLASSIFIERS.get("logreg")(Cs=Cs, cv_folds=4, class_weight=class_weight, seed=7, tol=1e-7, device="cpu")
    clf.fit(x, y)
    record = clf.summary()
    validation = record["validation"]
    assert validation["method"] == "4-fold" and len(validation["folds"]) == 4
    assert sum(f["n_val"] for f in validation["folds"]) == len(y)
    fold_scores = np.array([r["fold_scores"] for r in validation["per_C"]]).T
    np.testing.assert_allclose([r["score"] for r in validation["per_C"]], fold_scores.mean(axis=0), rtol=1e-12)
    reference = reference_fold_scores(x, y, stratified_folds(y, 4, seed=7), Cs, class_weight)
    np.testing.assert_allclose(fold_scores, reference, atol=0.02)
    means = reference.mean(axis=0)
    assert np.sort(means)[-1] - np.sort(means)[-2] > 0.02  # a clear winner, so the check below is not a coin toss
    assert record["C"] == Cs[int(np.argmax(means))]
    assert record["C_choice"] == "best mean macro_f1 over 4 stratified folds"


def test_cv_ties_go_to_the_smaller_C():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    x = (10.0 * np.eye(3)[y] + 0.1 * rng.standard_normal((60, 3))).astype(np.float32)  # every C separates them
    clf = CLASSIFIERS.get("logreg")(Cs=[0.01, 1.0, 100.0], cv_folds=3, device="cpu")
    clf.fit(x, y)
    assert [r["score"] for r in clf.summary()["validation"]["per_C"]] == [1.0, 1.0, 1.0]
    assert clf.summary()["C"] == 0.01


def test_class_weights_are_balanced_on_the_rows_of_every_fit(monkeypatch):
    """The fits that choose C (hold-out or each fold) and the refit each weight their own rows n / (K n_c)."""
    x, y = imbalanced_problem(400, 10, 5, seed=8)
    y = np.where(np.arange(len(y)) == 0, 9, y)  # a class with one row: absent from one fold's fit
    calls = []
    fit_path = multinomial.fit_path

    def spy(x, y, n_classes, Cs, **kwargs):
        calls.append((y.numpy().copy(), n_classes, kwargs["sample_weight"]))
        return fit_path(x, y, n_classes, Cs, **kwargs)

    monkeypatch.setattr(multinomial, "fit_path", spy)
    for cv_folds, n_fits in ((0, 2), (3, 4)):
        calls.clear()
        clf = CLASSIFIERS.get("logreg")(Cs=[0.1, 1.0], cv_folds=cv_folds, class_weight="balanced", device="cpu")
        clf.fit(x, y)
        assert len(calls) == n_fits
        assert len(calls[-1][0]) == len(y) and calls[-1][1] == 6  # the refit: every row, every class
        for targets, n_classes, weights in calls:
            counts = np.bincount(targets)
            assert len(counts) == n_classes and counts.min() > 0
            np.testing.assert_allclose(weights.numpy(), len(targets) / (n_classes * counts[targets]), rtol=1e-6)
    assert sorted(call[1] for call in calls[:3]) == [5, 6, 6]  # the fold holding class 9's row fits 5 classes
    calls.clear()
    CLASSIFIERS.get("logreg")(Cs=[0.1, 1.0], cv_folds=3, device="cpu").fit(x, y)
    assert all(weights is None for *_, weights in calls)


@pytest.mark.parametrize("cv_folds", [0, 5])
def test_one_row_per_class_fits_at_sklearns_default_C(cv_folds):
    x, y, *_ = protocol_data()
    one_each = np.array([np.flatnonzero(y == c)[0] for c in range(6)])
    clf = CLASSIFIERS.get("logreg")(cv_folds=cv_folds, device="cpu")
    clf.fit(x[one_each], y[one_each])
    record = clf.summary()
    assert record["C"] == 1.0 and "validation" not in record
    assert record["C_choice"] == "fixed: too few training rows per class to validate"
    assert np.array_equal(clf.predict(x[one_each])[0], y[one_each])


@pytest.mark.parametrize("labels, cv_folds, reason", [
    ([0, 1, 1, 1, 1], 2, "fixed: fold 0 would leave fewer than 2 classes to fit"),
    ([0, 0, 1], 5, "fixed: fewer training rows (3) than cv_folds (5)"),
])
def test_folds_that_cannot_validate_fall_back_to_sklearns_default_C(labels, cv_folds, reason):
    x, *_ = protocol_data()
    clf = CLASSIFIERS.get("logreg")(cv_folds=cv_folds, device="cpu")
    clf.fit(x[: len(labels)], np.array(labels))
    assert clf.summary()["C"] == 1.0 and clf.summary()["C_choice"] == reason


def test_two_rows_per_class_and_singleton_classes_work_with_folds():
    x, y, x_test, y_test = protocol_data()
    two_each = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(6)])
    clf = CLASSIFIERS.get("logreg")(cv_folds=5, class_weight="balanced", device="cpu")
    clf.fit(x[two_each], y[two_each])
    assert clf.summary()["C_choice"].startswith("best mean macro_f1 over 5")
    assert np.mean(clf.predict(x_test)[0] == y_test) > 0.3
    singleton = np.concatenate([y[:-1], [99]])
    clf = CLASSIFIERS.get("logreg")(Cs=[0.1, 1.0], cv_folds=5, device="cpu")
    clf.fit(x, singleton)
    folds = clf.summary()["validation"]["folds"]
    assert sorted(f["n_classes"] for f in folds) == [6, 7, 7, 7, 7] and 99 in clf.classes


@pytest.mark.parametrize("setting, message", [
    ({"cv_folds": 1}, "cv_folds must be 0 .* or an integer >= 2 .*, got 1"),
    ({"cv_folds": -3}, "cv_folds must be 0"),
    ({"cv_folds": 5.0}, "cv_folds must be 0"),
    ({"cv_folds": "5"}, "cv_folds must be 0"),
    ({"cv_folds": True}, "cv_folds must be 0"),
    ({"class_weight": "Balanced"}, "class_weight must be balanced or null .*, got 'Balanced'"),
    ({"class_weight": "None"}, "class_weight must be balanced or null"),
    ({"class_weight": {0: 2.0}}, "class_weight must be balanced or null"),
])
def test_bad_cv_folds_and_class_weight_settings_are_clear_errors(setting, message):
    with pytest.raises(ConfigError, match=f"classifier 'logreg': {message}"):
        CLASSIFIERS.get("logreg")(device="cpu", **setting)


def test_default_settings_are_no_weights_and_one_hold_out():
    params = LogRegParams()
    assert params.class_weight is None and params.cv_folds == 0
    assert LogRegParams(cv_folds=5, class_weight="balanced").cv_folds == 5
