"""Superoperators for :mod:`llmqfl.quantum.noisy_exact`: a noisy ISA circuit compiled and applied in numpy.

Each gate of the circuit becomes its unitary's superoperator followed by the noise model's quantum
error on its qubits (any ``QuantumError``, as its superoperator: what Aer's density-matrix method
applies); runs of one-qubit gates on a qubit are fused, and a fixed run joins the next two-qubit
gate. A stack of density matrices (or, in the Heisenberg picture, of measurement effects) is held
"pair-major" so that each step is one broadcast matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit.circuit import Parameter, ParameterExpression

from llmqfl.quantum.aer_sampler import DistributionPlan, readout_matrices

_ROTATIONS = frozenset({"rx", "ry", "rz", "p"})
_SKIP = frozenset({"barrier", "save_probabilities"})


class Unsupported(Exception):
    """The circuit or noise model is outside what this engine models; the caller uses Aer."""


# --------------------------------------------------------------------------- superoperators
# Row-major vectorisation: vec(rho)[i * D + j] = rho[i, j], so vec(A rho B) = (A kron B^T) vec(rho) and a
# unitary U is the superoperator U kron conj(U). A k-qubit operator's index has the gate's qubit 0 as
# its least significant bit (qiskit's order).


def unitary_superop(unitary: np.ndarray) -> np.ndarray:
    """U kron conj(U) for a (..., D, D) unitary -> (..., D*D, D*D)."""
    dim = unitary.shape[-1]
    full = unitary[..., :, None, :, None] * np.conj(unitary)[..., None, :, None, :]
    return full.reshape(*unitary.shape[:-2], dim * dim, dim * dim)


def error_superop(error: Any) -> np.ndarray:
    """A qiskit-aer ``QuantumError`` as a row-major superoperator (qiskit's SuperOp stacks columns)."""
    column = np.asarray(error.to_quantumchannel().data, dtype=np.complex128)
    dim = 2**error.num_qubits
    # column-stacked index = i + j * D  ->  tensor axes (j, i); row-major wants (i, j)
    tensor = column.reshape(dim, dim, dim, dim).transpose(1, 0, 3, 2)
    return np.ascontiguousarray(tensor.reshape(dim * dim, dim * dim))


def rotation_unitaries(name: str, theta: np.ndarray) -> np.ndarray:
    """(B, 2, 2) matrices of rx/ry/rz/p for a vector of angles."""
    out = np.zeros((theta.shape[0], 2, 2), dtype=np.complex128)
    if name == "rz":
        out[:, 0, 0], out[:, 1, 1] = np.exp(-0.5j * theta), np.exp(0.5j * theta)
    elif name == "p":
        out[:, 0, 0], out[:, 1, 1] = 1.0, np.exp(1j * theta)
    else:
        cos, sin = np.cos(theta / 2), np.sin(theta / 2)
        if name == "ry":
            out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = cos, -sin, sin, cos
        else:  # rx
            out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = cos, -1j * sin, -1j * sin, cos
    return out


# --------------------------------------------------------------------------- compiled circuit


@dataclass(frozen=True)
class _Gate:
    """One instruction on local qubits: a fixed superoperator, or a rotation whose angle is a parameter."""

    index: int  # position in the plan circuit
    qubits: tuple[int, ...]  # local qubit of gate qubit 0, 1, ...
    fixed: np.ndarray | None = None  # (4**k, 4**k), gate then its error
    rotation: str | None = None
    angle: Parameter | None = None  # a plain parameter of the plan circuit
    error: np.ndarray | None = None  # the rotation's error superoperator (None = ideal)


@dataclass(frozen=True)
class NoisyCircuit:
    """A plan circuit compiled to superoperators on its ``n_qubits`` active qubits."""

    n_qubits: int
    gates: tuple[_Gate, ...]
    measured: tuple[int, ...]  # local qubit of outcome bit j
    readout: tuple[np.ndarray, ...]  # confusion matrix of outcome bit j


def _error_for(noise_model: Any, name: str, qubits: tuple[int, ...]) -> Any:
    local = noise_model._local_quantum_errors.get(name, {})
    if qubits in local:
        return local[qubits]
    return noise_model._default_quantum_errors.get(name)


def compile_noisy(plan: DistributionPlan, noise_model: Any, *, max_qubits: int) -> NoisyCircuit:
    """Compile ``plan.circuit`` with ``noise_model``'s errors; :class:`Unsupported` when it does not fit."""
    from qiskit.quantum_info import Operator

    circuit = plan.circuit
    physical = [[circuit.find_bit(q).index for q in inst.qubits] for inst in circuit.data]
    active = sorted({q for inst, qs in zip(circuit.data, physical, strict=True)
                     if inst.operation.name not in _SKIP for q in qs} | set(plan.measured_qubits))
    if len(active) > max_qubits:
        raise Unsupported(f"{len(active)} active qubits (at most {max_qubits})")
    local_of = {q: i for i, q in enumerate(active)}
    matrices = readout_matrices(noise_model, plan.measured_qubits)
    if matrices is None:
        raise Unsupported("errors on measure or correlated readout errors")
    ideal = noise_model is None or noise_model.is_ideal()
    gates: list[_Gate] = []
    for index, (inst, qubits) in enumerate(zip(circuit.data, physical, strict=True)):
        operation = inst.operation
        if operation.name in _SKIP:
            continue
        if operation.name in ("delay", "reset", "measure") or inst.clbits:
            raise Unsupported(f"instruction {operation.name!r}")
        if len(qubits) > 2:
            raise Unsupported(f"{len(qubits)}-qubit gate {operation.name!r}")
        error = None if ideal else _error_for(noise_model, operation.name, tuple(qubits))
        error_op = None
        if error is not None:
            if error.num_qubits != len(qubits):
                raise Unsupported(f"a {error.num_qubits}-qubit error on the {len(qubits)}-qubit {operation.name!r}")
            error_op = error_superop(error)
        local = tuple(local_of[q] for q in qubits)
        symbolic = [p for p in operation.params if isinstance(p, ParameterExpression) and p.parameters]
        if symbolic:
            angle = operation.params[0]
            if operation.name not in _ROTATIONS or not isinstance(angle, Parameter):
                raise Unsupported(f"parameterised gate {operation.name!r}")
            gates.append(_Gate(index, local, rotation=operation.name, angle=angle, error=error_op))
            continue
        superop = unitary_superop(np.asarray(Operator(operation).data, dtype=np.complex128))
        if error_op is not None:
            superop = error_op @ superop
        gates.append(_Gate(index, local, fixed=superop))
    measured = tuple(local_of[q] for q in plan.measured_qubits)
    return NoisyCircuit(len(active), tuple(gates), measured, tuple(np.asarray(m) for m in matrices))


# --------------------------------------------------------------------------- applying superoperators
# The stack is held "pair-major": (B, 4, ..., 4) with one axis per qubit (qubit n-1 first) indexing the
# (row bit, column bit) pair r * 2 + c of that qubit. A one-qubit superoperator then acts on one axis
# (a plain broadcast matmul, no transpose), a two-qubit one on two adjacent axes the same way.


@dataclass(frozen=True)
class Step:
    """A superoperator on ``qubits`` (pair-major, higher qubit first): fixed, or a one-qubit run per binding."""

    qubits: tuple[int, ...]  # ascending
    fixed: np.ndarray | None  # (4**k, 4**k)
    parts: tuple[_Gate, ...] = ()  # one-qubit run (composed per binding) when ``fixed`` is None


def _pair_major(superop: np.ndarray, qubits: tuple[int, ...]) -> np.ndarray:
    """A row-major superoperator of a gate on local ``qubits`` -> pair-major, higher local qubit first."""
    if len(qubits) == 1:
        return superop  # (r, c) -> r * 2 + c already
    tensor = superop.reshape((2,) * 8)  # out r1 r0 c1 c0, in R1 R0 C1 C0 (gate qubit 1 = r1)
    order = (0, 2, 1, 3) if qubits[1] > qubits[0] else (1, 3, 0, 2)
    return tensor.transpose(*order, *(4 + o for o in order)).reshape(16, 16)


_EYE4 = np.eye(4, dtype=np.complex128)[None]


def _run_superop(parts: Sequence[_Gate], columns: dict[Parameter, np.ndarray]) -> np.ndarray:
    """(B, 4, 4) superoperator of a run of one-qubit gates (the first applied first), or (1, 4, 4) when
    every angle column has one value (a weight run in a one-weight-set call: one product, not one per row)."""
    angles = [columns[g.angle] for g in parts if g.fixed is None]
    size = max((a.shape[0] for a in angles), default=1)
    total: np.ndarray = _EYE4
    position = 0
    for gate in parts:
        if gate.fixed is not None:
            total = gate.fixed @ total
            continue
        theta = angles[position]
        position += 1
        if gate.rotation == "rz" and gate.error is None:  # diagonal (1, e^-i theta, e^i theta, 1): scale rows
            scale = np.ones((size, 4), dtype=np.complex128)
            scale[:, 2] = np.exp(1j * theta)
            scale[:, 1] = np.conj(scale[:, 2])
            total = scale[:, :, None] * total
            continue
        step = unitary_superop(rotation_unitaries(gate.rotation, theta))
        if gate.error is not None:
            step = gate.error @ step
        total = step @ total
    return total


def group_steps(gates: Sequence[_Gate]) -> list[Step]:
    """Group gates into steps: one-qubit runs fused per qubit; a fixed run joins the next two-qubit gate."""
    steps: list[Step] = []
    pending: dict[int, list[_Gate]] = {}

    def flush(qubit: int) -> None:
        run = pending.pop(qubit, None)
        if not run:
            return
        if all(g.fixed is not None for g in run):
            steps.append(Step((qubit,), _run_superop(run, {})[0]))
        else:
            steps.append(Step((qubit,), None, tuple(run)))

    for gate in gates:
        if len(gate.qubits) == 1:
            pending.setdefault(gate.qubits[0], []).append(gate)
            continue
        lo, hi = sorted(gate.qubits)
        before = np.eye(16, dtype=np.complex128)
        for qubit in (lo, hi):
            run = pending.get(qubit)
            if run and all(g.fixed is not None for g in run):
                single = _run_superop(pending.pop(qubit), {})[0]
                eye = np.eye(4, dtype=np.complex128)
                before = (np.kron(single, eye) if qubit == hi else np.kron(eye, single)) @ before
            else:
                flush(qubit)
        steps.append(Step((lo, hi), _pair_major(gate.fixed, gate.qubits) @ before))
    for qubit in sorted(pending):
        flush(qubit)
    return steps


def evolve(
    state: np.ndarray,
    steps: Sequence[Step],
    columns: dict[Parameter, np.ndarray],
    n_qubits: int,
    *,
    adjoint: bool = False,
) -> np.ndarray:
    """Apply ``steps`` to a pair-major (B, 4**n) stack; ``columns`` hold each angle parameter's B values.

    ``adjoint``: apply the adjoint channels in reverse order (Heisenberg picture, for effects).
    """
    size = state.shape[0]
    compact = {}  # each angle column once: a single value when it is the same on every row
    for parameter in {g.angle for step in steps if step.fixed is None for g in step.parts if g.fixed is None}:
        column = np.broadcast_to(columns[parameter], (size,))
        compact[parameter] = column[:1] if np.all(column == column[0]) else column
    for step in reversed(steps) if adjoint else steps:
        if step.fixed is not None:
            superop = step.fixed
        else:
            run = _run_superop(step.parts, compact)
            superop = run[0] if run.shape[0] == 1 else run[:, None]
        if adjoint:
            superop = np.conj(np.swapaxes(superop, -1, -2))
        k = len(step.qubits)
        if step.qubits[0] == 0 and (k == 1 or step.qubits[1] == 1):  # the last axis: one product from the right
            state = np.matmul(state.reshape(size, -1, 4**k), np.swapaxes(superop, -1, -2).reshape(-1, 4**k, 4**k))
        elif k == 1 or step.qubits[1] == step.qubits[0] + 1:
            lo = step.qubits[0]
            state = np.matmul(superop, state.reshape(size, 4 ** (n_qubits - k - lo), 4**k, 4**lo))
        else:
            state = _apply_apart(state, superop, step.qubits, n_qubits)
        state = state.reshape(size, -1)
    return state


def _apply_apart(state: np.ndarray, superop: np.ndarray, qubits: tuple[int, ...], n_qubits: int) -> np.ndarray:
    """A two-qubit step on non-adjacent qubits: bring their axes to the front, apply, put them back."""
    size = state.shape[0]
    lo, hi = qubits
    axes = (1 + n_qubits - 1 - hi, 1 + n_qubits - 1 - lo)
    order = (0, *axes, *(a for a in range(1, n_qubits + 1) if a not in axes))
    tensor = state.reshape((size,) + (4,) * n_qubits).transpose(order)
    moved = np.matmul(superop, tensor.reshape(size, 16, -1)).reshape(tensor.shape)
    return moved.transpose(np.argsort(order))


# --------------------------------------------------------------------------- the engine


def effects(n_qubits: int, measured: Sequence[int]) -> np.ndarray:
    """(2**m, 4**n) pair-major projectors |b><b| on the measured qubits (identity on the others)."""
    rows = []
    for outcome in range(2 ** len(measured)):
        bit_of = {q: (outcome >> j) & 1 for j, q in enumerate(measured)}
        vector = np.ones(1, dtype=np.complex128)
        for qubit in range(n_qubits - 1, -1, -1):
            local = np.zeros(4, dtype=np.complex128)
            if qubit in bit_of:
                local[3 * bit_of[qubit]] = 1.0
            else:
                local[0] = local[3] = 1.0
            vector = np.kron(vector, local)
        rows.append(vector)
    return np.array(rows)
