"""Losses (natural log everywhere) and scores for the quantum classifier.

Probabilities are clipped at 1e-10 before the log, as qiskit-machine-learning's ``CrossEntropyLoss``
does, so our cross-entropy equals the peer's (which uses log2) times ln 2 exactly.
All loss functions accept probabilities of shape (n_items, C) -> float, or a batch of weight sets
(n_sets, n_items, C) -> (n_sets,) array, so optimizers can score many sets from one evaluator call.
"""

from __future__ import annotations

import numpy as np

from llmqfl.errors import DataError

CLIP = 1e-10


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim not in (2, 3):
        raise DataError(f"probs: expected (n_items, C) or (n_sets, n_items, C), got {probs.shape}")
    if labels.ndim != 1 or labels.shape[0] != probs.shape[-2]:
        raise DataError(f"labels: expected {probs.shape[-2]} labels, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= probs.shape[-1]:
        raise DataError(f"labels: must be integers in [0, {probs.shape[-1]})")
    return probs, labels


def _reduce(values: np.ndarray) -> float | np.ndarray:
    """Mean over items; a float for one weight set, an array for many."""
    mean = values.mean(axis=-1)
    return float(mean) if np.ndim(mean) == 0 else mean


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float | np.ndarray:
    """Mean natural-log cross-entropy -ln q_y (clipped at 1e-10)."""
    probs, labels = _check(probs, labels)
    picked = np.take_along_axis(probs, np.broadcast_to(labels[:, None], (*probs.shape[:-1], 1)), axis=-1)[..., 0]
    return _reduce(-np.log(np.clip(picked, CLIP, None)))


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-softened distribution softmax(ln p / T) = p^(1/T) / sum p^(1/T)."""
    powered = np.clip(probs, CLIP, None) ** (1.0 / temperature)
    return powered / powered.sum(axis=-1, keepdims=True)


def _check_teacher(probs: np.ndarray, teacher_probs: np.ndarray, temperature: float) -> np.ndarray:
    """The teacher's probabilities as float64, shaped like one weight set's ``probs``.

    Whether its rows are distributions is checked once, where they enter (teacher.parquet's file
    contract, :data:`llmqfl.file_contract.TEACHER`), not again on every objective evaluation.
    """
    teacher = np.asarray(teacher_probs, dtype=np.float64)
    if teacher.shape != probs.shape[-2:]:
        raise DataError(f"teacher_probs: expected shape {probs.shape[-2:]}, got {teacher.shape}")
    if not temperature > 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    return teacher


def distillation_loss(probs: np.ndarray, teacher_probs: np.ndarray, temperature: float) -> float | np.ndarray:
    """T^2 KL(p_T || q_T): teacher p and student q both softened by T, mean over items (nats)."""
    probs = np.asarray(probs, dtype=np.float64)
    teacher = _check_teacher(probs, teacher_probs, temperature)
    p_t = soften(teacher, temperature)
    q_t = soften(probs, temperature)
    kl = np.sum(p_t * (np.log(p_t) - np.log(q_t)), axis=-1)
    return _reduce(temperature**2 * kl)


def objective(
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    teacher_probs: np.ndarray | None = None,
    weight: float = 0.0,
    temperature: float = 2.0,
) -> float | np.ndarray:
    """CE + weight * T^2 * KL(p_T || q_T); weight 0 (or no teacher) is the paper code's plain CE."""
    value = cross_entropy(probs, labels)
    if weight and teacher_probs is not None:
        value = value + weight * distillation_loss(probs, teacher_probs, temperature)
    return value


def objective_gradient(
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    teacher_probs: np.ndarray | None = None,
    weight: float = 0.0,
    temperature: float = 2.0,
) -> np.ndarray:
    """d objective / d probs, shape (n_items, C): chained with parameter-shift probability gradients."""
    probs, labels = _check(probs, labels)
    n_items = probs.shape[0]
    grad = np.zeros_like(probs)
    rows = np.arange(n_items)
    picked = probs[rows, labels]
    grad[rows, labels] = np.where(picked > CLIP, -1.0 / np.clip(picked, CLIP, None), 0.0)
    if weight and teacher_probs is not None:
        teacher = _check_teacher(probs, teacher_probs, temperature)
        p_t, q_t = soften(teacher, temperature), soften(probs, temperature)
        kl_grad = (q_t - p_t) / (temperature * np.clip(probs, CLIP, None))
        kl_grad = np.where(probs > CLIP, kl_grad, 0.0)
        grad += weight * temperature**2 * kl_grad
    return grad / n_items


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of items whose arg-max class equals the label."""
    probs, labels = _check(probs, labels)
    return float(np.mean(np.argmax(probs, axis=-1) == labels))


def weighted_f1(probs: np.ndarray, labels: np.ndarray) -> float:
    """Support-weighted F1 of the arg-max predictions (0 for classes never predicted)."""
    probs, labels = _check(probs, labels)
    predicted = np.argmax(probs, axis=-1)
    if labels.ndim != 1 or len(labels) == 0:
        from sklearn.metrics import f1_score

        return float(f1_score(labels, predicted, average="weighted", zero_division=0))
    # sklearn's own formula (f1_score(average="weighted", zero_division=0)), bit for bit, without importing
    # sklearn: it was 4 of the 7 s of imports of every Flower ClientApp process (one per message)
    classes, true_idx = np.unique(np.concatenate([labels, predicted]), return_inverse=True)
    true_idx, pred_idx = true_idx[: len(labels)], true_idx[len(labels) :]
    true_sum = np.bincount(true_idx, minlength=len(classes))
    pred_sum = np.bincount(pred_idx, minlength=len(classes))
    tp_sum = np.bincount(true_idx[true_idx == pred_idx], minlength=len(classes))
    denom = 1.0 * true_sum.astype(np.float64) + pred_sum.astype(np.float64)
    f_score = np.divide(2.0 * tp_sum.astype(np.float64), denom, out=np.zeros(len(classes)), where=denom != 0)
    return float(np.average(f_score, weights=true_sum))
