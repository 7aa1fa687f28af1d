"""L2-regularised multinomial logistic regression, the objective of sklearn's LogisticRegression(solver="lbfgs"),
solved by full-batch L-BFGS in torch (any device), with a warm-started path over C.

sklearn minimises C * sum_i CE_i + ||W||^2 / 2 (intercept not penalised). Divided by C n that is
    mean_i CE_i + lam / 2 * ||W||^2,   lam = 1 / (C n),
the form sklearn's own solver works on, so its `tol` (bound on the largest gradient entry) means the same here.
With sample weights w_i (sklearn's sample_weight, or class_weight turned into one), sklearn minimises
C * sum_i w_i CE_i + ||W||^2 / 2 and works on it divided by C sum_i w_i: the mean becomes the weighted mean
sum_i w_i CE_i / sum_i w_i and n becomes sum_i w_i in lam. Balanced class weights sum to n, so for them only the
mean changes. The solver rescales the weights to mean 1 and divides its sums by n as it does without weights, so
that uniform weights compute exactly what no weights do (bfloat16 rounding included).
With two classes sklearn fits one weight vector (binomial loss); here row 0 of W and b is pinned at zero, which is
the same model and objective.

Three things make it cheap. Logits are linear in the parameters, so after one matrix product for a search
direction every line-search trial is elementwise work (one fused softmax pass): an iteration costs two matrix products
(n x d x K) however many trials it takes, where scipy's L-BFGS-B (sklearn) pays two per trial. The L-BFGS memory lives
in whitened coordinates (class Whitening): W = V diag(r) U^T, b = c - W m, with U, sigma the eigenvectors and
eigenvalues of the rows' covariance (one d x d eigendecomposition per path), m their mean and
r = (sigma + lam / a)^(-1/2), a = (1 - 1/K) / K.
Real embeddings are strongly correlated (covariance eigenvalues falling like 1 / j); in raw coordinates that makes the
Hessian ill-conditioned and L-BFGS slow (3x more iterations, or max_iter, on such features), whitened it does not.
The objective, its penalty ||W||^2 and the optimum are unchanged: only the coordinates of the search are. And the
penalty's Hessian in these coordinates is diagonal (lam r^2 per column of V), so when the path moves to the next C
the stored curvature pairs stay exact after rescaling the columns to the new r and adding the penalty's change
to each y: the sweep continues with its L-BFGS memory instead of restarting.

float32 is enough: near the optimum, rounding hides the objective's decrease before the gradient meets `tol`, so
the line search then judges steps by the slope along the line alone, which convexity makes sufficient.

A fourth is optional. With `bfloat16_phase`, each C is solved in two phases. The first runs the two matrix
products in bfloat16 (rows and parameters rounded to 8 bits of mantissa, products accumulated in float32), twice as
fast on CPUs with AVX512-BF16 or AMX and many times faster on GPUs with tensor cores; everything else stays float32.
Its gradient's rounding error is measured against the float32 gradient at the starting point, and the phase runs
until its gradient meets the larger of `tol` and five times that error (or its line search finds no step). The error
shrinks with the residuals, so it is measured again there, from float32 logits and gradient, and the phase goes on
while the gradient is still above the new bound. The second phase recomputes the logits and the gradient in
float32 from the same parameters and goes on with L-BFGS (same memory) until the float32 gradient meets `tol`: the
stopping rule, and so the accuracy of the result, are those of the float32 solver. From a cold start the first phase
takes most of the iterations; along a warm-started path, about half.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped

from biobench.classifiers.geometry import best_per_row

HISTORY = 40  # L-BFGS memory (sklearn's scipy uses 10); a longer one took 15-30% fewer iterations over a C path
WOLFE_DECREASE, WOLFE_CURVATURE = 1e-4, 0.9
MAX_TRIALS = 20  # line-search trials per iteration
NOISE_MARGIN = 5.0  # the bfloat16 phase's stop, in units of its gradient's rounding error (2 and 20 were slower)
UNDERFLOW = 1e-30  # softmax probabilities below this lose digits (float32's normal range ends at 1.2e-38)


@dataclass(frozen=True)
class Solution:
    C: float
    weight: torch.Tensor  # [K, d]
    bias: torch.Tensor  # [K]
    objective: float  # (weighted) mean cross-entropy + lam / 2 ||W||^2; sklearn's objective is this / lam
    grad_max: float  # largest |entry| of the gradient of `objective`, the quantity `tol` bounds
    iterations: int  # both phases
    bfloat16_iterations: int  # of which with bfloat16 matrix products
    evaluations: int  # loss evaluations, line-search trials included (each is elementwise work, no matmul)
    stop: str  # "gtol" (converged), "max_iter" or "line_search" (no step found: the precision floor)
    seconds: float

    @property
    def converged(self) -> bool:
        return self.stop == "gtol"


class MultinomialProblem:
    """Mean softmax cross-entropy of a linear model on fixed rows, or its mean weighted by `sample_weight`; holds the
    n x K buffers the solver reuses."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int, sample_weight: torch.Tensor | None = None):
        n, d = x.shape
        self.x, self.y, self.n, self.d, self.n_classes = x, y, n, d, n_classes
        self.total_weight = float(n)  # what sklearn's penalty is scaled by: lam = 1 / (C * total_weight)
        self.row_weight: torch.Tensor | None = None  # w_i rescaled to mean 1, n w_i / sum_j w_j; None: all 1
        if sample_weight is not None:
            self.total_weight = sample_weight.sum(dtype=torch.float64).item()
            self.row_weight = (sample_weight.double() * (n / self.total_weight)).to(x.dtype)
        self.n_weights = n_classes * d
        self.size = self.n_weights + n_classes
        self.pinned = n_classes == 2
        self.flat_target = torch.arange(n, device=x.device) * n_classes + y
        self.logits = torch.empty(n, n_classes, dtype=x.dtype, device=x.device)
        self.step_logits = torch.empty_like(self.logits)  # the logits' rate of change along the search direction
        # step_logits, each row times its weight (without weights: step_logits itself), and its sum at the targets
        self.slope_logits = self.step_logits if self.row_weight is None else torch.empty_like(self.logits)
        self.target_rate = torch.zeros((), dtype=x.dtype, device=x.device)
        self.probs = torch.empty_like(self.logits)
        self.x_bfloat16: torch.Tensor | None = None  # while set, the matrix products read these rows in bfloat16
        self.low: torch.Tensor | None = None  # their n x K operand or result in bfloat16, allocated once

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return theta[: self.n_weights].view(self.n_classes, self.d), theta[self.n_weights :]

    def set_logits(self, theta: torch.Tensor) -> None:
        self._linear(theta, out=self.logits)

    def set_direction(self, direction: torch.Tensor) -> None:
        self._linear(direction, out=self.step_logits)
        if self.row_weight is not None:
            torch.mul(self.step_logits, self.row_weight[:, None], out=self.slope_logits)
        self.target_rate = self.slope_logits.view(-1)[self.flat_target].sum()

    def use_bfloat16(self, x_bfloat16: torch.Tensor | None) -> None:
        """Run the matrix products on these rows in bfloat16, or (None) on x in its own dtype."""
        self.x_bfloat16 = x_bfloat16
        if x_bfloat16 is not None and self.low is None:
            self.low = torch.empty_like(self.logits, dtype=torch.bfloat16)

    def _linear(self, theta: torch.Tensor, out: torch.Tensor) -> None:
        weight, bias = self.split(theta)
        if self.x_bfloat16 is None:
            torch.addmm(bias, self.x, weight.T, out=out)
            return
        torch.addmm(bias.to(torch.bfloat16), self.x_bfloat16, weight.T.to(torch.bfloat16), out=self.low)
        out.copy_(self.low)

    def data_loss(self, t: float) -> torch.Tensor:
        """(Weighted) mean cross-entropy at logits + t * step_logits; leaves the softmax in `probs`."""
        p = self.probs
        if t == 0.0:
            z = self.logits
        else:
            z = torch.add(self.logits, self.step_logits, alpha=t, out=p)
        torch.ops.aten._softmax.out(z, 1, False, out=p)  # one fused pass (a separate exp of log-softmax: 4x slower)
        target = p.view(-1)[self.flat_target]
        loss = -target.log()
        lost = torch.nonzero(target < UNDERFLOW).view(-1)
        if len(lost):  # the target's probability is too small for its log to be exact: -log_softmax directly
            rows = self.logits[lost] + t * self.step_logits[lost]
            loss[lost] = torch.logsumexp(rows, dim=1) - rows.gather(1, self.y[lost, None]).view(-1)
        return loss.mean() if self.row_weight is None else torch.dot(loss, self.row_weight) / self.n

    def data_slope(self) -> torch.Tensor:
        """d data_loss(t) / dt at the t of the last data_loss(), along the last set_direction()."""
        return (torch.dot(self.probs.view(-1), self.slope_logits.view(-1)) - self.target_rate) / self.n

    def step(self, t: float) -> None:
        self.logits.add_(self.step_logits, alpha=t)

    def data_gradient(self) -> torch.Tensor:
        """Gradient of the (weighted) mean cross-entropy at the point of the last data_loss(); consumes `probs`."""
        residual = self.probs
        residual.view(-1)[self.flat_target] -= 1.0
        if self.row_weight is not None:
            residual.mul_(self.row_weight[:, None])
        grad = torch.empty(self.size, dtype=self.x.dtype, device=self.x.device)
        grad_w, grad_b = self.split(grad)
        if self.x_bfloat16 is None:
            torch.mm(residual.T, self.x, out=grad_w)
        else:
            grad_w.copy_(torch.mm(self.low.copy_(residual).T, self.x_bfloat16))
        torch.sum(residual, dim=0, out=grad_b)
        grad.div_(self.n)
        if self.pinned:
            grad_w[0].zero_()
            grad_b[0].zero_()
        return grad


class Whitening:
    """The coordinates the solver works in: W = V diag(r) U^T, b = c - W m, with m the rows' mean and U, sigma the
    eigenvectors and eigenvalues of their covariance S, r = (sigma + mu)^(-1/2). The rows V sees, (x - m) U diag(r),
    are then roughly white, whatever the correlation of the features. The objective and its penalty stay those of
    theta = (W, b); only the L-BFGS memory lives in (V, c). mu = lam / a, a = (1 - 1/K) / K the softmax curvature at
    the start: where the penalty outweighs the data (sigma_j a < lam), whitening would spread the penalty's own
    curvature lam r_j^2, so r_j levels off there. `enabled=False` keeps U = I, r = 1, m = 0 (raw coordinates)."""

    def __init__(self, problem: MultinomialProblem, enabled: bool, max_rows: int = 20_000):
        x = problem.x
        self.problem, self.enabled = problem, enabled
        self.curvature = (1.0 - 1.0 / problem.n_classes) / problem.n_classes
        self.r: torch.Tensor | None = None
        if not enabled:
            return
        rows = x[:: max(1, math.ceil(x.shape[0] / max_rows))]  # the covariance of a subsample: any L is exact
        mean = rows.mean(dim=0, dtype=torch.float64)
        centred = rows - mean.to(x.dtype)
        eigval, eigvec = torch.linalg.eigh((centred.T @ centred).double() / rows.shape[0])
        self.sigma = eigval.clamp_min(0.0)
        self.U, self.mean = eigvec.to(x.dtype), mean.to(x.dtype)

    def set_l2(self, lam: float) -> torch.Tensor | None:
        """Coordinates for L2 strength lam. Returns r_old / r_new per column (None if unchanged or the first):
        a step's V columns scale by it, a gradient's by its inverse."""
        if not self.enabled:
            return None
        r = (self.sigma + lam / self.curvature).rsqrt().to(self.U.dtype)
        ratio = None if self.r is None else self.r / r
        self.r = r
        return ratio

    def l2_diagonal(self) -> torch.Tensor | None:
        """The penalty ||W||^2 / 2's Hessian in (V, c), per column of V: r^2 (None: the identity)."""
        return None if not self.enabled else self.r.square()

    def direction(self, phi: torch.Tensor) -> torch.Tensor:
        """A step in (V, c) as a step in theta = (W, b)."""
        if not self.enabled:
            return phi
        p = self.problem
        out = torch.empty_like(phi)
        v, c = p.split(phi)
        w, b = p.split(out)
        torch.mm(v * self.r, self.U.T, out=w)
        torch.addmv(c, w, self.mean, alpha=-1.0, out=b)
        return out

    def gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """A gradient in theta = (W, b) as one in (V, c): G_V = (G_W - g_b m^T) U diag(r), g_c = g_b."""
        if not self.enabled:
            return grad
        p = self.problem
        out = torch.empty_like(grad)
        gw, gb = p.split(grad)
        gv, gc = p.split(out)
        torch.mm(torch.addr(gw, gb, self.mean, alpha=-1.0), self.U, out=gv)
        gv.mul_(self.r)
        gc.copy_(gb)
        return out


class _Memory:
    """L-BFGS curvature pairs (s, y), kept as rows of one [2m, p] buffer (S above Y) with their Gram matrix on the
    host. The two-loop recursion then runs on m-vectors: a direction costs two matrix-vector products instead of
    4m vector operations, which matters for kernel launches on a GPU and thread barriers on a busy CPU."""

    def __init__(self, size: int, length: int, dtype: torch.dtype, device: torch.device):
        self.size = size
        self.rows = torch.zeros(2 * size, length, dtype=dtype, device=device)
        self.gram = np.zeros((2 * size, 2 * size))  # rows @ rows.T; slot i: s at i, y at size + i
        self.order: list[int] = []  # slots in use, oldest first

    def __len__(self) -> int:
        return len(self.order)

    def clear(self) -> None:
        self.order = []

    def push(self, s: torch.Tensor, y: torch.Tensor) -> None:
        sy, yy = torch.stack([torch.dot(s, y), torch.dot(y, y)]).tolist()
        if not sy > 1e-10 * yy:  # no positive curvature along s (rounding): the pair would break the update
            return
        if len(self.order) == self.size:
            slot = self.order.pop(0)
        else:
            slot = min(set(range(self.size)) - set(self.order))
        m = self.size
        self.rows[slot].copy_(s)
        self.rows[m + slot].copy_(y)
        products = (self.rows @ self.rows[[slot, m + slot]].T).double().cpu().numpy()
        for column, index in ((0, slot), (1, m + slot)):
            self.gram[:, index] = self.gram[index, :] = products[:, column]
        self.order.append(slot)

    def change_objective(self, delta_lam: float, n_weights: int, d: int, ratio, l2_diagonal) -> None:
        """Keep the pairs exact when the L2 strength changes by delta_lam and the coordinates' columns are rescaled
        by `ratio` (None: unchanged): s_V *= ratio, y_V /= ratio, then y += delta_lam * H_l2 s, where the penalty's
        Hessian H_l2 is diagonal, `l2_diagonal` per column of V (None: the identity)."""
        m = self.size
        s_w = self.rows[:m, :n_weights].view(m, -1, d)
        y_w = self.rows[m:, :n_weights].view(m, -1, d)
        if ratio is not None:
            s_w.mul_(ratio)
            y_w.div_(ratio)
        y_w.add_(s_w if l2_diagonal is None else s_w * l2_diagonal, alpha=delta_lam)
        self.gram = (self.rows @ self.rows.T).double().cpu().numpy()
        self.order = [i for i in self.order if self.gram[i, m + i] > 1e-10 * self.gram[m + i, m + i]]

    def descent_direction(self, grad: torch.Tensor) -> torch.Tensor:
        """-H grad by the two-loop recursion, written on the coefficients of grad, the s's and the y's."""
        m, order = self.size, self.order
        dots = (self.rows @ grad).double().cpu().numpy()  # s_i.g, then y_i.g
        sy, yy = self.gram[:m, m:], self.gram[m:, m:]  # sy[i, j] = s_i.y_j
        alpha = np.zeros(m)
        for i in reversed(order):  # q = g - sum_{j newer than i} alpha_j y_j;  alpha_i = s_i.q / s_i.y_i
            alpha[i] = (dots[i] - sy[i] @ alpha) / sy[i, i]
        newest = order[-1]
        gamma = sy[newest, newest] / yy[newest, newest]
        beta = np.zeros(m)
        step = np.zeros(m)  # r = gamma q + sum_{i older} step_i s_i, step_i = alpha_i - beta_i
        for i in order:
            y_dot_r = gamma * (dots[m + i] - yy[i] @ alpha) + sy[:, i] @ step
            beta[i] = y_dot_r / sy[i, i]
            step[i] = alpha[i] - beta[i]
        coefficients = np.concatenate([-step, gamma * alpha])  # -r = -gamma g + gamma sum alpha y - sum step s
        direction = torch.from_numpy(coefficients).to(grad) @ self.rows
        return direction.add_(grad, alpha=-gamma)


@jaxtyped(typechecker=beartype)
def fit_path(
    x: Float[torch.Tensor, "n d"],
    y: Int[torch.Tensor, " n"],
    n_classes: int,
    Cs: list[float],
    *,
    tol: float,
    max_iter: int,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    whiten: bool = True,
    bfloat16_phase: bool = False,
    sample_weight: Float[torch.Tensor, " n"] | None = None,
) -> list[Solution]:
    """Solve for each C in increasing order (strongest regularisation first), each warm-started from the last.
    Labels are 0..n_classes-1. `init` = (weight [K, d], bias [K]) starts the first C. Runs on x's device and dtype;
    the rows stay put and every buffer is allocated once, outside the loop over C. `whiten=False` searches in the
    raw coordinates instead of the whitened ones (same objective and optimum; for comparison). `bfloat16_phase`
    starts each C with bfloat16 matrix products (module docstring); `max_iter` bounds both phases together.
    `sample_weight` (>= 0, on x's device) weights each row's cross-entropy as sklearn's sample_weight does."""
    if n_classes < 2:
        raise ValueError(f"logistic regression needs at least 2 classes, got {n_classes}")
    problem = MultinomialProblem(x, y, n_classes, _checked_weights(sample_weight, x))
    theta = torch.zeros(problem.size, dtype=x.dtype, device=x.device)
    if init is not None:
        weight, bias = problem.split(theta)
        weight.copy_(init[0])
        bias.copy_(init[1])
        if problem.pinned:  # the binary model is only defined up to a shift of both rows
            weight.sub_(weight[0].clone())
            bias.sub_(bias[0].clone())
        problem.set_logits(theta)
    else:
        problem.logits.zero_()
    data_loss = problem.data_loss(0.0)
    data_grad = problem.data_gradient()
    memory = _Memory(HISTORY, problem.size, x.dtype, x.device)
    whitening = Whitening(problem, whiten)
    x_bfloat16 = x.to(torch.bfloat16) if bfloat16_phase else None
    solutions = []
    lam_prev = None
    for C in sorted(Cs):
        start = time.perf_counter()
        lam = 1.0 / (C * problem.total_weight)
        ratio = whitening.set_l2(lam)
        if lam_prev is not None:
            memory.change_objective(lam - lam_prev, problem.n_weights, problem.d, ratio, whitening.l2_diagonal())
        lam_prev = lam
        rough = dict(iterations=0, evaluations=0)
        while x_bfloat16 is not None and rough["iterations"] < max_iter:
            rough_tol = _bfloat16_tol(problem, x_bfloat16, theta, data_grad, lam, tol)
            if rough_tol is None:
                break
            problem.use_bfloat16(x_bfloat16)
            data_loss, data_grad, stage = _minimise(problem, whitening, theta, data_loss, data_grad, lam, memory,
                                                    rough_tol, max_iter - rough["iterations"])
            problem.use_bfloat16(None)
            problem.set_logits(theta)  # in float32, leaving behind the rounding the bfloat16 steps added up
            data_loss = problem.data_loss(0.0)
            data_grad = problem.data_gradient()
            rough["iterations"] += stage["iterations"]
            rough["evaluations"] += stage["evaluations"]
            if stage["stop"] != "gtol" or rough_tol <= tol:
                break
        data_loss, data_grad, counts = _minimise(problem, whitening, theta, data_loss, data_grad, lam, memory, tol,
                                                 max_iter - rough["iterations"])
        counts["iterations"] += rough["iterations"]
        counts["evaluations"] += rough["evaluations"]
        weight, bias = problem.split(theta.clone())
        solutions.append(
            Solution(
                C=float(C),
                weight=weight,
                bias=bias,
                objective=_objective(data_loss, theta, lam, problem.n_weights),
                bfloat16_iterations=rough["iterations"],
                **counts,
                seconds=time.perf_counter() - start,
            )
        )
    return solutions


def _bfloat16_tol(problem, x_bfloat16, theta, data_grad, lam, tol) -> float | None:
    """Where the bfloat16 phase should stop: NOISE_MARGIN times the rounding error of its gradient, measured against
    `data_grad`, the float32 gradient at theta (or tol, if larger). None: theta is already that close to the
    optimum, so the phase has nothing to do."""
    problem.data_loss(0.0)
    problem.use_bfloat16(x_bfloat16)
    rough_grad = problem.data_gradient()
    problem.use_bfloat16(None)
    rough_tol = max(tol, NOISE_MARGIN * (rough_grad - data_grad).abs().max().item())
    grad_max = _with_l2(data_grad, theta, lam, problem.n_weights).abs().max().item()
    return rough_tol if grad_max > rough_tol else None


def _objective(data_loss: torch.Tensor, theta: torch.Tensor, lam: float, n_weights: int) -> float:
    return data_loss.item() + 0.5 * lam * torch.dot(theta[:n_weights], theta[:n_weights]).item()


def _with_l2(data_grad: torch.Tensor, theta: torch.Tensor, lam: float, n_weights: int) -> torch.Tensor:
    """The gradient of the objective from that of the mean cross-entropy: lam * W added to the weights' part."""
    grad = data_grad.clone()
    grad[:n_weights].add_(theta[:n_weights], alpha=lam)
    return grad


def _minimise(problem, whitening, theta, data_loss, data_grad, lam, memory, tol, max_iter):
    """L-BFGS from theta (updated in place) on (weighted) mean CE + lam/2 ||W||^2, its memory in the whitened
    coordinates.
    Returns the data loss and gradient at the end point, and the other facts for Solution."""
    nw = problem.n_weights
    grad = _with_l2(data_grad, theta, lam, nw)
    grad_phi = whitening.gradient(grad)
    f = _objective(data_loss, theta, lam, nw)
    grad_max = grad.abs().max().item()
    iterations = evaluations = 0
    stop = "gtol" if grad_max <= tol else "max_iter"
    while stop == "max_iter" and iterations < max_iter:
        iterations += 1
        step, slope, t = None, 0.0, 1.0
        if len(memory):
            step = memory.descent_direction(grad_phi)
            slope = torch.dot(grad_phi, step).item()
        if step is None or slope >= 0:  # no memory yet, or it no longer gives a descent direction
            memory.clear()
            step = -grad_phi
            slope = -torch.dot(grad_phi, grad_phi).item()
            t = 1.0 / math.sqrt(-slope)  # a first step of unit length, as scipy's L-BFGS-B takes
        direction = whitening.direction(step)
        problem.set_direction(direction)
        w, dw = theta[:nw], direction[:nw]
        ww, wd, dd = torch.stack([torch.dot(w, w), torch.dot(w, dw), torch.dot(dw, dw)]).tolist()

        def along(t: float) -> tuple[float, float, torch.Tensor]:
            loss = problem.data_loss(t)
            value, slope_t = torch.stack([loss, problem.data_slope()]).tolist()
            value += 0.5 * lam * (ww + 2 * t * wd + t * t * dd)
            slope_t += lam * (wd + t * dd)
            return value, slope_t, loss

        resolution = torch.finfo(theta.dtype).eps * abs(f)
        found = _line_search(along, f, slope, t, resolution)
        evaluations += found.trials
        if found.t == 0.0:
            stop = "line_search"
            break
        t = found.t
        theta.add_(direction, alpha=t)
        problem.step(t)
        data_loss = found.loss
        data_grad = problem.data_gradient()
        grad = _with_l2(data_grad, theta, lam, nw)
        new_grad_phi = whitening.gradient(grad)
        memory.push(step.mul_(t), new_grad_phi - grad_phi)
        grad_phi, f = new_grad_phi, found.value
        grad_max = grad.abs().max().item()
        if grad_max <= tol:
            stop = "gtol"
    return data_loss, data_grad, dict(grad_max=grad_max, iterations=iterations, evaluations=evaluations, stop=stop)


@dataclass(frozen=True)
class _Found:
    t: float  # 0.0 = no acceptable step
    value: float
    loss: torch.Tensor | None
    trials: int


def _line_search(along, f0: float, slope0: float, t: float, resolution: float) -> _Found:
    """A step satisfying the strong Wolfe conditions: judged on objective values, or on slopes alone where
    rounding hides the objective's decrease (near the optimum in float32)."""
    found = _strong_wolfe(along, f0, slope0, t, resolution)
    if found.t > 0.0:
        return found
    more = _slope_search(along, f0, slope0, t)
    return _Found(more.t, more.value, more.loss, found.trials + more.trials)


def _strong_wolfe(along, f0: float, slope0: float, t: float, resolution: float) -> _Found:
    """A step t satisfying the strong Wolfe conditions (Nocedal & Wright, alg. 3.5/3.6, cubic interpolation).
    `along(t)` -> (objective, slope, data loss) and leaves the problem's softmax at t; the accepted t is always
    the last one evaluated. The search gives up once the bracket is so narrow that the objective cannot change
    across it by more than `resolution` (rounding error of the objective)."""
    trials = 0

    def probe(t: float):
        nonlocal trials
        trials += 1
        value, slope, loss = along(t)
        return t, value, slope, loss

    def sufficient(point) -> bool:
        return point[1] <= f0 + WOLFE_DECREASE * point[0] * slope0

    def flat_enough(point) -> bool:
        return abs(point[2]) <= -WOLFE_CURVATURE * slope0

    prev = (0.0, f0, slope0, None)
    lo = hi = None
    if -slope0 * t <= resolution:  # even the first trial could not show a decrease above rounding error
        return _Found(0.0, f0, None, 0)
    while trials < MAX_TRIALS:
        point = probe(t)
        if not sufficient(point) or (prev[0] > 0 and point[1] >= prev[1]):
            lo, hi = prev, point
            break
        if flat_enough(point):
            return _Found(point[0], point[1], point[3], trials)
        if point[2] >= 0:
            lo, hi = point, prev
            break
        prev, t = point, 4.0 * t
    while lo is not None and trials < MAX_TRIALS:
        a, b = sorted((lo[0], hi[0]))
        width = b - a
        if width * abs(slope0) <= resolution:
            break
        t = min(max(_cubic_minimiser(lo, hi), a + 0.1 * width), b - 0.1 * width)
        point = probe(t)
        if not sufficient(point) or point[1] >= lo[1]:
            hi = point
        else:
            if flat_enough(point):
                return _Found(point[0], point[1], point[3], trials)
            if point[2] * (hi[0] - lo[0]) >= 0:
                hi = lo
            lo = point
    best = lo if lo is not None else prev
    if best[0] == 0.0:
        return _Found(0.0, f0, None, trials)
    point = probe(best[0])  # refill the softmax at the best sufficient-decrease step
    return _Found(point[0], point[1], point[3], trials)


def _slope_search(along, f0: float, slope0: float, t: float) -> _Found:
    """On a convex objective phi, phi(t) - phi(0) <= t phi'(t), so any t with
    WOLFE_CURVATURE * phi'(0) <= phi'(t) <= WOLFE_DECREASE * phi'(0) satisfies both Wolfe conditions; phi' is
    found without the cancellation that hides small changes of phi. Brackets, then aims by secant at the t where
    the slope is a tenth of phi'(0)."""
    lo, lo_slope, hi, hi_slope = 0.0, slope0, math.inf, 0.0
    for trial in range(1, MAX_TRIALS + 1):
        value, slope, loss = along(t)
        if WOLFE_CURVATURE * slope0 <= slope <= WOLFE_DECREASE * slope0:
            return _Found(t, value, loss, trial)
        if slope < WOLFE_CURVATURE * slope0:
            lo, lo_slope = t, slope
        else:
            hi, hi_slope = t, slope
        if math.isinf(hi):
            t = 4.0 * t
            continue
        width = hi - lo
        if width <= 1e-12 * hi or hi_slope <= lo_slope:  # nothing left to bracket, or slopes are rounding noise
            return _Found(0.0, f0, None, trial)
        secant = lo + (0.1 * slope0 - lo_slope) * width / (hi_slope - lo_slope)
        t = min(max(secant, lo + 0.1 * width), hi - 0.1 * width)
    return _Found(0.0, f0, None, MAX_TRIALS)


def _cubic_minimiser(p, q) -> float:
    (t1, f1, g1, _), (t2, f2, g2, _) = p, q
    d1 = g1 + g2 - 3.0 * (f1 - f2) / (t1 - t2)
    square = d1 * d1 - g1 * g2
    if square < 0:
        return 0.5 * (t1 + t2)
    d2 = math.copysign(math.sqrt(square), t2 - t1)
    denominator = g2 - g1 + 2.0 * d2
    if denominator == 0:
        return 0.5 * (t1 + t2)
    return t2 - (t2 - t1) * (g2 + d2 - d1) / denominator


@jaxtyped(typechecker=beartype)
def predict(
    x: Float[torch.Tensor, "m d"], weight: Float[torch.Tensor, "k d"], bias: Float[torch.Tensor, " k"]
) -> tuple[np.ndarray, np.ndarray]:
    """Index of the most probable class (int64) and its softmax probability (float32), batched over rows."""

    def most_probable(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        prob, index = torch.softmax(torch.addmm(bias, x[rows], weight.T), dim=1).max(dim=1)
        return index, prob

    return best_per_row(x.shape[0], weight.shape[0], most_probable)


def objective_value(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    weight: torch.Tensor,
    bias: torch.Tensor,
    C: float,
    sample_weight: torch.Tensor | None = None,
) -> float:
    """mean CE + ||W||^2 / (2 C n) at (weight, bias), for comparing solutions (multiply by C n for sklearn's).
    With sample_weight: sum_i w_i CE_i / sum_i w_i + ||W||^2 / (2 C sum_i w_i) (multiply by C sum_i w_i)."""
    problem = MultinomialProblem(x, y, n_classes, _checked_weights(sample_weight, x))
    theta = torch.cat([weight.reshape(-1), bias]).to(x.dtype)
    problem.set_logits(theta)
    return _objective(problem.data_loss(0.0), theta, 1.0 / (C * problem.total_weight), problem.n_weights)


def _checked_weights(sample_weight: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    if sample_weight is None:
        return None
    if sample_weight.shape != (x.shape[0],):
        raise ValueError(f"{x.shape[0]} rows but sample weights of shape {tuple(sample_weight.shape)}")
    if not (torch.isfinite(sample_weight).all() and (sample_weight >= 0).all() and (sample_weight > 0).any()):
        raise ValueError("sample weights must be finite and >= 0, and not all 0")
    return sample_weight.to(x)


def weights_from_sklearn(coef, intercept) -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's coef_ [K, d] / intercept_ [K] (or [1, d] / [1] for two classes) as (weight [K, d], bias [K])."""
    weight, bias = torch.as_tensor(coef), torch.as_tensor(intercept)
    if weight.shape[0] == 1:  # binary: sklearn's single row is class 1 against class 0
        weight = torch.cat([torch.zeros_like(weight), weight])
        bias = torch.cat([torch.zeros_like(bias), bias])
    return weight, bias
