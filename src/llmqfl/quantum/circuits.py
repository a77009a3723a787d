"""Quantum models: feature map + trainable ansatz + a readout that maps measured bitstrings to classes.

Two kinds, both built from qiskit 2.x function-form library circuits:

* ``vqc``: ``zz_feature_map(n, reps)`` then ``real_amplitudes(n, reps)``, as the paper's genomic code
  (qiskit-machine-learning ``VQC``). Readout over all qubits. ``readout="mod"`` (default) maps the
  measured integer ``b`` to class ``b mod C``: this is exactly qiskit-ml's ``VQC`` interpret (its
  function is named ``parity`` but computes ``x % num_classes``; for 2 classes that is the value of
  qubit 0), so our loss equals the peer's. ``readout="parity"`` (2 classes only) uses the true parity
  of all bits.
* ``qcnn``: ``z_feature_map`` then the convolution / pooling layers of the qiskit-machine-learning QCNN
  tutorial, pooling until ``ceil(log2 C)`` qubits remain; those readout qubits' bitstring ``b`` maps
  to class ``b mod C``. Unlike the paper's code (three copies of one observable, gap G11), this
  separates 3 classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from qiskit.circuit import Parameter, ParameterExpression, ParameterVector, QuantumCircuit
from qiskit.circuit.library import real_amplitudes, z_feature_map, zz_feature_map

from llmqfl.errors import ConfigError

MODEL_KINDS = ("vqc", "qcnn")
READOUTS = ("mod", "parity")
# Gates of the form exp(-i theta G / 2) with G^2 = I (p equals rz up to a global phase): for a weight
# that enters exactly one of them with coefficient 1, the +-pi/2 parameter-shift rule is exact.
_SHIFT_RULE_GATES = frozenset({"rx", "ry", "rz", "p"})


@dataclass(frozen=True, eq=False)
class QuantumModel:
    """A measurement-free parameterised circuit plus the bitstring -> class readout.

    ``readout[c, b] = 1`` when the bitstring ``b`` of ``readout_qubits`` (bit ``k`` of ``b`` is qubit
    ``readout_qubits[k]``, qiskit's little-endian order) is read as class ``c``.
    """

    kind: str
    n_qubits: int
    n_classes: int
    circuit: QuantumCircuit
    input_params: tuple[Parameter, ...]
    weight_params: tuple[Parameter, ...]
    readout: np.ndarray
    readout_qubits: tuple[int, ...]
    readout_rule: str = "mod"
    _full_readout: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_full_readout", _expand_readout(self.readout, self.readout_qubits, self.n_qubits))

    @property
    def n_params(self) -> int:
        """Number of trainable weights."""
        return len(self.weight_params)

    @property
    def n_inputs(self) -> int:
        """Number of input features (one angle per input parameter)."""
        return len(self.input_params)

    @property
    def full_readout(self) -> np.ndarray:
        """(n_classes, 2**n_qubits) 0/1 matrix over bitstrings of ALL qubits (marginalises the rest)."""
        return self._full_readout

    @property
    def shift_rule_exact(self) -> bool:
        """True when every weight enters exactly one rx/ry/rz/p gate as the bare parameter."""
        return _shift_rule_exact(self.circuit, self.weight_params)


def build_model(
    *,
    kind: str,
    n_qubits: int,
    n_classes: int,
    feature_map_reps: int = 1,
    ansatz_reps: int = 3,
    readout: str = "mod",
) -> QuantumModel:
    """Build a VQC or QCNN for ``n_qubits`` features and ``n_classes`` classes."""
    _validate(kind, n_qubits, n_classes, feature_map_reps, ansatz_reps, readout)
    if kind == "vqc":
        return _build_vqc(n_qubits, n_classes, feature_map_reps, ansatz_reps, readout)
    return _build_qcnn(n_qubits, n_classes, feature_map_reps)


def _validate(kind: str, n_qubits: int, n_classes: int, fm_reps: int, ansatz_reps: int, readout: str) -> None:
    if kind not in MODEL_KINDS:
        raise ConfigError(f"qfl.model: {kind!r} is not one of: {', '.join(MODEL_KINDS)}")
    if readout not in READOUTS:
        raise ConfigError(f"qfl.readout: {readout!r} is not one of: {', '.join(READOUTS)}")
    if not isinstance(n_qubits, int | np.integer) or n_qubits < 1:
        raise ConfigError(f"qfl.n_qubits: must be a positive integer, got {n_qubits!r}")
    if not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise ConfigError(f"n_classes: need at least 2 classes, got {n_classes!r}")
    if fm_reps < 1 or ansatz_reps < 1:
        raise ConfigError(f"qfl.feature_map_reps / qfl.ansatz_reps: must be >= 1, got {fm_reps}, {ansatz_reps}")
    if n_classes > 2**n_qubits:
        raise ConfigError(f"qfl.n_qubits: {n_qubits} qubits cannot read out {n_classes} classes")
    if readout == "parity" and (kind != "vqc" or n_classes != 2):
        raise ConfigError("qfl.readout: 'parity' is defined for the 2-class VQC only")
    if kind == "qcnn" and n_qubits < 2:
        raise ConfigError("qfl.n_qubits: a QCNN needs at least 2 qubits")


def _mod_readout(n_bits: int, n_classes: int) -> np.ndarray:
    bitstrings = np.arange(2**n_bits)
    return (bitstrings[None, :] % n_classes == np.arange(n_classes)[:, None]).astype(np.float64)


def _parity_readout(n_bits: int) -> np.ndarray:
    parity = np.array([bin(b).count("1") % 2 for b in range(2**n_bits)])
    return (parity[None, :] == np.arange(2)[:, None]).astype(np.float64)


def _expand_readout(readout: np.ndarray, readout_qubits: tuple[int, ...], n_qubits: int) -> np.ndarray:
    full_index = np.arange(2**n_qubits)
    sub_index = np.zeros_like(full_index)
    for k, qubit in enumerate(readout_qubits):
        sub_index |= ((full_index >> qubit) & 1) << k
    return readout[:, sub_index]


def _build_vqc(n_qubits: int, n_classes: int, fm_reps: int, ansatz_reps: int, readout: str) -> QuantumModel:
    feature_map = zz_feature_map(n_qubits, reps=fm_reps)
    ansatz = real_amplitudes(n_qubits, reps=ansatz_reps)
    circuit = QuantumCircuit(n_qubits)
    circuit.compose(feature_map, inplace=True)
    circuit.compose(ansatz, inplace=True)
    matrix = _parity_readout(n_qubits) if readout == "parity" else _mod_readout(n_qubits, n_classes)
    return QuantumModel(
        kind="vqc",
        n_qubits=n_qubits,
        n_classes=n_classes,
        circuit=circuit,
        input_params=tuple(feature_map.parameters),
        weight_params=tuple(ansatz.parameters),
        readout=matrix,
        readout_qubits=tuple(range(n_qubits)),
        readout_rule=readout,
    )


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


def _build_qcnn(n_qubits: int, n_classes: int, fm_reps: int) -> QuantumModel:
    n_readout = max(1, math.ceil(math.log2(n_classes)))
    feature_map = z_feature_map(n_qubits, reps=fm_reps)
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
        readout=_mod_readout(len(active), n_classes),
        readout_qubits=tuple(active),
        readout_rule="mod",
    )


def _shift_rule_exact(circuit: QuantumCircuit, weight_params: tuple[Parameter, ...]) -> bool:
    uses = dict.fromkeys(weight_params, 0)
    for instruction in circuit.data:
        for value in instruction.operation.params:
            if not isinstance(value, ParameterExpression):
                continue
            touched = [p for p in value.parameters if p in uses]
            if not touched:
                continue
            if instruction.operation.name not in _SHIFT_RULE_GATES or len(value.parameters) != 1:
                return False
            if not (isinstance(value, Parameter) or value == touched[0]):
                return False
            uses[touched[0]] += 1
    return all(count == 1 for count in uses.values())
