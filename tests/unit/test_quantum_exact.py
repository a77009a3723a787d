"""Exact path: batched engine vs qiskit's reference Statevector and the peer (qiskit-ml VQC's SamplerQNN)."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.quantum_info import Statevector

from llmqfl.errors import DataError
from llmqfl.quantum import build_model, make_evaluator
from llmqfl.quantum.training.evaluators import ExactEvaluator


def _reference(model, features, weights):
    """Class probabilities from one qiskit Statevector per (weight set, item)."""
    out = np.zeros((weights.shape[0], features.shape[0], model.n_classes))
    for s, w in enumerate(weights):
        for i, x in enumerate(features):
            bound = model.circuit.assign_parameters(
                dict(zip(model.input_params, x, strict=True)) | dict(zip(model.weight_params, w, strict=True))
            )
            probs = Statevector(bound).probabilities(qargs=list(model.readout_qubits))
            out[s, i] = model.readout @ probs
    return out


@pytest.mark.parametrize(
    ("kind", "n_qubits", "n_classes", "fm_reps", "ansatz_reps"),
    [("vqc", 4, 2, 1, 3), ("vqc", 3, 3, 2, 2), ("qcnn", 4, 2, 1, 1), ("qcnn", 4, 3, 2, 1), ("qcnn", 5, 4, 1, 1)],
)
def test_exact_matches_statevector(kind, n_qubits, n_classes, fm_reps, ansatz_reps):
    # Prepare
    rng = np.random.default_rng(n_qubits * 10 + n_classes)
    model = build_model(
        kind=kind, n_qubits=n_qubits, n_classes=n_classes, feature_map_reps=fm_reps, ansatz_reps=ansatz_reps
    )
    features = rng.uniform(-np.pi, np.pi, (4, n_qubits))
    weights = rng.uniform(-2 * np.pi, 2 * np.pi, (3, model.n_params))
    evaluator = make_evaluator(model, seed=0)
    # Execute
    batched = evaluator.probabilities(features, weights)
    single = evaluator.probabilities(features, weights[1])
    # Assert
    np.testing.assert_allclose(batched, _reference(model, features, weights), atol=1e-9, rtol=0)
    np.testing.assert_allclose(single, batched[1], atol=1e-12, rtol=0)
    assert evaluator.stats.circuits == 4 * 3 + 4
    assert evaluator.stats.objective_evaluations == 4
    assert evaluator.stats.jobs == 0 and evaluator.stats.shots == 0


def test_exact_matches_qiskit_ml_vqc_network():
    # Prepare: the peer's own network, as VQC builds it (interpret x % C, exact QMLSampler)
    from qiskit_machine_learning.neural_networks import SamplerQNN

    rng = np.random.default_rng(5)
    model = build_model(kind="vqc", n_qubits=4, n_classes=3)
    qnn = SamplerQNN(
        circuit=model.circuit,
        input_params=list(model.input_params),
        weight_params=list(model.weight_params),
        interpret=lambda b: b % 3,
        output_shape=3,
    )
    features = rng.uniform(0, np.pi, (5, 4))
    weights = rng.uniform(-np.pi, np.pi, model.n_params)
    # Execute
    peer = qnn.forward(features, weights)
    ours = ExactEvaluator(model).probabilities(features, weights)
    # Assert
    np.testing.assert_allclose(ours, peer, atol=1e-9, rtol=0)


def test_feature_states_are_cached_by_content():
    # Prepare
    model = build_model(kind="vqc", n_qubits=3, n_classes=2)
    evaluator = ExactEvaluator(model)
    features = np.random.default_rng(0).uniform(size=(7, 3))
    # Execute
    first = evaluator._engine.feature_states(features)
    again = evaluator._engine.feature_states(features.copy())
    other = evaluator._engine.feature_states(features + 0.1)
    # Assert
    assert again is first
    assert other is not first and not np.allclose(other, first)


def test_bad_feature_width_and_weight_length_are_rejected():
    # Prepare
    model = build_model(kind="vqc", n_qubits=4, n_classes=2)
    evaluator = ExactEvaluator(model)
    # Execute / Assert
    with pytest.raises(DataError, match=r"features: expected shape \(n_items, 4\)"):
        evaluator.probabilities(np.zeros((3, 5)), np.zeros(16))
    with pytest.raises(DataError, match="NaN"):
        evaluator.probabilities(np.full((3, 4), np.nan), np.zeros(16))
    with pytest.raises(ValueError, match=r"weights: expected shape \(16,\)"):
        evaluator.probabilities(np.zeros((3, 4)), np.zeros(15))
    assert evaluator.stats.circuits == 0


def test_exact_engine_handles_general_gates():
    # Prepare: rx/rz/p layers, a lone rotation, expressions, fixed h/s/cz/swap/ccx, and a crx (decomposed)
    from qiskit.circuit import ParameterVector, QuantumCircuit

    from llmqfl.quantum.models.circuits import QuantumModel

    x, w = ParameterVector("x", 3), ParameterVector("w", 6)
    circuit = QuantumCircuit(3)
    circuit.h([0, 1, 2])
    circuit.p(2 * x[0] * x[1], 2)
    circuit.rz(x[2] + 0.3, 0)
    circuit.s(1)
    circuit.rx(w[0], 0)
    circuit.rz(w[1], 1)
    circuit.p(w[2], 2)
    circuit.cz(0, 2)
    circuit.swap(1, 2)
    circuit.ccx(0, 1, 2)
    circuit.ry(w[3], 1)
    circuit.crx(w[4], 2, 0)
    circuit.rx(0.5 * w[5], 2)
    readout = (np.arange(4)[None, :] % 3 == np.arange(3)[:, None]).astype(float)
    model = QuantumModel(
        kind="custom",
        n_qubits=3,
        n_classes=3,
        circuit=circuit,
        input_params=tuple(x),
        weight_params=tuple(w),
        readout=readout,
        readout_qubits=(2, 0),
    )
    rng = np.random.default_rng(4)
    features, weights = rng.uniform(-np.pi, np.pi, (3, 3)), rng.uniform(-np.pi, np.pi, (2, 6))
    # Execute
    ours = ExactEvaluator(model).probabilities(features, weights)
    # Assert
    np.testing.assert_allclose(ours, _reference(model, features, weights), atol=1e-9, rtol=0)
    assert not model.shift_rule_exact  # crx and 0.5 * w[5] break the simple +-pi/2 rule
