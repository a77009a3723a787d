"""A small batched statevector engine for the exact path (ideal simulator, no shots).

Why not one qiskit ``Statevector`` per item: an objective evaluation would then cost one circuit
simulation per item. Instead the circuit is compiled once into a list of gate operations whose
angles are vectorised functions of the parameters; the feature-map states of a whole feature array
are computed in one batched pass (and cached by content hash), the ansatz unitary once per weight
set (again batched over sets), and all items x all weight sets then come from one matrix product.
Results agree with ``qiskit.quantum_info.Statevector`` to ~1e-14 (tested).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy
from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit
from qiskit.quantum_info import Operator
from threadpoolctl import ThreadpoolController

from llmqfl.quantum.models.circuits import QuantumModel

_ROTATIONS = ("rx", "ry", "rz", "p")
# Our matrices are tiny (2**n x 2**n); multi-threaded BLAS only adds thread wake-ups, which cost 5-10x
# on a busy machine (measured: a 512x16 @ 16x16 product, 0.93 ms with 2 OpenBLAS threads vs 0.16 ms
# with 1). Up to this size the engine runs single-threaded BLAS.
_SINGLE_THREAD_MAX_DIM = 256
_BLAS = ThreadpoolController()


def single_threaded_blas() -> Any:
    """Context manager: single-threaded BLAS for the small matrices of training and evaluation."""
    return _BLAS.limit(limits=1, user_api="blas")


_SKIP = frozenset({"barrier", "delay"})


@dataclass(frozen=True)
class _Op:
    """One gate, as full-size index data so that applying it is a few vectorised numpy operations.

    Exactly one of: ``permutation`` (out[i] = in[perm[i]]), ``diagonal`` (out = d * in), ``pair``
    (out = a * in + b * in[flip], a fixed one-qubit gate), ``angle`` (a rotation rx/ry/rz/p whose
    angle is a vectorised function of the parameter columns), or ``matrix`` (full 2**n matrix).
    """

    name: str
    qubits: tuple[int, ...]
    matrix: np.ndarray | None = None
    permutation: np.ndarray | None = None
    diagonal: np.ndarray | None = None
    pair: tuple[np.ndarray, np.ndarray] | None = None
    flip: np.ndarray | None = None
    bit: np.ndarray | None = None
    angle: Callable[[np.ndarray], np.ndarray] | None = None
    layer: tuple[_Op, ...] | None = None
    columns: np.ndarray | None = None  # rotation / layer angles that are bare parameters: their columns


_MAX_LAYER_QUBITS = 8  # fuse a layer of rotations into one 2**n matrix per set only while that is cheap


def _angle_function(value: object, index: dict[Parameter, int]) -> Callable[[np.ndarray], np.ndarray]:
    """Vectorised angle: columns of a (batch, n_params) array -> (batch,) angles."""
    if isinstance(value, Parameter):
        column = index[value]
        return lambda values: values[:, column]
    if isinstance(value, ParameterExpression):
        params = sorted(value.parameters, key=lambda p: p.name)
        columns = [index[p] for p in params]
        symbols = [sympy.Symbol(p.name) for p in params]
        function = sympy.lambdify(symbols, value.sympify(), modules="numpy", dummify=True)

        def evaluate(values: np.ndarray) -> np.ndarray:
            out = function(*(values[:, c] for c in columns))
            return np.broadcast_to(np.asarray(out, dtype=np.float64), values.shape[:1])

        return evaluate
    constant = float(value)  # type: ignore[arg-type]
    return lambda values: np.full(values.shape[0], constant)


def _local_indices(qubits: tuple[int, ...], n_qubits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every basis index: its full index, the gate-local index, and the index with gate bits cleared."""
    basis = np.arange(2**n_qubits)
    local = np.zeros_like(basis)
    for pos, qubit in enumerate(qubits):
        local |= ((basis >> qubit) & 1) << pos
    rest = basis.copy()
    for qubit in qubits:
        rest &= ~(1 << qubit)
    return basis, local, rest


def _fixed_op(name: str, qubits: tuple[int, ...], matrix: np.ndarray, n_qubits: int) -> _Op:
    """Fixed gate; permutation and diagonal gates (cx, swap, cz, ...) become index / phase vectors."""
    basis, local, rest = _local_indices(qubits, n_qubits)
    magnitude = np.abs(matrix)
    unit_entries = np.all((magnitude < 1e-12) | (np.abs(magnitude - 1) < 1e-12))
    one_per_row = np.all((magnitude > 0.5).sum(axis=1) == 1) and np.all((magnitude > 0.5).sum(axis=0) == 1)
    if unit_entries and one_per_row:
        if np.allclose(matrix, np.diag(np.diag(matrix))):
            return _Op(name, qubits, diagonal=np.diag(matrix)[local].astype(np.complex128))
        if np.allclose(matrix[magnitude > 0.5], 1):
            source_local = np.argmax(magnitude, axis=1)[local]
            source = rest.copy()
            for pos, qubit in enumerate(qubits):
                source |= ((source_local >> pos) & 1) << qubit
            return _Op(name, qubits, permutation=source)
    if len(qubits) == 1:
        bit = local
        a = matrix[bit, bit].astype(np.complex128)
        b = matrix[bit, 1 - bit].astype(np.complex128)
        return _Op(name, qubits, pair=(a, b), flip=basis ^ (1 << qubits[0]))
    full = np.where(rest[:, None] == rest[None, :], matrix[local[:, None], local[None, :]], 0.0)
    return _Op(name, qubits, matrix=full.astype(np.complex128))


def _merge(ops: list[_Op], n_qubits: int) -> list[_Op]:
    """Fuse runs of fixed permutations (e.g. a CX ladder), of fixed diagonals, and of parameterised
    rotations on distinct qubits (a RealAmplitudes layer) into one op each: fewer numpy calls."""
    merged: list[_Op] = []
    for op in ops:
        last = merged[-1] if merged else None
        if (
            n_qubits <= _MAX_LAYER_QUBITS
            and op.angle is not None
            and last is not None
            and (last.angle is not None or last.layer is not None)
            and op.qubits[0] not in last.qubits
        ):
            members = (*(last.layer if last.layer is not None else (last,)), op)
            same = all(m.name == op.name and m.columns is not None for m in members)
            columns = np.concatenate([m.columns for m in members]) if same else None
            merged[-1] = _Op("layer", last.qubits + op.qubits, layer=members, columns=columns)
        elif last is not None and op.permutation is not None and last.permutation is not None:
            merged[-1] = _Op("perm", last.qubits + op.qubits, permutation=last.permutation[op.permutation])
        elif last is not None and op.diagonal is not None and last.diagonal is not None:
            merged[-1] = _Op("diag", last.qubits + op.qubits, diagonal=last.diagonal * op.diagonal)
        else:
            merged.append(op)
    return merged


def compile_ops(circuit: QuantumCircuit, params: Sequence[Parameter]) -> list[_Op]:
    """Compile ``circuit`` into batched ops whose angles read columns of a (batch, len(params)) array."""
    return _merge(_compile(circuit, params), circuit.num_qubits)


def _compile(circuit: QuantumCircuit, params: Sequence[Parameter]) -> list[_Op]:
    index = {p: i for i, p in enumerate(params)}
    n_qubits = circuit.num_qubits
    basis = np.arange(2**n_qubits)
    ops: list[_Op] = []
    for instruction in circuit.data:
        operation = instruction.operation
        if operation.name in _SKIP:
            continue
        qubits = tuple(circuit.find_bit(q).index for q in instruction.qubits)
        symbolic = any(isinstance(v, ParameterExpression) and v.parameters for v in operation.params)
        if not symbolic:
            ops.append(_fixed_op(operation.name, qubits, Operator(operation).data, n_qubits))
        elif operation.name in _ROTATIONS:
            value = operation.params[0]
            column = np.array([index[value]]) if isinstance(value, Parameter) else None
            ops.append(
                _Op(
                    operation.name,
                    qubits,
                    angle=_angle_function(value, index),
                    flip=basis ^ (1 << qubits[0]),
                    bit=(basis >> qubits[0]) & 1,
                    columns=column,
                )
            )
        elif operation.definition is not None:
            sub = QuantumCircuit(n_qubits)
            sub.compose(operation.definition, qubits=list(qubits), inplace=True)
            ops.extend(_compile(sub, params))
        else:
            raise NotImplementedError(f"exact path: parameterised gate {operation.name!r} is not supported")
    return ops


def _apply_rotation(state: np.ndarray, op: _Op, theta: np.ndarray) -> np.ndarray:
    """rx/ry/rz/p with per-batch angles on a (batch, extra, dim) state."""
    theta = theta[:, None, None]
    if op.name == "rz":
        return state * np.exp(0.5j * theta * (2 * op.bit - 1))
    if op.name == "p":
        return state * np.exp(1j * theta * op.bit)
    cos, sin = np.cos(theta / 2), np.sin(theta / 2)
    flipped = state[:, :, op.flip]
    if op.name == "ry":  # out0 = c in0 - s in1, out1 = s in0 + c in1
        return cos * state + (sin * (2 * op.bit - 1)) * flipped
    return cos * state - 1j * sin * flipped  # rx


def _single_qubit_matrices(op: _Op, theta: np.ndarray) -> np.ndarray:
    """(batch, 2, 2) matrices of one rx/ry/rz/p op for a vector of angles."""
    out = np.zeros((theta.shape[0], 2, 2), dtype=np.complex128)
    if op.name in ("rz", "p"):
        phase = np.exp(1j * theta)
        if op.name == "rz":
            half = np.exp(0.5j * theta)
            out[:, 0, 0], out[:, 1, 1] = 1 / half, half
        else:
            out[:, 0, 0], out[:, 1, 1] = 1.0, phase
        return out
    cos, sin = np.cos(theta / 2), np.sin(theta / 2)
    if op.name == "ry":
        out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = cos, -sin, sin, cos
    else:
        out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = cos, -1j * sin, -1j * sin, cos
    return out


def _layer_matrix(op: _Op, values: np.ndarray, n_qubits: int) -> np.ndarray:
    """(batch, 2**n, 2**n) Kronecker product of the layer's rotations (identity on other qubits)."""
    batch = values.shape[0]
    if op.columns is not None and op.layer[0].name == "ry":  # fast path: one gather, one cos, one sin
        half = values[:, op.columns] / 2
        cos, sin = np.cos(half), np.sin(half)
        stacked = np.stack([cos, -sin, sin, cos], axis=-1).reshape(batch, len(op.layer), 2, 2).astype(np.complex128)
        per_qubit = {member.qubits[0]: stacked[:, k] for k, member in enumerate(op.layer)}
    else:
        per_qubit = {member.qubits[0]: _single_qubit_matrices(member, member.angle(values)) for member in op.layer}
    identity = np.broadcast_to(np.eye(2, dtype=np.complex128), (batch, 2, 2))
    full = per_qubit.get(n_qubits - 1, identity)
    for qubit in range(n_qubits - 2, -1, -1):  # qubit 0 is the least significant bit
        factor = per_qubit.get(qubit, identity)
        dim = full.shape[1]
        full = (full[:, :, None, :, None] * factor[:, None, :, None, :]).reshape(batch, 2 * dim, 2 * dim)
    return full


def _full_ry_layers(ops: Sequence[_Op], n_qubits: int) -> tuple[list[int], np.ndarray] | None:
    """Positions of the RY layers that cover every qubit with bare parameters (a RealAmplitudes layer),
    and their parameter columns ordered from qubit n-1 down to 0, so all can be built in one pass."""
    positions, columns = [], []
    for position, op in enumerate(ops):
        if (
            op.layer is not None
            and op.columns is not None
            and op.layer[0].name == "ry"
            and sorted(op.qubits) == list(range(n_qubits))
        ):
            by_qubit = {member.qubits[0]: column for member, column in zip(op.layer, op.columns, strict=True)}
            positions.append(position)
            columns.append([by_qubit[q] for q in range(n_qubits - 1, -1, -1)])
    return (positions, np.array(columns)) if positions else None


def _ry_layer_matrices(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(batch, n_layers, 2**n, 2**n) Kronecker products of RY layers, all layers in one vectorised pass."""
    batch, n_layers, n_qubits = values.shape[0], columns.shape[0], columns.shape[1]
    half = values[:, columns] / 2  # (batch, layers, qubits high -> low)
    cos, sin = np.cos(half), np.sin(half)
    rotations = np.stack([cos, -sin, sin, cos], axis=-1).reshape(batch, n_layers, n_qubits, 2, 2)
    full = rotations[:, :, 0]
    for index in range(1, n_qubits):
        dim = full.shape[-1]
        factor = rotations[:, :, index]
        full = (full[..., :, None, :, None] * factor[:, :, None, :, None, :]).reshape(batch, n_layers, 2 * dim, 2 * dim)
    return full


def apply_ops(
    state: np.ndarray,
    ops: Sequence[_Op],
    values: np.ndarray,
    n_qubits: int,
    ry_layers: tuple[list[int], np.ndarray] | None = None,
) -> np.ndarray:
    """Apply ops to ``state`` of shape (batch, extra, 2**n); ``values`` (batch, n_params) sets the angles.

    ``ry_layers`` (from :func:`_full_ry_layers`) lets every full RY layer be built in one batched pass.
    """
    prebuilt: dict[int, np.ndarray] = {}
    if ry_layers is not None:
        matrices = _ry_layer_matrices(values, ry_layers[1])
        prebuilt = {position: matrices[:, k] for k, position in enumerate(ry_layers[0])}
    for position, op in enumerate(ops):
        if position in prebuilt:
            state = np.matmul(state, prebuilt[position].transpose(0, 2, 1))
        elif op.layer is not None:
            state = np.matmul(state, _layer_matrix(op, values, n_qubits).transpose(0, 2, 1))
        elif op.angle is not None:
            state = _apply_rotation(state, op, op.angle(values))
        elif op.permutation is not None:
            state = state[:, :, op.permutation]
        elif op.diagonal is not None:
            state = state * op.diagonal
        elif op.pair is not None:
            state = op.pair[0] * state + op.pair[1] * state[:, :, op.flip]
        else:
            state = state @ op.matrix.T
    return state


def _split_model(model: QuantumModel) -> tuple[QuantumCircuit, QuantumCircuit]:
    """Split the model circuit into the input-only prefix and the weight-only suffix."""
    inputs, weights = set(model.input_params), set(model.weight_params)
    feature = QuantumCircuit(model.n_qubits)
    ansatz = QuantumCircuit(model.n_qubits)
    in_ansatz = False
    for instruction in model.circuit.data:
        used = set()
        for value in instruction.operation.params:
            if isinstance(value, ParameterExpression):
                used |= set(value.parameters)
        if used & weights:
            in_ansatz = True
        if in_ansatz and used & inputs:
            raise NotImplementedError("exact path: inputs must be encoded before the first trainable gate")
        (ansatz if in_ansatz else feature).append(instruction)
    return feature, ansatz


class ExactEngine:
    """Batched exact class probabilities; feature states cached by content hash (LRU)."""

    def __init__(self, model: QuantumModel, *, cache_size: int = 512) -> None:
        self._n = model.n_qubits
        self._readout_t = model.full_readout.T.copy()
        self._interleaved: list[_Op] | None = None
        try:
            feature, ansatz = _split_model(model)
        except NotImplementedError:  # inputs after trainable gates (data re-uploading): one pass per (set, item)
            self._interleaved = compile_ops(model.circuit, (*model.input_params, *model.weight_params))
            return
        self._feature_ops = compile_ops(feature, model.input_params)
        self._ansatz_ops = compile_ops(ansatz, model.weight_params)
        self._ry_layers = _full_ry_layers(self._ansatz_ops, self._n) if self._n <= _MAX_LAYER_QUBITS else None
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def feature_states(self, features: np.ndarray) -> np.ndarray:
        """(n_items, 2**n) states after the feature map, cached per distinct feature array."""
        key = hashlib.blake2b(np.ascontiguousarray(features, dtype=np.float64).tobytes(), digest_size=16)
        key.update(repr(features.shape).encode())
        digest = key.digest()
        if digest in self._cache:
            self._cache.move_to_end(digest)
            return self._cache[digest]
        start = np.zeros((features.shape[0], 1, 2**self._n), dtype=np.complex128)
        start[:, 0, 0] = 1.0
        states = apply_ops(start, self._feature_ops, features, self._n)[:, 0, :]
        self._cache[digest] = states
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return states

    def unitaries(self, weights: np.ndarray) -> np.ndarray:
        """(n_sets, 2**n, 2**n) ansatz unitaries, stored as rows: ``result[s] = U_s.T``."""
        dim = 2**self._n
        start = np.broadcast_to(np.eye(dim, dtype=np.complex128), (weights.shape[0], dim, dim)).copy()
        return apply_ops(start, self._ansatz_ops, weights, self._n, self._ry_layers)

    def probabilities(self, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(n_sets, n_items, n_classes) for features (n_items, n_inputs) and weights (n_sets, n_params)."""
        if 2**self._n > _SINGLE_THREAD_MAX_DIM:
            return self._probabilities(features, weights)
        with single_threaded_blas():
            return self._probabilities(features, weights)

    def _probabilities(self, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return self.basis_probabilities(features, weights) @ self._readout_t

    def basis_probabilities(self, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(n_sets, n_items, 2**n) probabilities of every bitstring of all qubits."""
        if self._interleaved is not None:
            n_sets, n_items = weights.shape[0], features.shape[0]
            values = np.concatenate(
                [np.tile(features, (n_sets, 1)), np.repeat(weights, n_items, axis=0)], axis=1
            )  # row s * n_items + i: item i under weight set s
            start = np.zeros((len(values), 1, 2**self._n), dtype=np.complex128)
            start[:, 0, 0] = 1.0
            final = apply_ops(start, self._interleaved, values, self._n)[:, 0, :].reshape(n_sets, n_items, -1)
        else:
            final = np.matmul(self.feature_states(features)[None], self.unitaries(weights))
        return final.real**2 + final.imag**2
