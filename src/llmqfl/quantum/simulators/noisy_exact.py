"""A batched density-matrix engine in numpy for the noisy Aer path (``aer_noisy``), a few qubits only.

Why: with a device noise model, Aer's density-matrix method spends most of a QFL job on per-binding
overhead (the default config's job: one 4-qubit ISA circuit, ~100 bindings, ~0.9 s on the shared
machine). The same distributions come out of a few numpy products per gate
(:mod:`llmqfl.quantum.simulators.noisy_channels` compiles the circuit and its device noise to superoperators):

1. the gates that depend only on an item's inputs and precede everything that depends on the
   weights (the feature map, up to where routing interleaves it with the ansatz) run once per
   distinct feature array and are cached (a fit evaluates the same items again and again);
2. the weight-only tail runs backwards on the measurement effects once per weight set
   (Heisenberg picture); only the part between runs once per binding (weight set x item);
3. the noise model's readout confusion matrices and the seeded shot draws are those of
   :class:`~llmqfl.quantum.simulators.aer_sampler.DistributionSamplerV2`, so the counts are the ones Aer's
   distribution gives (tested: distributions agree with Aer's to 1e-9, counts are identical).

Anything this does not model goes to Aer: more than :data:`MAX_QUBITS` active qubits, ``delay``
(relaxation during idle time), ``reset``, parameterised gates other than rx/ry/rz/p, gates on more
than two qubits, errors whose width differs from their gate's, and whatever the distribution
sampler itself hands to Aer (mid-circuit measurement, classical control, errors on ``measure``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.primitives import DataBin, SamplerPubResult
from qiskit.primitives.containers.sampler_pub import SamplerPub

from llmqfl.quantum.simulators.aer_sampler import (
    DistributionPlan,
    DistributionSamplerV2,
    apply_readout,
    pack_register,
    sample_outcomes,
)
from llmqfl.quantum.simulators.exact import single_threaded_blas
from llmqfl.quantum.simulators.noisy_channels import (
    Step,
    Unsupported,
    compile_noisy,
    evolve,
    group_steps,
)

MAX_QUBITS = 6  # (bindings, 4**n) real numbers per stack: 4096 per binding at 6 qubits
NOISY_ENGINES = ("auto", "aer")  # backend.noisy_engine: auto = this engine where it fits, else Aer
_CACHE_SIZE = 16

__all__ = ["MAX_QUBITS", "NOISY_ENGINES", "NoisyExactEngine", "NoisyExactSamplerV2", "Unsupported"]


class NoisyExactEngine:
    """Pre-readout outcome distributions of one compiled circuit for many bindings.

    The gates split three ways: an item-only prefix (evolved once per distinct feature array and
    cached), a weight-only suffix (its adjoint applied once per weight set to the measurement
    effects, Heisenberg picture), and the middle, evolved once per binding. On an ISA circuit the
    middle is where routing interleaves feature-map and ansatz gates.
    """

    def __init__(self, plan: DistributionPlan, noise_model: Any) -> None:
        self.plan = plan
        self.circuit = compile_noisy(plan, noise_model, max_qubits=MAX_QUBITS)
        self._effects = effects(self.circuit.n_qubits, self.circuit.measured)
        self._splits: dict[tuple[frozenset[Parameter], frozenset[Parameter]], tuple[list[Step], ...]] = {}
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def _split(self, item_params: frozenset[Parameter], set_params: frozenset[Parameter]) -> tuple[list[Step], ...]:
        """Steps of the prefix, the middle and the suffix (see the class docstring)."""
        key = (item_params, set_params)
        if key in self._splits:
            return self._splits[key]
        gates = self.circuit.gates
        blocked: set[int] = set()
        in_prefix = []
        for gate in gates:
            item_only = gate.angle is None or gate.angle in item_params
            if item_only and not blocked.intersection(gate.qubits):
                in_prefix.append(gate.index)
            else:
                blocked.update(gate.qubits)
        blocked.clear()
        prefix_set, in_suffix = set(in_prefix), set()
        for gate in reversed(gates):
            if gate.index in prefix_set:
                continue
            set_only = gate.angle is None or gate.angle in set_params
            if set_only and not blocked.intersection(gate.qubits):
                in_suffix.add(gate.index)
            else:
                blocked.update(gate.qubits)
        prefix = [g for g in gates if g.index in prefix_set]
        middle = [g for g in gates if g.index not in prefix_set and g.index not in in_suffix]
        suffix = [g for g in gates if g.index in in_suffix]
        result = (group_steps(prefix), group_steps(middle), group_steps(suffix))
        self._splits[key] = result
        return result

    def distributions(self, parameters: Sequence[Parameter], values: np.ndarray, n_items: int) -> np.ndarray:
        """(B, 2**m) distributions for ``values`` (B, len(parameters)); B = sets x ``n_items`` (items last)."""
        with single_threaded_blas():
            return self._distributions(parameters, values, n_items)

    def _distributions(self, parameters: Sequence[Parameter], values: np.ndarray, n_items: int) -> np.ndarray:
        size = values.shape[0]
        n_sets = size // n_items
        columns = self.plan.bindings(parameters, values)
        grids = {p: np.asarray(column).reshape(n_sets, n_items) for p, column in columns.items()}
        set_params = frozenset(p for p, grid in grids.items() if np.all(grid == grid[:, :1]))
        item_params = frozenset(
            p for p, grid in grids.items() if p not in set_params and np.all(grid == grid[:1])
        )
        prefix, middle, suffix = self._split(item_params, set_params)
        n = self.circuit.n_qubits
        start = self._prefix_states(prefix, {p: grids[p][0] for p in item_params}, n_items)
        if middle:
            state = np.broadcast_to(start[None], (n_sets, n_items, 4**n)).reshape(size, 4**n)
            state = evolve(state, middle, columns, n).reshape(n_sets, n_items, 4**n)
        else:
            state = start[None]
        n_outcomes = self._effects.shape[0]
        rows = {p: np.repeat(grids[p][:, 0], n_outcomes) for p in set_params}
        effects = np.broadcast_to(self._effects[None], (n_sets, n_outcomes, 4**n)).reshape(-1, 4**n)
        effects = evolve(effects, suffix, rows, n, adjoint=True).reshape(n_sets, n_outcomes, 4**n)
        probabilities = np.matmul(state, effects.transpose(0, 2, 1))  # real: Pauli basis
        probabilities = np.broadcast_to(probabilities, (n_sets, n_items, n_outcomes))
        return np.clip(probabilities.reshape(size, n_outcomes), 0.0, None)

    def _prefix_states(self, steps: list[Step], columns: dict[Parameter, np.ndarray], n_items: int) -> np.ndarray:
        key = hashlib.blake2b(digest_size=16)
        key.update(repr((id(steps), n_items, sorted(p.name for p in columns))).encode())
        for parameter in sorted(columns, key=lambda p: p.name):
            key.update(np.ascontiguousarray(columns[parameter], dtype=np.float64).tobytes())
        digest = key.digest()
        if digest in self._cache:
            self._cache.move_to_end(digest)
            return self._cache[digest]
        states = np.tile(ground_state(self.circuit.n_qubits), (n_items, 1))  # |0><0| on every qubit
        states = evolve(states, steps, columns, self.circuit.n_qubits)
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
            metadata={"shots": pub.shots, "circuit_metadata": pub.circuit.metadata, "sampling": "distribution",
                      "engine": "noisy_exact"},
        )


# --------------------------------------------------------------------------- Pauli-basis states and effects


def effects(n_qubits: int, measured: Sequence[int]) -> np.ndarray:
    """(2**m, 4**n) effects |b><b| on the measured qubits (identity on the others), in the Pauli basis
    and scaled by 2**-n, so that a probability is the plain dot product of an effect and a state."""
    rows = []
    for outcome in range(2 ** len(measured)):
        bit_of = {q: (outcome >> j) & 1 for j, q in enumerate(measured)}
        vector = np.ones(1)
        for qubit in range(n_qubits - 1, -1, -1):
            # I, X, Y, Z components of |b><b| (I +- Z) or of the identity (2 I), over 2 per qubit
            local = np.array([1.0, 0.0, 0.0, 1.0 - 2.0 * bit_of[qubit]]) / 2 if qubit in bit_of else np.array(
                [1.0, 0.0, 0.0, 0.0])
            vector = np.kron(vector, local)
        rows.append(vector)
    return np.array(rows)


def ground_state(n_qubits: int) -> np.ndarray:
    """|0...0><0...0| in the Pauli basis: components I and Z of each qubit are 1 (Tr(P rho))."""
    vector = np.ones(1)
    for _ in range(n_qubits):
        vector = np.kron(vector, np.array([1.0, 0.0, 0.0, 1.0]))
    return vector
