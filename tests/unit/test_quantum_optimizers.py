"""Optimizer budgets, batching and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from llmqfl.errors import ConfigError
from llmqfl.quantum.training.optimizers import minimize

TARGET = np.linspace(-1, 1, 16)


def quadratic(x):
    return float(np.sum((np.asarray(x) - TARGET) ** 2))


def quadratic_batch(xs):
    return np.sum((np.asarray(xs) - TARGET) ** 2, axis=1)


@pytest.mark.parametrize("maxiter", [1, 5, 10, 40])
def test_cobyla_respects_budget_below_prima_floor(maxiter):
    # Prepare
    calls = []

    def counted(x):
        calls.append(1)
        return quadratic(x)

    # Execute
    result = minimize(counted, np.full(16, 0.5), name="cobyla", maxiter=maxiter, seed=0)
    # Assert: scipy alone would run 18 evaluations for 16 parameters
    assert result.nfev == len(calls) == len(result.history) <= maxiter
    assert result.fun == min(result.history) == pytest.approx(quadratic(result.x))


def test_cobyla_converges_with_enough_budget():
    # Execute
    result = minimize(quadratic, np.zeros(16), name="cobyla", maxiter=500, seed=0)
    # Assert
    assert result.fun < 1e-3


def test_spsa_batches_pairs_and_is_seeded():
    # Prepare
    batch_sizes = []

    def batch(xs):
        batch_sizes.append(len(xs))
        return quadratic_batch(xs)

    def run(seed):
        return minimize(
            quadratic, np.zeros(16), name="spsa", maxiter=30, seed=seed, learning_rate=0.02, batch_objective=batch
        )

    # Execute
    first, again, other = run(3), run(3), run(4)
    # Assert
    assert set(batch_sizes) == {2}
    assert first.nfev == 2 * 30 + 1
    np.testing.assert_array_equal(first.x, again.x)
    assert not np.array_equal(first.x, other.x)
    assert first.fun < quadratic(np.zeros(16))


def test_adam_with_gradient_and_with_finite_differences():
    # Prepare
    def value_and_grad(x):
        return quadratic(x), 2 * (x - TARGET)

    # Execute
    exact = minimize(
        quadratic, np.zeros(16), name="adam", maxiter=200, seed=0, learning_rate=0.05, value_and_grad=value_and_grad
    )
    numeric = minimize(
        quadratic, np.zeros(16), name="adam", maxiter=200, seed=0, learning_rate=0.05, batch_objective=quadratic_batch
    )
    # Assert
    assert exact.fun < 1e-2
    assert exact.nfev == 201
    np.testing.assert_allclose(numeric.x, exact.x, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "cobyla", "maxiter": 0}, ConfigError, "maxiter"),
        ({"name": "cobyla", "maxiter": 2.5}, ConfigError, "maxiter"),
        ({"name": "lbfgs", "maxiter": 3}, ConfigError, "optimizer.name"),
        ({"name": "adam", "maxiter": 3}, ConfigError, "adam needs"),
        ({"name": "spsa", "maxiter": 3, "learning_rate": 0.0}, ConfigError, "learning_rate"),
    ],
)
def test_bad_optimizer_arguments(kwargs, error, match):
    # Prepare
    calls = []

    def counted(x):
        calls.append(1)
        return quadratic(x)

    # Execute / Assert
    with pytest.raises(error, match=match):
        minimize(counted, np.zeros(16), seed=0, **kwargs)
    assert not calls
