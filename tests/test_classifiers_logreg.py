"""The torch L-BFGS solver against sklearn's LogisticRegression(lbfgs), and the "logreg" protocol around it."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from biobench.classifiers import CLASSIFIERS, multinomial
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
    with pytest.raises(ConfigError, match="single training row"):
        CLASSIFIERS.get("logreg")(device="cpu").fit(x[:5], np.arange(5, dtype=np.int64))
