"""Superoperators for :mod:`llmqfl.quantum.simulators.noisy_exact`: a noisy ISA circuit compiled and applied in numpy.

Each gate of the circuit becomes its unitary's superoperator followed by the noise model's quantum
error on its qubits (any ``QuantumError``, as its superoperator: what Aer's density-matrix method
applies); runs of one-qubit gates on a qubit are fused, and a fixed run joins the next two-qubit
gate. A stack of density matrices (or, in the Heisenberg picture, of measurement effects) is held
"pair-major" so that each step is one broadcast matrix product, and in the Pauli basis (Pauli
transfer matrices): states, effects and channels are then real, so every product is a real one
(a quarter of the complex multiplications, half the memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit.circuit import Parameter, ParameterExpression

from llmqfl.quantum.simulators.aer_sampler import DistributionPlan, readout_matrices

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
    """A qiskit-aer ``QuantumError`` as a row-major superoperator.

    Why not ``error.to_quantumchannel()``: it builds a qiskit ``SuperOp`` per noise circuit and
    instruction (~0.2 s per two-qubit device error, 144 circuits each; 2.8 s of every noisy run's
    start on FakeManilaV2). The same sum of composed superoperators in numpy takes milliseconds;
    an instruction it does not know sends that error to qiskit's conversion.
    """
    try:
        return _fast_error_superop(error)
    except _NotFast:
        return _qiskit_error_superop(error)


class _NotFast(Exception):
    """An instruction of a noise circuit that :func:`_fast_error_superop` does not convert."""


_RESET_KRAUS = (np.array([[1, 0], [0, 0]], dtype=np.complex128), np.array([[0, 1], [0, 0]], dtype=np.complex128))
_MATRICES: dict[str, np.ndarray] = {}


def _instruction_superop(operation: Any) -> np.ndarray:
    """Row-major superoperator of one noise-circuit instruction on its own qubits."""
    name = operation.name
    if name == "reset" and operation.num_qubits == 1:
        return sum(np.kron(k, np.conj(k)) for k in _RESET_KRAUS)
    if name == "kraus":
        return sum(np.kron(k, np.conj(k)) for k in (np.asarray(m, dtype=np.complex128) for m in operation.params))
    if not hasattr(operation, "to_matrix") or getattr(operation, "clbits", 0) or name in ("measure", "delay"):
        raise _NotFast(name)
    key = name if not operation.params else None
    if name == "pauli":
        key = f"pauli:{operation.params[0]}"
    matrix = _MATRICES.get(key) if key else None
    if matrix is None:
        matrix = np.asarray(operation.to_matrix(), dtype=np.complex128)
        if key:
            _MATRICES[key] = matrix
    return unitary_superop(matrix)


def _embed(superop: np.ndarray, qubits: Sequence[int], n_qubits: int) -> np.ndarray:
    """A row-major superoperator on ``qubits`` (of ``n_qubits``, qubit 0 least significant) -> the whole space."""
    k = len(qubits)
    if k == n_qubits and tuple(qubits) == tuple(range(n_qubits)):
        return superop
    # tensor axes of a row-major superop on n qubits: out rows (q_{n-1}..q_0), out cols, in rows, in cols
    small = superop.reshape((2,) * (4 * k))
    eye = np.eye(2 ** (2 * n_qubits), dtype=np.complex128).reshape((2,) * (4 * n_qubits))
    # contract the input axes of the embedded qubits: out = small[out_q, in_q] applied to eye's output axes
    axis = {q: n_qubits - 1 - q for q in range(n_qubits)}  # position of qubit q within a row (or col) group
    out_axes = [axis[q] for q in reversed(qubits)] + [n_qubits + axis[q] for q in reversed(qubits)]
    moved = np.tensordot(small, eye, axes=(list(range(2 * k, 4 * k)), out_axes))
    # result axes: small's outputs, then eye's remaining axes in order; put the outputs back in place
    remaining = [a for a in range(4 * n_qubits) if a not in out_axes]
    order = out_axes + remaining
    return np.moveaxis(moved, range(4 * n_qubits), order).reshape(4**n_qubits, 4**n_qubits)


def _fast_error_superop(error: Any) -> np.ndarray:
    n_qubits = error.num_qubits
    total = np.zeros((4**n_qubits, 4**n_qubits), dtype=np.complex128)
    embedded: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}  # device errors repeat a few Paulis/resets
    for probability, circuit in zip(error.probabilities, error.circuits, strict=True):
        channel = None
        for instruction in circuit.data:
            operation = instruction.operation
            qubits = tuple(circuit.find_bit(q).index for q in instruction.qubits)
            key = (operation.name if operation.name != "pauli" else f"pauli:{operation.params[0]}", qubits)
            step = embedded.get(key) if operation.name in ("reset", "pauli") or not operation.params else None
            if step is None:
                step = _embed(_instruction_superop(operation), qubits, n_qubits)
                if operation.name in ("reset", "pauli") or not operation.params:
                    embedded[key] = step
            if operation.name == "id":
                continue
            channel = step if channel is None else step @ channel
        total += probability * (np.eye(4**n_qubits) if channel is None else channel)
    return total


def _qiskit_error_superop(error: Any) -> np.ndarray:
    """qiskit's conversion (slow, general); qiskit's SuperOp stacks columns, so reorder to row-major."""
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
    converted: dict[int, tuple[Any, np.ndarray]] = {}
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
            if id(error) not in converted:  # one conversion per error object, not per gate instance
                converted[id(error)] = (error, error_superop(error))
            error_op = converted[id(error)][1]
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

# Pauli basis of one qubit: t_P = Tr(P rho) = sum_rc P[c, r] rho[r, c], rows I, X, Y, Z over pairs (r, c)
_TO_PAULI = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [0, 1j, -1j, 0], [1, 0, 0, -1]], dtype=np.complex128)
_FROM_PAULI = np.conj(_TO_PAULI.T) / 2
_TO_PAULI_2 = np.kron(_TO_PAULI, _TO_PAULI)  # pair-major, higher qubit first: the same order for both
_FROM_PAULI_2 = np.kron(_FROM_PAULI, _FROM_PAULI)


def to_pauli(superop: np.ndarray, k: int) -> np.ndarray:
    """A pair-major superoperator (..., 4**k, 4**k) on k = 1 or 2 qubits -> its real Pauli transfer matrix.

    Real because every channel here preserves Hermiticity (the imaginary part is rounding, ~1e-17).
    """
    to, back = (_TO_PAULI, _FROM_PAULI) if k == 1 else (_TO_PAULI_2, _FROM_PAULI_2)
    return np.ascontiguousarray((to @ superop @ back).real)


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
            steps.append(Step((qubit,), to_pauli(_run_superop(run, {})[0], 1)))
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
        steps.append(Step((lo, hi), to_pauli(_pair_major(gate.fixed, gate.qubits) @ before, 2)))
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
            run = to_pauli(_run_superop(step.parts, compact), 1)
            superop = run[0] if run.shape[0] == 1 else run[:, None]
        if adjoint:  # real Pauli transfer matrices: the adjoint channel is the transpose
            superop = np.swapaxes(superop, -1, -2)
        k = len(step.qubits)
        if step.qubits[0] == 0 and (k == 1 or step.qubits[1] == 1) and superop.ndim == 2:
            state = state.reshape(-1, 4**k) @ superop.T  # the last axis, one matrix: ONE product (one BLAS call)
        elif step.qubits[0] == 0 and (k == 1 or step.qubits[1] == 1):  # the last axis: one product from the right
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
