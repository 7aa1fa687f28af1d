"""The whitened coordinates of biobench.classifiers.multinomial: same objective and optimum as sklearn's
LogisticRegression(lbfgs), on correlated features too, and fewer iterations there than in raw coordinates."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from biobench.classifiers import multinomial


def correlated_problem(n: int, d: int, n_classes: int, seed: int, decay: float = 1.5, centre: bool = True):
    """Gaussian clusters mixed by a random map whose singular values fall as j ** (-decay / 2): covariance
    eigenvalues spread over orders of magnitude, as with real embeddings. centre=False leaves an offset."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, d))
    y = rng.integers(0, n_classes, n)
    x = centres[y] + 1.4 * rng.standard_normal((n, d))
    left, _ = np.linalg.qr(rng.standard_normal((d, d)))
    right, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = x @ ((left * np.arange(1, d + 1) ** (-decay / 2)) @ right.T)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    if not centre:
        x = x + 3.0 * rng.standard_normal(d)
    return x.astype(np.float32), y.astype(np.int64)


def sklearn_fit(x, y, C):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return LogisticRegression(C=C, l1_ratio=0.0, solver="lbfgs", tol=1e-10, max_iter=100_000).fit(
            x.astype(np.float64), y
        )


def objective(x, y, n_classes, weight, bias, C) -> float:
    X, Y = torch.from_numpy(x).double(), torch.from_numpy(y)
    return multinomial.objective_value(X, Y, n_classes, weight.double(), bias.double(), C)


def assert_matches_sklearn(x, y, n_classes, solution, C):
    ref = sklearn_fit(x, y, C)
    ref_w, ref_b = multinomial.weights_from_sklearn(ref.coef_, ref.intercept_)
    f_ours = objective(x, y, n_classes, solution.weight, solution.bias, C)
    f_ref = objective(x, y, n_classes, ref_w, ref_b, C)
    assert f_ours >= f_ref * (1 - 1e-6)  # sklearn's float64 fit at tol 1e-10 is the optimum
    assert f_ours - f_ref <= 1e-4 * f_ref
    pred = multinomial.predict(torch.from_numpy(x), solution.weight, solution.bias)[0]
    assert np.mean(pred == ref.predict(x)) > 0.99


@pytest.mark.parametrize("n_classes", [6, 2])
@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("whiten", [True, False])
def test_correlated_features_reach_sklearns_optimum(n_classes, C, whiten):
    x, y = correlated_problem(800, 24, n_classes, seed=n_classes)
    ours = multinomial.fit_path(
        torch.from_numpy(x), torch.from_numpy(y), n_classes, [C], tol=1e-6, max_iter=2000, whiten=whiten
    )[0]
    assert ours.stop in ("gtol", "line_search")
    assert_matches_sklearn(x, y, n_classes, ours, C)


@pytest.mark.parametrize("n_classes", [4, 2])
def test_uncentred_features_reach_sklearns_optimum(n_classes):
    """The bias moves with the change of variables (b = c - W m): features far from zero mean still fit."""
    x, y = correlated_problem(600, 16, n_classes, seed=7, centre=False)
    ours = multinomial.fit_path(torch.from_numpy(x), torch.from_numpy(y), n_classes, [1.0], tol=1e-6, max_iter=2000)[0]
    assert_matches_sklearn(x, y, n_classes, ours, 1.0)


def test_whitening_needs_fewer_iterations_on_correlated_features():
    x, y = correlated_problem(1500, 48, 8, seed=3, decay=3.0)  # raw: 155 iterations, whitened: 28
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    white = multinomial.fit_path(X, Y, 8, [1.0], tol=1e-6, max_iter=2000)[0]
    raw = multinomial.fit_path(X, Y, 8, [1.0], tol=1e-6, max_iter=2000, whiten=False)[0]
    assert white.iterations < raw.iterations / 3
    f_white = objective(x, y, 8, white.weight, white.bias, 1.0)
    f_raw = objective(x, y, 8, raw.weight, raw.bias, 1.0)
    assert f_white <= f_raw * (1 + 1e-6)


@pytest.mark.parametrize("n_classes", [5, 2])
def test_warm_path_across_rescaled_coordinates_matches_sklearn(n_classes):
    """Each C has its own r = (sigma + lam / a)^(-1/2); the memory carried along the path is rescaled to it."""
    x, y = correlated_problem(800, 24, n_classes, seed=11)
    Cs = [1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]
    path = multinomial.fit_path(torch.from_numpy(x), torch.from_numpy(y), n_classes, Cs, tol=1e-6, max_iter=2000)
    for solution in path:
        assert solution.stop in ("gtol", "line_search")
        assert_matches_sklearn(x, y, n_classes, solution, solution.C)


def test_float64_whitened_solution_is_sklearns_to_solver_precision():
    x, y = correlated_problem(600, 16, 4, seed=5)
    ref = sklearn_fit(x, y, 1.0)
    ours = multinomial.fit_path(
        torch.from_numpy(x).double(), torch.from_numpy(y), 4, [1.0], tol=1e-9, max_iter=5000
    )[0]
    assert ours.converged
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(ours.weight.numpy(), ref.coef_, atol=1e-5 * scale)
    np.testing.assert_allclose(ours.bias.numpy(), ref.intercept_, atol=1e-5 * max(1.0, np.abs(ref.intercept_).max()))
