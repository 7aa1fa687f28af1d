"""The bfloat16 first phase of biobench.classifiers.multinomial: its result meets the float32 stopping rule, reaches
sklearn's optimum, and never takes more than max_iter iterations in all; and the fused softmax loss is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biobench import precision
from biobench.classifiers import multinomial
from biobench.classifiers.base import bfloat16_is_fast
from biobench.classifiers.logreg import LogisticRegression, LogRegParams
from biobench.errors import ConfigError
from test_multinomial_whitening import assert_matches_sklearn, correlated_problem


def float64_gradient_max(x, y, n_classes, weight, bias, C) -> float:
    """Largest |entry| of the gradient of mean CE + ||W||^2 / (2 C n), by autograd in float64."""
    X, Y = torch.from_numpy(x).double(), torch.from_numpy(y)
    w = weight.double().clone().requires_grad_(True)
    b = bias.double().clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(X @ w.T + b, Y) + (w * w).sum() / (2 * C * len(y))
    loss.backward()
    return max(w.grad.abs().max().item(), b.grad.abs().max().item())


@pytest.mark.parametrize("n_classes", [7, 2])
@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_bfloat16_phase_reaches_sklearns_optimum(n_classes, C):
    x, y = correlated_problem(1200, 32, n_classes, seed=20 + n_classes)
    solution = multinomial.fit_path(
        torch.from_numpy(x), torch.from_numpy(y), n_classes, [C], tol=1e-6, max_iter=2000, bfloat16_phase=True
    )[0]
    assert solution.bfloat16_iterations > 0
    assert solution.iterations >= solution.bfloat16_iterations
    assert solution.stop in ("gtol", "line_search")
    assert_matches_sklearn(x, y, n_classes, solution, C)


def test_the_float32_stopping_rule_decides_the_end():
    """The reported gradient is float32's, not bfloat16's, and it is what tol bounds."""
    x, y = correlated_problem(1500, 40, 9, seed=4)
    tol = 1e-5
    solution = multinomial.fit_path(
        torch.from_numpy(x), torch.from_numpy(y), 9, [1.0], tol=tol, max_iter=2000, bfloat16_phase=True
    )[0]
    assert solution.stop == "gtol"
    assert solution.grad_max <= tol
    exact = float64_gradient_max(x, y, 9, solution.weight, solution.bias, 1.0)
    assert exact <= 1.5 * tol  # float32 rounding of the gradient itself is the only slack


def test_warm_path_with_bfloat16_phase_matches_sklearn_at_every_C():
    x, y = correlated_problem(900, 24, 5, seed=31)
    Cs = [1e-3, 1e-1, 1.0, 10.0, 100.0]
    path = multinomial.fit_path(
        torch.from_numpy(x), torch.from_numpy(y), 5, Cs, tol=1e-6, max_iter=2000, bfloat16_phase=True
    )
    for solution in path:
        assert solution.stop in ("gtol", "line_search")
        assert_matches_sklearn(x, y, 5, solution, solution.C)


def test_a_start_within_the_rounding_noise_skips_the_bfloat16_phase():
    x, y = correlated_problem(800, 24, 6, seed=9)
    first, second = multinomial.fit_path(
        torch.from_numpy(x), torch.from_numpy(y), 6, [1.0, 1.0 + 1e-6], tol=1e-6, max_iter=2000, bfloat16_phase=True
    )
    assert first.bfloat16_iterations > 0
    assert second.bfloat16_iterations == 0 and second.stop in ("gtol", "line_search")


@pytest.mark.parametrize("max_iter", [1, 4])
def test_max_iter_bounds_both_phases_together(max_iter):
    x, y = correlated_problem(800, 24, 6, seed=8)
    solution = multinomial.fit_path(
        torch.from_numpy(x), torch.from_numpy(y), 6, [1.0], tol=1e-8, max_iter=max_iter, bfloat16_phase=True
    )[0]
    assert solution.iterations <= max_iter
    assert solution.bfloat16_iterations <= max_iter
    assert solution.stop == "max_iter"
    assert solution.grad_max > 1e-8


def test_float64_rows_polish_in_float64():
    x, y = correlated_problem(600, 16, 4, seed=5)
    solution = multinomial.fit_path(
        torch.from_numpy(x).double(), torch.from_numpy(y), 4, [1.0], tol=1e-9, max_iter=5000, bfloat16_phase=True
    )[0]
    assert solution.converged and solution.weight.dtype == torch.float64
    assert float64_gradient_max(x, y, 4, solution.weight, solution.bias, 1.0) <= 1e-9 * 1.01


def test_softmax_loss_is_exact_where_target_probabilities_underflow():
    """Targets whose softmax probability is below float32's range take -log_softmax directly."""
    torch.manual_seed(0)
    n, k = 64, 5
    problem = multinomial.MultinomialProblem(torch.randn(n, 8), torch.randint(0, k, (n,)), k)
    problem.logits.copy_(torch.randn(n, k) * 60)
    problem.step_logits.copy_(torch.randn(n, k) * 30)
    for t in (0.0, 0.7):
        z = (problem.logits + t * problem.step_logits).double()
        expected = torch.nn.functional.cross_entropy(z, problem.y).item()
        assert (torch.softmax(z, 1).gather(1, problem.y[:, None]) < multinomial.UNDERFLOW).any()
        assert problem.data_loss(t).item() == pytest.approx(expected, rel=1e-6)
        np.testing.assert_allclose(problem.probs.numpy(), torch.softmax(z, 1).numpy(), atol=1e-6)


def test_logreg_protocol_records_and_validates_the_phase():
    x, y = correlated_problem(400, 12, 3, seed=2)
    for setting, expected in (("auto", bfloat16_is_fast(torch.device("cpu"))), (True, True), (False, False)):
        model = LogisticRegression(device="cpu", Cs=[1.0], bfloat16_phase=setting)
        model.fit(x, y)
        record = model.summary()
        assert record["bfloat16_phase"] is expected
        assert (record["refit"]["bfloat16_iterations"] > 0) is expected
    with pytest.raises(ConfigError, match="bfloat16_phase must be auto, true or false, got 'yes'"):
        LogRegParams(bfloat16_phase="yes")


def test_bfloat16_is_fast_follows_the_cpu_capabilities(monkeypatch):
    for limit in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(limit, raising=False)
    capabilities = torch.cpu.get_capabilities()
    expected = bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    assert bfloat16_is_fast(torch.device("cpu")) is (expected and torch.backends.mkldnn.is_available())
    assert bfloat16_is_fast(torch.device("meta")) is False


def test_probe_skips_the_bfloat16_phase_where_onednn_may_not_use_native_bfloat16(monkeypatch):
    """The probe and the embeddings share one decision (biobench/precision.py): an AVX2-only CPU, emulated by
    limiting oneDNN, gets no bfloat16 phase."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert bfloat16_is_fast(torch.device("cpu")) is False
    limited = precision.cpu_hardware()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")  # oneDNN reads it once: fitting with it set would limit later tests too
    monkeypatch.setattr(precision, "cpu_hardware", lambda: limited)
    x, y = correlated_problem(400, 12, 3, seed=2)
    model = LogisticRegression(device="cpu", Cs=[1.0], bfloat16_phase="auto")
    model.fit(x, y)
    assert model.summary()["bfloat16_phase"] is False
