"""Losses in natural log vs hand-computed values; scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmqfl.errors import DataError
from llmqfl.quantum.training.loss import (
    accuracy,
    cross_entropy,
    distillation_loss,
    objective,
    objective_gradient,
    weighted_f1,
)

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4]])
LABELS = np.array([0, 2])
TEACHER = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])


def test_cross_entropy_hand_computed():
    # Execute
    value = cross_entropy(PROBS, LABELS)
    # Assert
    assert value == pytest.approx(-(math.log(0.7) + math.log(0.4)) / 2, abs=1e-15)


def test_cross_entropy_equals_qiskit_ml_times_ln2():
    # Prepare
    from qiskit_machine_learning.utils.loss_functions import CrossEntropyLoss

    one_hot = np.eye(3)[LABELS]
    # Execute
    peer = float(np.sum(CrossEntropyLoss()(PROBS, one_hot)) / 2)
    # Assert
    assert cross_entropy(PROBS, LABELS) == pytest.approx(peer * math.log(2), abs=1e-15)


def test_cross_entropy_clips_zero_probability():
    # Execute
    value = cross_entropy(np.array([[1.0, 0.0]]), np.array([1]))
    # Assert
    assert value == pytest.approx(-math.log(1e-10))


def test_distillation_loss_hand_computed():
    # Prepare: T = 2 softens p -> sqrt(p) / sum sqrt(p)
    temperature = 2.0
    total = 0.0
    for p_row, q_row in zip(TEACHER, PROBS, strict=True):
        p = np.sqrt(p_row) / np.sqrt(p_row).sum()
        q = np.sqrt(q_row) / np.sqrt(q_row).sum()
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    expected = temperature**2 * total / 2
    # Execute
    value = distillation_loss(PROBS, TEACHER, temperature)
    # Assert
    assert value == pytest.approx(expected, abs=1e-14)
    assert distillation_loss(TEACHER, TEACHER, temperature) == pytest.approx(0.0, abs=1e-15)


def test_objective_combines_ce_and_weighted_kl():
    # Execute
    value = objective(PROBS, LABELS, teacher_probs=TEACHER, weight=0.3, temperature=2.0)
    # Assert
    assert value == pytest.approx(cross_entropy(PROBS, LABELS) + 0.3 * distillation_loss(PROBS, TEACHER, 2.0))
    assert objective(PROBS, LABELS, teacher_probs=TEACHER, weight=0.0) == cross_entropy(PROBS, LABELS)


def test_batched_losses_match_per_set():
    # Prepare
    batch = np.stack([PROBS, TEACHER])
    # Execute
    values = objective(batch, LABELS, teacher_probs=TEACHER, weight=0.5)
    # Assert
    assert values.shape == (2,)
    assert values[1] == pytest.approx(objective(TEACHER, LABELS, teacher_probs=TEACHER, weight=0.5))


def test_objective_gradient_matches_finite_differences():
    # Prepare
    kwargs = {"teacher_probs": TEACHER, "weight": 0.7, "temperature": 3.0}
    eps = 1e-7
    numeric = np.zeros_like(PROBS)
    for index in np.ndindex(PROBS.shape):
        up, down = PROBS.copy(), PROBS.copy()
        up[index] += eps
        down[index] -= eps
        numeric[index] = (objective(up, LABELS, **kwargs) - objective(down, LABELS, **kwargs)) / (2 * eps)
    # Execute
    analytic = objective_gradient(PROBS, LABELS, **kwargs)
    # Assert
    np.testing.assert_allclose(analytic, numeric, atol=1e-6)


def test_scores():
    # Execute / Assert
    assert accuracy(PROBS, LABELS) == 0.5
    assert weighted_f1(PROBS, LABELS) == pytest.approx(0.5)  # (F1 1 x support 1 + F1 0 x support 1) / 2


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [(PROBS, np.array([0, 3]), "labels"), (PROBS, np.array([0]), "labels"), (PROBS[0], LABELS, "probs")],
)
def test_bad_loss_inputs(probs, labels, match):
    # Execute / Assert
    with pytest.raises(DataError, match=match):
        cross_entropy(probs, labels)


def test_weighted_f1_is_sklearns_bit_for_bit():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(5)
    for n_classes, n in [(2, 1), (2, 7), (3, 20), (5, 9), (4, 100)]:
        for _ in range(20):
            probs = rng.dirichlet(np.ones(n_classes), size=n)
            labels = rng.integers(0, n_classes, size=n)
            expected = f1_score(labels, probs.argmax(axis=1), average="weighted", zero_division=0)
            assert weighted_f1(probs, labels) == float(expected)
