"""The built-in quantum models (``llmqfl.registry`` kind ``model``).

* ``vqc``: feature map (default ``zz``) then ansatz (default ``real_amplitudes``), as the paper's
  genomic code (qiskit-machine-learning ``VQC``); readout over all qubits (``mod`` or ``parity``).
* ``qcnn``: feature map (default ``z``) then the convolution / pooling layers of the
  qiskit-machine-learning QCNN tutorial, pooling until ``ceil(log2 C)`` qubits remain; those readout
  qubits' bitstring ``b`` maps to class ``b mod C``. Unlike the paper's code (three copies of one
  observable, D11 in ``docs/differences.md``), this separates 3 classes.
* ``reuploading``: data re-uploading (Pérez-Salinas et al. 2020): ``ansatz reps`` layers, each the
  feature map (default ``z``) followed by one layer of the ansatz with its own weights, so the
  inputs enter the circuit once per layer; readout as ``vqc``.

A model class has ``build(spec: ModelSpec) -> QuantumModel``; a new one is one such class.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from qiskit.circuit import Parameter, ParameterVector, QuantumCircuit

from llmqfl.errors import ConfigError
from llmqfl.quantum.models.circuits import ModelSpec, QuantumModel, mod_readout, parity_readout
from llmqfl.registry import get, register

if TYPE_CHECKING:
    from llmqfl.quantum.models.ansatze import Ansatz  # the registry imports the built-ins when first asked

DEFAULT_ANSATZ = "real_amplitudes"


@runtime_checkable
class ModelBuilder(Protocol):
    """``build(spec)``: the model's circuit, its input and weight parameters and its readout."""

    def build(self, spec: ModelSpec) -> QuantumModel: ...


def feature_map_circuit(spec: ModelSpec, default: str) -> QuantumCircuit:
    """The configured (or the model's default) feature map, checked to take one input per qubit."""
    circuit = get("feature_map", spec.feature_map or default)().circuit(spec.n_qubits, spec.feature_map_reps)
    if circuit.num_qubits != spec.n_qubits or circuit.num_parameters != spec.n_qubits:
        raise ConfigError(
            f"config error: qfl.feature_map.name: {spec.feature_map or default!r} must give a {spec.n_qubits}-qubit "
            f"circuit with {spec.n_qubits} inputs, got {circuit.num_qubits} qubits and {circuit.num_parameters} inputs"
        )
    return circuit


def configured_ansatz(spec: ModelSpec) -> Ansatz:
    """The configured (or default) ansatz, looked up in the registry once per model."""
    return get("ansatz", spec.ansatz or DEFAULT_ANSATZ)()


def ansatz_circuit(spec: ModelSpec, reps: int, prefix: str = "θ", ansatz: Ansatz | None = None) -> QuantumCircuit:
    """The configured (or default) ansatz with ``reps`` repetitions and parameters named from ``prefix``.

    ``ansatz``: the one :func:`configured_ansatz` returned, for a model that asks for several layers.
    """
    circuit = (configured_ansatz(spec) if ansatz is None else ansatz).circuit(spec.n_qubits, reps, prefix)
    if circuit.num_qubits != spec.n_qubits or circuit.num_parameters == 0:
        raise ConfigError(
            f"config error: qfl.ansatz.name: {spec.ansatz!r} must give a {spec.n_qubits}-qubit circuit with weights"
        )
    return circuit


def _readout(spec: ModelSpec, kind: str) -> np.ndarray:
    if spec.readout == "parity":
        if spec.n_classes != 2:
            classes = spec.n_classes
            raise ConfigError(f"qfl.readout: 'parity' is defined for the 2-class VQC only, not {classes} classes")
        return parity_readout(spec.n_qubits)
    return mod_readout(spec.n_qubits, spec.n_classes)


@register("model", "vqc")
class VQC:
    def build(self, spec: ModelSpec) -> QuantumModel:
        feature_map = feature_map_circuit(spec, "zz")
        ansatz = ansatz_circuit(spec, spec.ansatz_reps)
        circuit = QuantumCircuit(spec.n_qubits)
        circuit.compose(feature_map, inplace=True)
        circuit.compose(ansatz, inplace=True)
        return QuantumModel(
            kind="vqc",
            n_qubits=spec.n_qubits,
            n_classes=spec.n_classes,
            circuit=circuit,
            input_params=tuple(feature_map.parameters),
            weight_params=tuple(ansatz.parameters),
            readout=_readout(spec, "vqc"),
            readout_qubits=tuple(range(spec.n_qubits)),
            readout_rule=spec.readout,
        )


@register("model", "reuploading")
class Reuploading:
    def build(self, spec: ModelSpec) -> QuantumModel:
        feature_map = feature_map_circuit(spec, "z")
        circuit = QuantumCircuit(spec.n_qubits)
        weights: list[Parameter] = []
        ansatz = configured_ansatz(spec)  # one lookup, one layer per repetition
        for layer in range(spec.ansatz_reps):
            circuit.compose(feature_map, inplace=True)
            block = ansatz_circuit(spec, 1, prefix=f"w{layer}", ansatz=ansatz)
            circuit.compose(block, inplace=True)
            weights.extend(block.parameters)
        return QuantumModel(
            kind="reuploading",
            n_qubits=spec.n_qubits,
            n_classes=spec.n_classes,
            circuit=circuit,
            input_params=tuple(feature_map.parameters),
            weight_params=tuple(weights),
            readout=_readout(spec, "reuploading"),
            readout_qubits=tuple(range(spec.n_qubits)),
            readout_rule=spec.readout,
        )


@register("model", "qcnn")
class QCNN:
    def build(self, spec: ModelSpec) -> QuantumModel:
        if spec.readout != "mod":
            raise ConfigError("qfl.readout: 'parity' is defined for the 2-class VQC only")
        if spec.n_qubits < 2:
            raise ConfigError("qfl.n_qubits: a QCNN needs at least 2 qubits")
        return _build_qcnn(spec.n_qubits, spec.n_classes, feature_map_circuit(spec, "z"))


def _conv_block(circuit: QuantumCircuit, params: list[Parameter], q1: int, q2: int) -> None:
    """Two-qubit convolution unit of the qiskit-ml QCNN tutorial (3 weights)."""
    circuit.rz(-np.pi / 2, q2)
    circuit.cx(q2, q1)
    circuit.rz(params[0], q1)
    circuit.ry(params[1], q2)
    circuit.cx(q1, q2)
    circuit.ry(params[2], q2)
    circuit.cx(q2, q1)
    circuit.rz(np.pi / 2, q1)


def _pool_block(circuit: QuantumCircuit, params: list[Parameter], source: int, sink: int) -> None:
    """Two-qubit pooling unit of the qiskit-ml QCNN tutorial (3 weights): folds ``source`` into ``sink``."""
    circuit.rz(-np.pi / 2, sink)
    circuit.cx(sink, source)
    circuit.rz(params[0], source)
    circuit.ry(params[1], sink)
    circuit.cx(source, sink)
    circuit.ry(params[2], sink)


def _conv_pairs(active: list[int]) -> list[tuple[int, int]]:
    """Neighbour pairs as in the tutorial's conv_layer: even pairs, then odd pairs wrapping to the first."""
    pairs = list(zip(active[0::2], active[1::2], strict=False))
    if len(active) > 2:
        pairs += list(zip(active[1::2], [*active[2::2], active[0]], strict=False))
    elif len(active) == 2:
        pairs.append((active[1], active[0]))
    return pairs


def _build_qcnn(n_qubits: int, n_classes: int, feature_map: QuantumCircuit) -> QuantumModel:
    n_readout = max(1, math.ceil(math.log2(n_classes)))
    ansatz = QuantumCircuit(n_qubits)
    weights: list[Parameter] = []
    active = list(range(n_qubits))
    layer = 0

    def conv(qubits: list[int]) -> None:
        pairs = _conv_pairs(qubits)
        vector = ParameterVector(f"c{layer}", 3 * len(pairs))
        for index, (q1, q2) in enumerate(pairs):
            _conv_block(ansatz, list(vector[3 * index : 3 * index + 3]), q1, q2)
        weights.extend(vector)

    while len(active) > n_readout:
        layer += 1
        conv(active)
        n_drop = min(len(active) // 2, len(active) - n_readout)
        sources, sinks = active[:n_drop], active[n_drop : 2 * n_drop]
        vector = ParameterVector(f"p{layer}", 3 * n_drop)
        for index, (source, sink) in enumerate(zip(sources, sinks, strict=True)):
            _pool_block(ansatz, list(vector[3 * index : 3 * index + 3]), source, sink)
        weights.extend(vector)
        active = active[n_drop:]
    if len(active) >= 2:  # let the readout qubits interact before measurement (3-4 classes)
        layer += 1
        conv(active)

    circuit = QuantumCircuit(n_qubits)
    circuit.compose(feature_map, inplace=True)
    circuit.compose(ansatz, inplace=True)
    return QuantumModel(
        kind="qcnn",
        n_qubits=n_qubits,
        n_classes=n_classes,
        circuit=circuit,
        input_params=tuple(feature_map.parameters),
        weight_params=tuple(weights),
        readout=mod_readout(len(active), n_classes),
        readout_qubits=tuple(active),
        readout_rule="mod",
    )
