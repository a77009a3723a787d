"""Local training on the exact path: learning, gradients, distillation, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from llmqfl.errors import ConfigError, DataError
from llmqfl.quantum import accuracy, build_model, cross_entropy, distillation_loss, make_evaluator, train_local
from llmqfl.quantum.training.local_training import parameter_shift_sets, probability_gradient
from llmqfl.quantum.training.loss import objective

CENTERS = np.array([[0.3, 0.3, 0.3, 0.3], [2.8, 2.8, 0.3, 0.3], [0.3, 2.8, 2.8, 2.8]])


def three_class_toy(seed=0, per_class=30):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    return CENTERS[labels] + rng.normal(0, 0.2, (labels.size, 4)), labels


@pytest.mark.parametrize(
    ("kind", "optimizer", "maxiter"), [("vqc", "cobyla", 150), ("qcnn", "cobyla", 150), ("qcnn", "adam", 30)]
)
def test_three_class_toy_beats_chance(kind, optimizer, maxiter):
    # Prepare
    features, labels = three_class_toy()
    model = build_model(kind=kind, n_qubits=4, n_classes=3)
    evaluator = make_evaluator(model, seed=0)
    x0 = np.full(model.n_params, 0.1)
    start_loss = cross_entropy(evaluator.probabilities(features, x0), labels)
    # Execute
    result = train_local(evaluator, features, labels, x0=x0, optimizer=optimizer, maxiter=maxiter, seed=1)
    # Assert
    assert accuracy(evaluator.probabilities(features, result.weights), labels) > 0.7  # chance is 1/3
    assert result.loss < start_loss
    assert len(set(np.argmax(evaluator.probabilities(features, result.weights), axis=1))) == 3


@pytest.mark.parametrize("kind", ["vqc", "qcnn"])
def test_parameter_shift_gradient_matches_finite_differences(kind):
    # Prepare
    rng = np.random.default_rng(2)
    features, _ = three_class_toy(per_class=4)
    model = build_model(kind=kind, n_qubits=4, n_classes=3)
    evaluator = make_evaluator(model, seed=0)
    weights = rng.uniform(-np.pi, np.pi, model.n_params)
    eps = 1e-6
    # Execute
    probs = evaluator.probabilities(features, parameter_shift_sets(weights))
    shift = probability_gradient(probs)
    plus = evaluator.probabilities(features, weights + np.eye(model.n_params) * eps)
    minus = evaluator.probabilities(features, weights - np.eye(model.n_params) * eps)
    # Assert
    np.testing.assert_allclose(shift, (plus - minus) / (2 * eps), atol=1e-7)


def test_distillation_pulls_student_towards_teacher():
    # Prepare
    features, labels = three_class_toy(per_class=10)
    model = build_model(kind="vqc", n_qubits=4, n_classes=3)
    evaluator = make_evaluator(model, seed=0)
    teacher = np.full((labels.size, 3), 0.1)
    teacher[np.arange(labels.size), (labels + 1) % 3] = 0.8  # a teacher that disagrees with the labels
    kwargs = {"x0": np.full(model.n_params, 0.1), "optimizer": "cobyla", "maxiter": 80, "seed": 0}
    # Execute
    plain = train_local(evaluator, features, labels, **kwargs)
    distilled = train_local(evaluator, features, labels, teacher_probs=teacher, distill_weight=2.0, **kwargs)
    # Assert
    kl_plain = distillation_loss(evaluator.probabilities(features, plain.weights), teacher, 2.0)
    kl_distilled = distillation_loss(evaluator.probabilities(features, distilled.weights), teacher, 2.0)
    assert kl_distilled < kl_plain
    final = objective(
        evaluator.probabilities(features, distilled.weights), labels, teacher_probs=teacher, weight=2.0, temperature=2.0
    )
    assert distilled.loss == pytest.approx(final)


@pytest.mark.parametrize("optimizer", ["cobyla", "spsa", "adam"])
def test_training_is_deterministic_and_accounted(optimizer):
    # Prepare
    features, labels = three_class_toy(per_class=5)
    model = build_model(kind="vqc", n_qubits=4, n_classes=3)

    def run():
        evaluator = make_evaluator(model, seed=0)
        return train_local(evaluator, features, labels, x0=np.full(16, 0.5), optimizer=optimizer, maxiter=4, seed=9)

    # Execute
    first, second = run(), run()
    # Assert
    np.testing.assert_array_equal(first.weights, second.weights)
    assert first.loss_history == second.loss_history
    assert first.stats.circuits == first.stats.objective_evaluations * 15
    if optimizer == "cobyla":
        assert first.nfev <= 4 and first.stats.objective_evaluations == first.nfev
    if optimizer == "adam":  # 4 steps x (2P + 1) sets + the final point
        assert first.stats.objective_evaluations == 4 * 33 + 1


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"features": np.zeros((15, 3))}, DataError, "features"),
        ({"labels": np.zeros(14, dtype=int)}, DataError, "labels"),
        ({"labels": np.full(15, 3)}, DataError, "labels"),
        ({"x0": np.zeros(15)}, ValueError, "weights"),
        ({"maxiter": 0}, ConfigError, "maxiter"),
        ({"optimizer": "sgd"}, ConfigError, "optimizer"),
        ({"teacher_probs": np.full((15, 2), 0.5)}, DataError, "teacher_probs"),
        ({"temperature": 0.0}, ConfigError, "temperature"),
        ({"distill_weight": 0.5}, ConfigError, "needs teacher_probs"),
    ],
)
def test_bad_training_input_fails_before_any_circuit(change, error, match):
    # Prepare
    features, labels = three_class_toy(per_class=5)
    model = build_model(kind="vqc", n_qubits=4, n_classes=3)
    evaluator = make_evaluator(model, seed=0)
    args = {
        "features": features,
        "labels": labels,
        "x0": np.zeros(16),
        "optimizer": "cobyla",
        "maxiter": 3,
        "seed": 0,
    } | change
    # Execute / Assert
    with pytest.raises(error, match=match):
        train_local(evaluator, args.pop("features"), args.pop("labels"), **args)
    assert evaluator.stats.circuits == 0
