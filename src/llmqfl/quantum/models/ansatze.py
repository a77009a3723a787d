"""Ansätze (``llmqfl.registry`` kind ``ansatz``): trainable circuits whose parameters are the weights.

Each is a small class whose ``circuit(n_qubits, reps, prefix)`` returns a measurement-free circuit;
its parameters (named from ``prefix``, so two layers of one model never share a weight) are the
trainable weights. ``qfl.ansatz: {name: ..., reps: ...}`` picks one for the ``vqc`` and
``reuploading`` models.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from qiskit.circuit import QuantumCircuit
from qiskit.circuit.library import efficient_su2, real_amplitudes

from llmqfl.registry import register


@runtime_checkable
class Ansatz(Protocol):
    """``circuit(n_qubits, reps, prefix)``: the trainable circuit; its parameters are the weights."""

    def circuit(self, n_qubits: int, reps: int, prefix: str = "θ") -> QuantumCircuit: ...


@register("ansatz", "real_amplitudes")
class RealAmplitudes:
    """RY layers and CX entanglers: real amplitudes only (the paper's VQC); (reps + 1) n weights."""

    def circuit(self, n_qubits: int, reps: int, prefix: str = "θ") -> QuantumCircuit:
        return real_amplitudes(n_qubits, reps=reps, parameter_prefix=prefix)


@register("ansatz", "efficient_su2")
class EfficientSU2:
    """RY and RZ layers with CX entanglers: complex amplitudes; 2 (reps + 1) n weights."""

    def circuit(self, n_qubits: int, reps: int, prefix: str = "θ") -> QuantumCircuit:
        return efficient_su2(n_qubits, reps=reps, parameter_prefix=prefix)
