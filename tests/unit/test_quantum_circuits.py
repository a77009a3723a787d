"""Model construction: the paper's VQC, the tutorial QCNN, readouts that separate classes."""

from __future__ import annotations

import numpy as np
import pytest

from llmqfl.config import load_settings
from llmqfl.errors import ConfigError
from llmqfl.quantum import build_model, configured_model


def test_vqc_is_zz_feature_map_plus_real_amplitudes():
    # Execute
    model = build_model(kind="vqc", n_qubits=4, n_classes=2)
    # Assert
    assert model.n_params == 16
    assert model.n_inputs == 4
    ops = model.circuit.count_ops()
    assert ops["ry"] == 16 and ops["h"] == 4
    assert set(model.circuit.parameters) == set(model.input_params) | set(model.weight_params)
    assert model.shift_rule_exact


def test_feature_map_carries_no_weights():
    # Prepare
    model = build_model(kind="vqc", n_qubits=4, n_classes=2)
    weights = set(model.weight_params)
    # Execute
    gates_with_inputs = [
        ins
        for ins in model.circuit.data
        if any(getattr(v, "parameters", set()) & set(model.input_params) for v in ins.operation.params)
    ]
    # Assert
    assert gates_with_inputs
    assert all(not (v.parameters & weights) for ins in gates_with_inputs for v in ins.operation.params)


def test_vqc_readout_is_qiskit_ml_mod_interpret():
    # Execute
    model = build_model(kind="vqc", n_qubits=3, n_classes=3)
    # Assert: bitstring b -> class b % 3, every bitstring to exactly one class
    assert model.readout.shape == (3, 8)
    assert [int(np.argmax(model.readout[:, b])) for b in range(8)] == [b % 3 for b in range(8)]
    np.testing.assert_array_equal(model.readout.sum(axis=0), np.ones(8))


def test_parity_readout_option():
    # Execute
    model = build_model(kind="vqc", n_qubits=3, n_classes=2, readout="parity")
    # Assert
    assert [int(np.argmax(model.readout[:, b])) for b in range(8)] == [bin(b).count("1") % 2 for b in range(8)]


@pytest.mark.parametrize(("n_classes", "n_readout"), [(2, 1), (3, 2), (4, 2)])
def test_qcnn_keeps_enough_readout_qubits(n_classes, n_readout):
    # Execute
    model = build_model(kind="qcnn", n_qubits=4, n_classes=n_classes)
    # Assert
    assert len(model.readout_qubits) == n_readout
    assert model.readout.shape == (n_classes, 2**n_readout)
    assert np.all(model.readout.sum(axis=1) >= 1)  # every class reachable
    assert model.shift_rule_exact


def test_full_readout_marginalises_other_qubits():
    # Prepare
    model = build_model(kind="qcnn", n_qubits=4, n_classes=3)  # readout qubits (2, 3)
    # Execute
    full = model.full_readout
    # Assert: full index 0b1000 has qubit 3 = 1, qubit 2 = 0 -> readout int 2 -> class 2
    assert full.shape == (3, 16)
    assert full[2, 0b1000] == 1 and full[1, 0b0100] == 1 and full[0, 0b1100] == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "mlp", "n_qubits": 4, "n_classes": 2}, "qfl.model"),
        ({"kind": "vqc", "n_qubits": 0, "n_classes": 2}, "qfl.n_qubits"),
        ({"kind": "vqc", "n_qubits": 2, "n_classes": 5}, "cannot read out 5 classes"),
        ({"kind": "vqc", "n_qubits": 2, "n_classes": 1}, "at least 2 classes"),
        ({"kind": "qcnn", "n_qubits": 4, "n_classes": 3, "readout": "parity"}, "parity"),
        ({"kind": "vqc", "n_qubits": 4, "n_classes": 2, "ansatz_reps": 0}, "reps"),
    ],
)
def test_bad_model_config_is_rejected(kwargs, match):
    # Execute / Assert
    with pytest.raises(ConfigError, match=match):
        build_model(**kwargs)


def test_configured_model_reads_the_qfl_section_and_its_circuit_parts():
    # Prepare: a qfl section naming a feature map and an ansatz, one with its own reps
    qfl = load_settings({"qfl": {"model": "reuploading", "n_qubits": 3, "feature_map": {"name": "pauli", "reps": 2},
                                 "ansatz": {"name": "efficient_su2"}, "ansatz_reps": 2}}).qfl
    # Execute
    model = configured_model(qfl, 2)
    expected = build_model(kind="reuploading", n_qubits=3, n_classes=2, feature_map="pauli", feature_map_reps=2,
                           ansatz="efficient_su2", ansatz_reps=2)
    # Assert: the same circuit as the keyword form (the part's reps win; qfl.ansatz_reps when it has none)
    assert model.kind == "reuploading" and model.n_qubits == 3 and model.readout_rule == "mod"
    assert _gates(model.circuit) == _gates(expected.circuit)
    assert [p.name for p in model.weight_params] == [p.name for p in expected.weight_params]
    default = configured_model(load_settings({}).qfl, 2)
    assert (default.kind, default.n_qubits, default.n_params) == ("vqc", 4, 16)


def _gates(circuit) -> list[tuple]:
    """Each instruction's name, qubit indices and parameter expressions (Parameters compare by identity)."""
    return [(ins.operation.name, tuple(circuit.find_bit(q).index for q in ins.qubits),
             tuple(str(v) for v in ins.operation.params)) for ins in circuit.data]
