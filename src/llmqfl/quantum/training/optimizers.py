"""Local optimizers with a hard evaluation budget: COBYLA (scipy), SPSA (qiskit-ml), Adam.

Budget semantics of ``maxiter``:

* ``cobyla``: the maximum number of objective evaluations, as qiskit's ``COBYLA(maxiter=...)``
  means. scipy >= 1.16 (PRIMA) silently raises a budget below ``n_params + 2`` to ``n_params + 2``
  (16 weights: ``maxiter=10`` runs 18 evaluations, which is what the paper's qiskit-ml VQC does
  today); we stop at exactly ``maxiter`` evaluations and return the best point seen, so
  ``nfev <= maxiter`` and an LLM-chosen budget really is the budget.
* ``spsa``: iterations of qiskit-machine-learning's first-order SPSA (fixed power-law gains, no
  calibration evaluations), written out with a generator per fit so that fits may run side by side
  in threads. Each iteration evaluates its +/- pair in one batched call when ``batch_objective`` is
  given; ``nfev = 2 maxiter + 1``.
* ``adam``: steps of Adam on ``value_and_grad`` (parameter-shift gradients: 2P shifted sets plus
  the point itself in one batched call per step), or on central finite differences of
  ``batch_objective`` when no gradient is given.

``nfev`` counts objective values the optimizer asked for (Adam: one value-and-gradient per step plus
the final point; the 2P shifted sets behind each gradient show up in the evaluator's stats).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize as scipy_minimize

from llmqfl.errors import ConfigError

OPTIMIZERS = ("cobyla", "spsa", "adam")

Objective = Callable[[np.ndarray], float]
BatchObjective = Callable[[np.ndarray], np.ndarray]
ValueAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass
class OptimizerResult:
    """Final point, its objective, evaluations used and every objective value seen, in order."""

    x: np.ndarray
    fun: float
    nfev: int
    history: list[float] = field(default_factory=list)
    nit: int = 0


class _BudgetExhausted(Exception):
    """Raised inside scipy's COBYLA loop once ``maxiter`` evaluations are used."""


class _Tracker:
    """Counts evaluations, records values, remembers the best point."""

    def __init__(self) -> None:
        self.nfev = 0
        self.history: list[float] = []
        self.best_x: np.ndarray | None = None
        self.best_fun = np.inf

    def record(self, xs: np.ndarray, values: np.ndarray) -> None:
        for x, value in zip(xs, values, strict=True):
            self.nfev += 1
            self.history.append(float(value))
            if value < self.best_fun:
                self.best_fun, self.best_x = float(value), np.array(x, dtype=np.float64)


def minimize(
    objective: Objective,
    x0: np.ndarray,
    *,
    name: str,
    maxiter: int,
    seed: int,
    learning_rate: float = 0.1,
    batch_objective: BatchObjective | None = None,
    value_and_grad: ValueAndGrad | None = None,
) -> OptimizerResult:
    """Minimise ``objective`` from ``x0`` with at most ``maxiter`` steps (see the module docstring)."""
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim != 1 or x0.size == 0 or not np.all(np.isfinite(x0)):
        raise ValueError(f"x0: expected a finite 1-D array, got shape {x0.shape}")
    if name not in OPTIMIZERS:
        raise ConfigError(f"qfl.optimizer.name: {name!r} is not one of: {', '.join(OPTIMIZERS)}")
    if isinstance(maxiter, bool) or not isinstance(maxiter, int | np.integer) or maxiter < 1:
        raise ConfigError(f"qfl.optimizer.maxiter: must be an integer >= 1, got {maxiter!r}")
    if not learning_rate > 0:
        raise ConfigError(f"qfl.optimizer.learning_rate: must be > 0, got {learning_rate!r}")
    if name == "cobyla":
        return _cobyla(objective, x0, int(maxiter))
    if name == "spsa":
        return _spsa(objective, batch_objective, x0, int(maxiter), seed, learning_rate)
    return _adam(objective, batch_objective, value_and_grad, x0, int(maxiter), learning_rate)


def _cobyla(objective: Objective, x0: np.ndarray, maxiter: int) -> OptimizerResult:
    tracker = _Tracker()

    def wrapped(x: np.ndarray) -> float:
        if tracker.nfev >= maxiter:
            raise _BudgetExhausted
        value = float(objective(x))
        tracker.record(x[None, :], np.array([value]))
        return value

    scipy_budget = max(maxiter, x0.size + 2)  # PRIMA's floor; we stop ourselves at maxiter
    nit = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Invalid MAXFUN.*")
        try:
            result = scipy_minimize(wrapped, x0, method="COBYLA", options={"maxiter": scipy_budget})
            nit = int(getattr(result, "nit", 0) or 0)
        except _BudgetExhausted:
            pass
    assert tracker.best_x is not None
    return OptimizerResult(tracker.best_x, tracker.best_fun, tracker.nfev, tracker.history, nit)


def _spsa(
    objective: Objective,
    batch_objective: BatchObjective | None,
    x0: np.ndarray,
    maxiter: int,
    seed: int,
    learning_rate: float,
) -> OptimizerResult:
    """First-order SPSA as qiskit-machine-learning's ``SPSA`` runs it with fixed power-law gains.

    Written out (not ``SPSA.minimize``) because qiskit-ml draws its perturbations from the
    process-global ``algorithm_globals`` generator: clients that train side by side in threads
    (:mod:`llmqfl.federated.lockstep`) would then draw each other's perturbations. Here each fit owns
    ``default_rng(seed)``, the generator ``algorithm_globals.random_seed = seed`` builds, and draws
    the same Bernoulli vectors in the same order: the same iterates (tested against qiskit-ml).
    """
    rng = np.random.default_rng(seed)
    tracker = _Tracker()
    x = x0.copy()
    for k in range(1, maxiter + 1):
        eps = 0.2 / k**0.101  # powerseries(0.2, 0.101): perturbation size
        eta = learning_rate / k**0.602  # powerseries(learning_rate, 0.602): step size
        delta = 1 - 2 * rng.binomial(1, 0.5, size=x.size)
        points = np.vstack([x + eps * delta, x - eps * delta])
        if batch_objective is not None:
            values = np.asarray(batch_objective(points), dtype=np.float64)
        else:
            values = np.array([float(objective(point)) for point in points])
        tracker.record(points, values)
        gradient = (values[0] - values[1]) / (2 * eps) * delta
        x = x - eta * gradient
    final = float(objective(x))
    tracker.record(x[None, :], np.array([final]))
    return OptimizerResult(x, final, tracker.nfev, tracker.history, maxiter)


def _finite_difference(batch_objective: BatchObjective, eps: float = 1e-3) -> ValueAndGrad:
    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        eye = np.eye(x.size) * eps
        values = np.asarray(batch_objective(np.vstack([x[None, :], x + eye, x - eye])))
        return float(values[0]), (values[1 : 1 + x.size] - values[1 + x.size :]) / (2 * eps)

    return value_and_grad


def _adam(
    objective: Objective,
    batch_objective: BatchObjective | None,
    value_and_grad: ValueAndGrad | None,
    x0: np.ndarray,
    maxiter: int,
    learning_rate: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> OptimizerResult:
    if value_and_grad is None:
        if batch_objective is None:
            raise ConfigError("qfl.optimizer.name: adam needs value_and_grad or batch_objective")
        value_and_grad = _finite_difference(batch_objective)
    history: list[float] = []
    x, m, v = x0.copy(), np.zeros_like(x0), np.zeros_like(x0)
    for step in range(1, maxiter + 1):
        value, grad = value_and_grad(x)
        history.append(float(value))
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
        x = x - learning_rate * m_hat / (np.sqrt(v_hat) + epsilon)
    final = float(objective(x))
    history.append(final)
    return OptimizerResult(x, final, len(history), history, maxiter)


def fit_calls(optimizer: str, maxiter: int, n_params: int) -> list[int]:
    """Weight sets of each evaluator call one local fit makes (see :mod:`llmqfl.quantum.training.optimizers`)."""
    if optimizer == "cobyla":
        return [1] * maxiter
    if optimizer == "spsa":
        return [2] * maxiter + [1]
    if optimizer == "adam":
        return [2 * n_params + 1] * maxiter + [1]
    raise ConfigError(f"config error: qfl.optimizer.name: {optimizer!r} is not one of: cobyla, spsa, adam")
