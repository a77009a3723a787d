"""One client's local training: minimise CE (+ optional KL distillation) over its items.

Every objective evaluation is ONE evaluator call over all the client's items; batched objectives
(SPSA pairs, parameter-shift sets) are one call for all their weight sets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from llmqfl.errors import ConfigError, DataError
from llmqfl.quantum.simulators.exact import single_threaded_blas
from llmqfl.quantum.training.evaluators import EvaluationStats, Evaluator, validate_features, validate_weights
from llmqfl.quantum.training.loss import objective, objective_gradient
from llmqfl.quantum.training.optimizers import OPTIMIZERS, minimize

SHIFT = np.pi / 2


@dataclass
class LocalResult:
    """Trained weights, the objective there, evaluations used, every objective value seen, work done."""

    weights: np.ndarray
    loss: float
    nfev: int
    loss_history: list[float] = field(default_factory=list)
    stats: EvaluationStats = field(default_factory=EvaluationStats)
    seconds: float = 0.0


def parameter_shift_sets(weights: np.ndarray) -> np.ndarray:
    """(2P + 1, P): the point itself, then +pi/2 and -pi/2 shifts of each weight."""
    eye = np.eye(weights.size) * SHIFT
    return np.vstack([weights[None, :], weights + eye, weights - eye])


def probability_gradient(probs: np.ndarray) -> np.ndarray:
    """(P, n_items, C) d probs / d weights from the probabilities of :func:`parameter_shift_sets`."""
    n_params = (probs.shape[0] - 1) // 2
    return (probs[1 : 1 + n_params] - probs[1 + n_params :]) / 2.0


def train_local(
    evaluator: Evaluator,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    x0: np.ndarray,
    optimizer: str,
    maxiter: int,
    seed: int,
    teacher_probs: np.ndarray | None = None,
    distill_weight: float = 0.0,
    temperature: float = 2.0,
    learning_rate: float = 0.1,
) -> LocalResult:
    """Train from ``x0`` on (features, labels); all inputs are checked before any circuit runs."""
    model = evaluator.model
    features = validate_features(model, features)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise DataError(f"labels: expected {features.shape[0]} labels, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= model.n_classes:
        raise DataError(f"labels: must be integers in [0, {model.n_classes})")
    x0_array, single = validate_weights(model, x0)
    if not single:
        raise ValueError(f"x0: expected shape ({model.n_params},), got {np.shape(x0)}")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"qfl.optimizer.name: {optimizer!r} is not one of: {', '.join(OPTIMIZERS)}")
    if isinstance(maxiter, bool) or not isinstance(maxiter, int | np.integer) or maxiter < 1:
        raise ConfigError(f"qfl.optimizer.maxiter: must be an integer >= 1, got {maxiter!r}")
    if distill_weight < 0:
        raise ConfigError(f"qfl.distillation.weight: must be >= 0, got {distill_weight}")
    if not temperature > 0:
        raise ConfigError(f"qfl.distillation.temperature: must be > 0, got {temperature}")
    if distill_weight > 0 and teacher_probs is None:
        raise ConfigError("qfl.distillation.weight: > 0 needs teacher_probs (the LLM's soft labels)")
    if teacher_probs is not None:  # its rows were checked as distributions where they were read (teacher.parquet)
        teacher_probs = np.asarray(teacher_probs, dtype=np.float64)
        if teacher_probs.shape != (features.shape[0], model.n_classes):
            raise DataError(
                f"teacher_probs: expected shape {(features.shape[0], model.n_classes)}, got {teacher_probs.shape}"
            )
    if optimizer == "adam" and not model.shift_rule_exact:
        raise ConfigError("qfl.optimizer.name: adam's parameter-shift rule is not exact for this circuit")
    return _train_local(
        evaluator,
        features,
        labels,
        x0_array[0],
        optimizer,
        int(maxiter),
        seed,
        teacher_probs,
        float(distill_weight),
        float(temperature),
        float(learning_rate),
    )


def _train_local(
    evaluator: Evaluator,
    features: np.ndarray,
    labels: np.ndarray,
    x0: np.ndarray,
    optimizer: str,
    maxiter: int,
    seed: int,
    teacher_probs: np.ndarray | None,
    distill_weight: float,
    temperature: float,
    learning_rate: float,
) -> LocalResult:
    loss_kwargs = {"teacher_probs": teacher_probs, "weight": distill_weight, "temperature": temperature}

    def single(x: np.ndarray) -> float:
        return float(objective(evaluator.probabilities(features, x), labels, **loss_kwargs))

    def batch(xs: np.ndarray) -> np.ndarray:
        return np.atleast_1d(objective(evaluator.probabilities(features, xs), labels, **loss_kwargs))

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        probs = evaluator.probabilities(features, parameter_shift_sets(x))
        value = float(objective(probs[0], labels, **loss_kwargs))
        d_loss = objective_gradient(probs[0], labels, **loss_kwargs)
        return value, np.einsum("pnc,nc->p", probability_gradient(probs), d_loss)

    before = evaluator.stats.snapshot()
    start = time.perf_counter()
    with single_threaded_blas():  # COBYLA's own linear algebra is n_params-sized: threads only cost
        result = minimize(
            single,
            x0,
            name=optimizer,
            maxiter=maxiter,
            seed=seed,
            learning_rate=learning_rate,
            batch_objective=batch,
            value_and_grad=value_and_grad,
        )
    return LocalResult(
        weights=np.asarray(result.x, dtype=np.float64),
        loss=float(result.fun),
        nfev=int(result.nfev),
        loss_history=list(result.history),
        stats=evaluator.stats.since(before),
        seconds=time.perf_counter() - start,
    )
