"""Feature maps (``llmqfl.registry`` kind ``feature_map``): circuits whose parameters are the inputs.

Each is a small class whose ``circuit(n_qubits, reps)`` returns a measurement-free circuit with
exactly ``n_qubits`` input parameters (one angle per feature, in feature order). The built-ins are
qiskit's function-form library circuits; ``qfl.feature_map: {name: ..., reps: ...}`` picks one.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from qiskit.circuit import QuantumCircuit
from qiskit.circuit.library import pauli_feature_map, z_feature_map, zz_feature_map

from llmqfl.registry import register


@runtime_checkable
class FeatureMap(Protocol):
    """``circuit(n_qubits, reps)``: the encoding circuit; its parameters are the ``n_qubits`` inputs."""

    def circuit(self, n_qubits: int, reps: int) -> QuantumCircuit: ...


@register("feature_map", "zz")
class ZZFeatureMap:
    """Hadamards, Z rotations 2x_i and ZZ phases 2(pi - x_i)(pi - x_j) (the paper's VQC)."""

    def circuit(self, n_qubits: int, reps: int) -> QuantumCircuit:
        return zz_feature_map(n_qubits, reps=reps)


@register("feature_map", "z")
class ZFeatureMap:
    """Hadamards and Z rotations 2x_i, no entanglement (the paper's QCNN)."""

    def circuit(self, n_qubits: int, reps: int) -> QuantumCircuit:
        return z_feature_map(n_qubits, reps=reps)


@register("feature_map", "pauli")
class PauliFeatureMap:
    """qiskit's Pauli feature map with Y, Z and ZZ terms: rotations about two axes plus ZZ phases."""

    paulis = ("Y", "Z", "ZZ")

    def circuit(self, n_qubits: int, reps: int) -> QuantumCircuit:
        return pauli_feature_map(n_qubits, reps=reps, paulis=list(self.paulis))
