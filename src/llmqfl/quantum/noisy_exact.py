"""A batched density-matrix engine in numpy for the noisy Aer path (``aer_noisy``), a few qubits only.

Why: with a device noise model, Aer's density-matrix method costs ~0.1-0.2 s per objective
evaluation of the default QFL workload (one 4-qubit ISA circuit, ~100 bindings), almost all of it
per-binding overhead. The same distribution comes out of a few numpy operations per gate on a
``(bindings, 2**n, 2**n)`` stack of density matrices:

1. the ISA circuit (measurements replaced as in :func:`llmqfl.quantum.aer_sampler.distribution_plan`)
   is compiled once into superoperators on the physical qubits it acts on (renumbered 0..n-1):
   each gate followed by the noise model's quantum error on its qubits (depolarizing, thermal
   relaxation: any ``QuantumError``, as its superoperator), exactly what Aer's density-matrix
   method applies; runs of one-qubit gates on a qubit are fused into one superoperator;
2. the gates that depend only on an item's inputs and come before anything that depends on the
   weights (the feature map, up to where routing mixes the two) are applied once per distinct
   feature array and cached (a fit evaluates the same items again and again); the rest runs once
   per binding (weight set x item);
3. the diagonal over the measured qubits is the pre-readout distribution; the noise model's readout
   confusion matrices and the seeded shot draws are those of
   :class:`~llmqfl.quantum.aer_sampler.DistributionSamplerV2`, so counts are the ones Aer's
   distribution would give (tested: distributions agree with Aer's to 1e-9).

Anything this does not model goes to Aer: more than :data:`MAX_QUBITS` active qubits, ``delay``
(relaxation during idle time), ``reset``, parameterised gates other than rx/ry/rz/p, gates on more
than two qubits, errors whose width differs from their gate's, and whatever the distribution
sampler itself hands to Aer (mid-circuit measurement, classical control, errors on ``measure``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit
from qiskit.primitives import DataBin, SamplerPubResult
from qiskit.primitives.containers.sampler_pub import SamplerPub

from llmqfl.quantum.aer_sampler import (
    DistributionPlan,
    DistributionSamplerV2,
    apply_readout,
    pack_register,
    readout_matrices,
    sample_outcomes,
)

MAX_QUBITS = 6  # (bindings, 4**n) complex numbers per stack: 4096 per binding at 6 qubits
NOISY_ENGINES = ("auto", "aer")  # backend.noisy_engine: auto = this engine where it fits, else Aer
_ROTATIONS = frozenset({"rx", "ry", "rz", "p"})
_SKIP = frozenset({"barrier", "save_probabilities"})
_CACHE_SIZE = 16


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


def compile_noisy(plan: DistributionPlan, noise_model: Any) -> NoisyCircuit:
    """Compile ``plan.circuit`` with ``noise_model``'s errors; :class:`Unsupported` when it does not fit."""
    from qiskit.quantum_info import Operator

    circuit = plan.circuit
    physical = [[circuit.find_bit(q).index for q in inst.qubits] for inst in circuit.data]
    active = sorted({q for inst, qs in zip(circuit.data, physical, strict=True)
                     if inst.operation.name not in _SKIP for q in qs} | set(plan.measured_qubits))
    if len(active) > MAX_QUBITS:
        raise Unsupported(f"{len(active)} active qubits (at most {MAX_QUBITS})")
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


@dataclass(frozen=True)
class _Step:
    """A superoperator to apply: fixed (4**k, 4**k) or one per binding, from ``build``."""

    qubits: tuple[int, ...]
    order: tuple[int, ...]
    inverse: tuple[int, ...]
    fixed: np.ndarray | None
    parts: tuple[_Gate, ...]  # one-qubit run (composed per binding) when ``fixed`` is None


def _axes(n_qubits: int, qubits: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Transpose that brings (row bits, column bits) of ``qubits`` (gate qubit k-1 first) to the front."""
    rows = [1 + (n_qubits - 1 - q) for q in reversed(qubits)]
    cols = [1 + n_qubits + (n_qubits - 1 - q) for q in reversed(qubits)]
    front = rows + cols
    order = (0, *front, *(a for a in range(1, 2 * n_qubits + 1) if a not in front))
    inverse = tuple(int(i) for i in np.argsort(order))
    return order, inverse


def _run_superop(parts: Sequence[_Gate], columns: dict[Parameter, np.ndarray], size: int) -> np.ndarray:
    """(size, 4, 4) superoperator of a run of one-qubit gates (the first applied first)."""
    total = np.broadcast_to(np.eye(4, dtype=np.complex128), (size, 4, 4))
    for gate in parts:
        if gate.fixed is not None:
            total = gate.fixed @ total
            continue
        theta = np.broadcast_to(columns[gate.angle], (size,))
        step = unitary_superop(rotation_unitaries(gate.rotation, theta))
        if gate.error is not None:
            step = gate.error @ step
        total = step @ total
    return total


def _steps(n_qubits: int, gates: Sequence[_Gate]) -> list[_Step]:
    """Group gates into steps: fixed multi-qubit gates alone, runs of one-qubit gates per qubit fused."""
    steps: list[_Step] = []
    pending: dict[int, list[_Gate]] = {}

    def flush(qubit: int) -> None:
        run = pending.pop(qubit, None)
        if not run:
            return
        order, inverse = _axes(n_qubits, (qubit,))
        if all(g.fixed is not None for g in run):
            fixed = _run_superop(run, {}, 1)[0]
            steps.append(_Step((qubit,), order, inverse, fixed, ()))
        else:
            steps.append(_Step((qubit,), order, inverse, None, tuple(run)))

    for gate in gates:
        if len(gate.qubits) == 1:
            pending.setdefault(gate.qubits[0], []).append(gate)
            continue
        for qubit in gate.qubits:
            flush(qubit)
        order, inverse = _axes(n_qubits, gate.qubits)
        steps.append(_Step(gate.qubits, order, inverse, gate.fixed, ()))
    for qubit in sorted(pending):
        flush(qubit)
    return steps


def evolve(rho: np.ndarray, steps: Sequence[_Step], columns: dict[Parameter, np.ndarray], n_qubits: int) -> np.ndarray:
    """Apply ``steps`` to a (B, 2**n, 2**n) stack; ``columns`` hold each angle parameter's B values."""
    size, dim = rho.shape[0], 2**n_qubits
    tensor_shape = (size,) + (2,) * (2 * n_qubits)
    for step in steps:
        k = len(step.qubits)
        superop = step.fixed if step.fixed is not None else _run_superop(step.parts, columns, size)
        t = rho.reshape(tensor_shape).transpose(step.order).reshape(size, 4**k, -1)
        t = np.matmul(superop, t)
        rho = t.reshape(tensor_shape).transpose(step.inverse).reshape(size, dim, dim)
    return rho


def measured_distribution(rho: np.ndarray, n_qubits: int, measured: Sequence[int]) -> np.ndarray:
    """(B, 2**m) outcome probabilities of the ``measured`` qubits (bit j of the index = measured[j])."""
    size = rho.shape[0]
    diagonal = np.einsum("bii->bi", rho).real.reshape((size,) + (2,) * n_qubits)
    axis_of = {q: 1 + (n_qubits - 1 - q) for q in range(n_qubits)}
    kept = sorted(axis_of[q] for q in measured)
    drop = tuple(a for a in range(1, n_qubits + 1) if a not in kept)
    marginal = diagonal.sum(axis=drop) if drop else diagonal
    # most significant outcome bit (measured[-1]) first
    marginal = marginal.transpose(0, *(1 + kept.index(axis_of[q]) for q in reversed(measured)))
    return marginal.reshape(size, 2 ** len(measured))


# --------------------------------------------------------------------------- the engine


class NoisyExactEngine:
    """Pre-readout outcome distributions of one compiled circuit for many bindings, prefix cached."""

    def __init__(self, plan: DistributionPlan, noise_model: Any) -> None:
        self.plan = plan
        self.circuit = compile_noisy(plan, noise_model)
        self._splits: dict[frozenset[Parameter], tuple[list[_Step], list[_Step]]] = {}
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def _split(self, item_params: frozenset[Parameter]) -> tuple[list[_Step], list[_Step]]:
        """Steps of the item-only prefix (gates before any weight-dependent gate on their qubits) and the rest."""
        cached = self._splits.get(item_params)
        if cached is not None:
            return cached
        blocked: set[int] = set()
        prefix, rest = [], []
        for gate in self.circuit.gates:
            item_only = gate.angle is None or gate.angle in item_params
            if item_only and not blocked.intersection(gate.qubits):
                prefix.append(gate)
            else:
                rest.append(gate)
                blocked.update(gate.qubits)
        n = self.circuit.n_qubits
        result = (_steps(n, prefix), _steps(n, rest))
        self._splits[item_params] = result
        return result

    def distributions(self, parameters: Sequence[Parameter], values: np.ndarray, n_items: int) -> np.ndarray:
        """(B, 2**m) distributions for ``values`` (B, len(parameters)); B = sets x ``n_items`` (items last)."""
        size = values.shape[0]
        n_sets = size // n_items
        columns = self.plan.bindings(parameters, values)
        item_params = frozenset(
            p for p, column in columns.items() if n_items > 1 and _item_column(column, n_sets, n_items)
        )
        prefix, rest = self._split(item_params)
        n, dim = self.circuit.n_qubits, 2**self.circuit.n_qubits
        item_columns = {p: columns[p][:n_items] for p in item_params}
        start = self._prefix_states(prefix, item_columns, n_items)
        rho = np.broadcast_to(start[None], (n_sets, n_items, dim, dim)).reshape(size, dim, dim)
        rho = evolve(np.ascontiguousarray(rho), rest, columns, n)
        return np.clip(measured_distribution(rho, n, self.circuit.measured), 0.0, None)

    def _prefix_states(self, steps: list[_Step], columns: dict[Parameter, np.ndarray], n_items: int) -> np.ndarray:
        key = hashlib.blake2b(digest_size=16)
        key.update(repr((id(steps), n_items, sorted(p.name for p in columns))).encode())
        for parameter in sorted(columns, key=lambda p: p.name):
            key.update(np.ascontiguousarray(columns[parameter], dtype=np.float64).tobytes())
        digest = key.digest()
        if digest in self._cache:
            self._cache.move_to_end(digest)
            return self._cache[digest]
        dim = 2**self.circuit.n_qubits
        rho = np.zeros((n_items, dim, dim), dtype=np.complex128)
        rho[:, 0, 0] = 1.0
        states = evolve(rho, steps, columns, self.circuit.n_qubits)
        self._cache[digest] = states
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return states


def _item_column(column: np.ndarray, n_sets: int, n_items: int) -> bool:
    """True when the column varies over items and is the same for every weight set (an input)."""
    grid = np.asarray(column).reshape(n_sets, n_items)
    return bool(np.any(grid[0] != grid[0, 0]) and np.all(grid == grid[0]))


def _pub_items(shape: tuple[int, ...]) -> int:
    """Items axis of a pub's parameter shape: the last one (sets x items), 1 for a scalar pub."""
    return int(shape[-1]) if shape else 1


class NoisyExactSamplerV2(DistributionSamplerV2):
    """:class:`DistributionSamplerV2` whose distributions come from :class:`NoisyExactEngine` where it fits.

    ``engines`` (circuit id -> (circuit, engine or None)) may be shared between samplers, as the
    plans are: the backend builds one sampler per job but the ISA circuit is reused.
    """

    def __init__(
        self,
        simulator: Any,
        *,
        seed: int,
        default_shots: int,
        plans: dict[int, tuple[QuantumCircuit, DistributionPlan | None]] | None = None,
        engines: dict[int, tuple[QuantumCircuit, NoisyExactEngine | None]] | None = None,
    ) -> None:
        super().__init__(simulator, seed=seed, default_shots=default_shots, plans=plans)
        self._engines = {} if engines is None else engines

    def engine(self, circuit: QuantumCircuit, plan: DistributionPlan) -> NoisyExactEngine | None:
        """The cached engine of ``circuit``; None when it does not fit (Aer runs it)."""
        cached = self._engines.get(id(circuit))
        if cached is not None and cached[0] is circuit:
            return cached[1]
        try:
            engine: NoisyExactEngine | None = NoisyExactEngine(plan, self._simulator.options.noise_model)
        except Unsupported:
            engine = None
        self._engines[id(circuit)] = (circuit, engine)
        return engine

    def _run_pub(self, pub: SamplerPub, plan: DistributionPlan, rng: np.random.Generator) -> SamplerPubResult:
        engine = self.engine(pub.circuit, plan)
        if engine is None:
            return super()._run_pub(pub, plan, rng)
        shape = pub.parameter_values.shape
        parameters = list(pub.circuit.parameters)
        size = int(np.prod(shape, dtype=np.int64))
        values = pub.parameter_values.as_array(parameters).reshape(size, len(parameters))
        probabilities = engine.distributions(parameters, values, _pub_items(shape))
        recorded = apply_readout(probabilities, list(engine.circuit.readout))
        outcomes = sample_outcomes(recorded, pub.shots, rng).reshape(*shape, pub.shots)
        data = {name: pack_register(outcomes, bits) for name, _size, bits in plan.registers}
        return SamplerPubResult(
            DataBin(**data, shape=shape),
            metadata={"shots": pub.shots, "circuit_metadata": pub.circuit.metadata, "sampling": "noisy_exact"},
        )
