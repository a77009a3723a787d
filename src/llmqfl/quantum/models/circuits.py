"""Quantum models: feature map + trainable ansatz + a readout that maps measured bitstrings to classes.

:class:`QuantumModel` is what every evaluator runs. :func:`build_model` looks the model kind up in
the registry (``llmqfl.registry`` kind ``model``; the built-ins ``vqc``, ``qcnn`` and ``reuploading``
live in :mod:`llmqfl.quantum.models.model_kinds`, their feature maps and ansätze in
:mod:`llmqfl.quantum.models.feature_maps` and :mod:`llmqfl.quantum.models.ansatze`);
:func:`configured_model` builds the one a run's ``qfl`` section (:class:`~llmqfl.settings.QflSettings`) names.

Readouts: ``mod`` maps the measured integer ``b`` of the readout qubits to class ``b mod C``; this is
exactly qiskit-ml's ``VQC`` interpret (its function is named ``parity`` but computes
``x % num_classes``; for 2 classes that is the value of qubit 0), so our loss equals the peer's.
``parity`` (2 classes only) uses the true parity of all bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit

from llmqfl.errors import ConfigError

if TYPE_CHECKING:
    from llmqfl.settings import QflSettings

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


@dataclass(frozen=True)
class ModelSpec:
    """What a model builder gets: sizes, and the feature map / ansatz names and reps (None = the model's own)."""

    n_qubits: int
    n_classes: int
    feature_map: str | None = None
    feature_map_reps: int = 1
    ansatz: str | None = None
    ansatz_reps: int = 3
    readout: str = "mod"


def build_model(
    *,
    kind: str,
    n_qubits: int,
    n_classes: int,
    feature_map_reps: int = 1,
    ansatz_reps: int = 3,
    readout: str = "mod",
    feature_map: str | None = None,
    ansatz: str | None = None,
) -> QuantumModel:
    """Build the registered model ``kind`` for ``n_qubits`` features and ``n_classes`` classes."""
    from llmqfl.registry import get, names

    if kind not in names("model"):
        raise ConfigError(f"qfl.model: {kind!r} is not one of: {', '.join(names('model'))}")
    _validate(n_qubits, n_classes, feature_map_reps, ansatz_reps, readout)
    spec = ModelSpec(n_qubits, n_classes, feature_map, feature_map_reps, ansatz, ansatz_reps, readout)
    return get("model", kind)().build(spec)


def configured_model(qfl: QflSettings, n_classes: int) -> QuantumModel:
    """The run's model from its ``qfl`` section: ``qfl.model`` with ``qfl.feature_map`` and ``qfl.ansatz``
    (each a name, None for the model's own, and reps, None for ``qfl.feature_map_reps`` / ``qfl.ansatz_reps``)
    and ``qfl.readout``."""
    return build_model(
        kind=qfl.model,
        n_qubits=qfl.n_qubits,
        n_classes=n_classes,
        feature_map_reps=qfl.feature_map.reps or qfl.feature_map_reps,
        ansatz_reps=qfl.ansatz.reps or qfl.ansatz_reps,
        readout=qfl.readout,
        feature_map=qfl.feature_map.name,
        ansatz=qfl.ansatz.name,
    )


def mod_readout(n_bits: int, n_classes: int) -> np.ndarray:
    """(C, 2**n_bits): bitstring b is class b mod C."""
    return _mod_readout(n_bits, n_classes)


def parity_readout(n_bits: int) -> np.ndarray:
    """(2, 2**n_bits): bitstring b is class parity(b)."""
    return _parity_readout(n_bits)


def _validate(n_qubits: int, n_classes: int, fm_reps: int, ansatz_reps: int, readout: str) -> None:
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
