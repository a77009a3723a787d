"""Error mitigation (``backend.mitigation``): checked per kind, the runtime Sampler's options, readout mitigation.

Why a module of its own: the settings are validated at parse time (the Snakefile's preflight calls
:func:`check_mitigation` through :func:`llmqfl.quantum.backends.backend_config.check_backend_config`),
mapped where the runtime primitive is built (:class:`llmqfl.quantum.backends.engines.RuntimeEngine`), and
readout mitigation (:class:`ReadoutMitigation`) is a post-processing of counts that the sampler
path (:class:`llmqfl.quantum.training.primitive.PrimitiveEvaluator`) applies on every shot-based kind.

What the runtime's client-side Sampler (qiskit-ibm-runtime 0.51 ``executor_sampler.Sampler``, the
only primitive this pipeline uses) can honour, and so what is passed through on ``fake`` and
``ibm``: Pauli twirling of two-qubit gates and of measurements, and dynamical decoupling. It has no
resilience levels (those belong to the Estimator, which the pipeline does not use), so a
``resilience_level`` above 0 is refused on every kind with a message saying so. The Aer kinds take
no runtime options at all, so those options are refused there rather than silently ignored.

Readout-error mitigation (``readout.enable``) works on ``aer_noisy``, ``fake`` and ``ibm``: one
calibration job per run prepares basis states on the physical qubits the model measures, the
confusion matrix A[measured, prepared] is estimated from it (``full``: every basis state, correlated
errors included; ``tensored``: all-zeros and all-ones, per-qubit errors), and each measured
distribution p becomes the probability vector nearest to A^-1 p. It is refused on ``aer``, whose
ideal simulator has no readout error to undo. Its jobs and shots count in the backend's usage and
shot budget and are reported apart in ``accounting.json`` (``mitigation``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from llmqfl.errors import ConfigError, LlmqflError
from llmqfl.registry import KINDS, traits

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

    from llmqfl.settings import MitigationSettings

logger = logging.getLogger(__name__)



def _kinds_with(name: str) -> str:
    """The built-in kinds with trait ``name`` (for the refusal's hint)."""
    return ", ".join(k for k, t in KINDS["backend"].builtin_traits.items() if t.get(name))


def _enabled(mitigation: MitigationSettings) -> list[str]:
    """The mitigation keys that ask for something (for the error message on the Aer kinds)."""
    twirling = mitigation.twirling
    asked = []
    if twirling.gates:
        asked.append("twirling.gates")
    if twirling.measure:
        asked.append("twirling.measure")
    if mitigation.dynamical_decoupling.enable:
        asked.append("dynamical_decoupling.enable")
    return asked


def check_mitigation(kind: str, mitigation: MitigationSettings, kind_traits: Mapping[str, Any] | None = None) -> None:
    """A one-line :class:`ConfigError` when ``kind`` cannot honour a requested option; nothing otherwise.

    ``kind_traits``: the kind's traits when the caller has looked them up already (``llmqfl.registry.traits``).
    """
    level = mitigation.resilience_level
    if level:
        raise ConfigError(
            f"config error: backend.mitigation.resilience_level: {level} cannot be honoured: the runtime's "
            "Sampler has no resilience levels (an Estimator option; this pipeline only samples); use "
            "backend.mitigation.twirling and dynamical_decoupling (kinds fake, ibm)"
        )
    asked = _enabled(mitigation)
    if not asked and not mitigation.readout.enable:
        return
    kind_traits = traits("backend", kind) if kind_traits is None else kind_traits
    if asked and not kind_traits["runtime_options"]:
        raise ConfigError(
            f"config error: backend.mitigation: {', '.join(asked)} cannot be honoured by kind {kind!r} "
            f"(it takes no runtime options); use kind {_kinds_with('runtime_options')}, or turn it off"
        )
    if mitigation.readout.enable and not kind_traits["readout_mitigation"]:
        raise ConfigError(
            f"config error: backend.mitigation.readout.enable: kind {kind!r} has no readout error to mitigate "
            f"(the ideal simulator); use it with kind {_kinds_with('readout_mitigation')}, or turn it off"
        )


def runtime_options(mitigation: MitigationSettings) -> dict[str, Any]:
    """The runtime Sampler's option dict for ``backend.mitigation`` (empty when nothing is asked: its defaults)."""
    options: dict[str, Any] = {}
    twirling = mitigation.twirling
    if twirling.gates or twirling.measure:
        options["twirling"] = {
            "enable_gates": bool(twirling.gates),
            "enable_measure": bool(twirling.measure),
            "num_randomizations": twirling.num_randomizations,
            "shots_per_randomization": twirling.shots_per_randomization,
        }
    decoupling = mitigation.dynamical_decoupling
    if decoupling.enable:
        options["dynamical_decoupling"] = {"enable": True, "sequence_type": decoupling.sequence_type}
    return options


# --------------------------------------------------------------------------- readout-error mitigation

MAX_FULL_BITS = 6  # full calibration prepares every basis state: 2**6 = 64 circuits in one job
MAX_CONDITION = 1e6  # a confusion matrix this ill-conditioned would amplify shot noise, not remove bias


class ReadoutCalibrationError(LlmqflError):
    """The readout calibration cannot be inverted (a qubit reads out no better than a coin)."""


def project_to_simplex(quasi: np.ndarray) -> np.ndarray:
    """The nearest probability vector (Euclidean) to each row of ``quasi`` (..., n): sort-and-threshold.

    Why: an inverted confusion matrix turns counts into quasi-probabilities, some negative from shot
    noise; the loss needs a distribution. The Euclidean projection onto the simplex is the
    least-squares correction (it moves mass only as far as it must) and is the identity on a vector
    that already is a distribution.
    """
    values = np.asarray(quasi, dtype=np.float64)
    n = values.shape[-1]
    ordered = -np.sort(-values, axis=-1)
    cumulative = np.cumsum(ordered, axis=-1) - 1.0
    index = np.arange(1, n + 1, dtype=np.float64)
    support = ordered - cumulative / index > 0
    rho = n - 1 - np.argmax(support[..., ::-1], axis=-1)  # last index where the condition holds
    theta = np.take_along_axis(cumulative, rho[..., None], axis=-1) / (rho[..., None] + 1.0)
    return np.maximum(values - theta, 0.0)


def measured_qubits(isa: QuantumCircuit, register: str) -> tuple[int, ...]:
    """Physical qubit measured into each bit of classical register ``register`` of an ISA circuit."""
    by_bit: dict[int, int] = {}
    for instruction in isa.data:
        if instruction.operation.name != "measure":
            continue
        for reg, index in isa.find_bit(instruction.clbits[0]).registers:
            if reg.name == register:
                by_bit[index] = isa.find_bit(instruction.qubits[0]).index
    width = next((len(reg) for reg in isa.cregs if reg.name == register), 0)
    if width == 0 or sorted(by_bit) != list(range(width)):
        raise ValueError(f"readout mitigation: register {register!r} is not fully measured in the circuit")
    return tuple(by_bit[k] for k in range(width))


def prepared_states(method: str, n_bits: int) -> list[int]:
    """Basis states the calibration prepares: all 2**n (full) or all-zeros and all-ones (tensored)."""
    if method == "full":
        if n_bits > MAX_FULL_BITS:
            raise ConfigError(
                f"config error: backend.mitigation.readout.method: full calibrates {2**n_bits} states for "
                f"{n_bits} readout bits (at most {2**MAX_FULL_BITS}); use tensored"
            )
        return list(range(2**n_bits))
    return [0, 2**n_bits - 1]


def calibration_circuits(
    qubits: Sequence[int], num_qubits: int, states: Sequence[int], register: str, target: Any
) -> list[QuantumCircuit]:
    """ISA circuits preparing each basis state on ``qubits`` (X where bit k is 1), measured as the model is.

    Built on the physical qubits directly (no transpilation: a layout pass could move them). X is
    native on IBM devices; where a target lacks it, two SX make it.
    """
    from qiskit.circuit import ClassicalRegister, QuantumCircuit

    has_x = target is None or all(target.instruction_supported("x", (q,)) for q in qubits)
    circuits = []
    for state in states:
        circuit = QuantumCircuit(num_qubits, name=f"readout_cal_{state}")
        bits = ClassicalRegister(len(qubits), register)
        circuit.add_register(bits)
        for k, qubit in enumerate(qubits):
            if state >> k & 1:
                if has_x:
                    circuit.x(qubit)
                else:
                    circuit.sx(qubit)
                    circuit.sx(qubit)
        circuit.barrier(list(qubits))
        for k, qubit in enumerate(qubits):
            circuit.measure(qubit, bits[k])
        circuits.append(circuit)
    return circuits


def confusion_matrix(method: str, n_bits: int, frequencies: np.ndarray) -> np.ndarray:
    """A[measured, prepared] from the calibration's outcome frequencies (one row per prepared state).

    ``full``: column s is what state s was read as (correlated errors included). ``tensored``: from
    all-zeros and all-ones, each bit's P(1|0) and P(0|1) (its marginals), A the Kronecker product of
    the per-bit 2x2 matrices (readout errors assumed independent across qubits).
    """
    frequencies = np.asarray(frequencies, dtype=np.float64)
    if method == "full":
        return frequencies.T.copy()
    outcomes = np.arange(2**n_bits)
    matrix = np.ones((1, 1))
    for k in reversed(range(n_bits)):  # bit n-1 is the most significant index of the Kronecker product
        ones = (outcomes >> k & 1).astype(bool)
        p10 = float(frequencies[0][ones].sum())  # read 1 although 0 was prepared
        p01 = float(frequencies[1][~ones].sum())  # read 0 although 1 was prepared
        matrix = np.kron(matrix, np.array([[1.0 - p10, p01], [p10, 1.0 - p01]]))
    return matrix


@dataclass(frozen=True)
class ReadoutMitigator:
    """The inverse of one register's calibrated confusion matrix, applied to outcome frequencies."""

    method: str
    qubits: tuple[int, ...]
    matrix: np.ndarray
    inverse: np.ndarray

    @classmethod
    def from_frequencies(cls, method: str, qubits: Sequence[int], frequencies: np.ndarray) -> ReadoutMitigator:
        matrix = confusion_matrix(method, len(qubits), frequencies)
        condition = float(np.linalg.cond(matrix))
        if not np.isfinite(condition) or condition > MAX_CONDITION:
            raise ReadoutCalibrationError(
                f"readout mitigation: the confusion matrix of qubits {list(qubits)} is singular or ill-conditioned "
                f"(condition number {condition:.3g}); calibrate with more shots or turn "
                "backend.mitigation.readout off"
            )
        return cls(method, tuple(int(q) for q in qubits), matrix, np.linalg.inv(matrix))

    def apply(self, frequencies: np.ndarray) -> np.ndarray:
        """Mitigated distributions (..., 2**n) from measured frequencies (..., 2**n): invert, then project."""
        return project_to_simplex(np.asarray(frequencies, dtype=np.float64) @ self.inverse.T)


class ReadoutMitigation:
    """``backend.mitigation.readout`` on one backend: calibrates once per measured register, counts the cost.

    The calibration is one job of every prepared state at ``shots`` shots, run on the same backend
    (so the same device, noise and session) with a seed of its own, through the backend's job path:
    the job ledger records and replays it like any job, and it does not move the seeds of the
    training jobs. Its jobs, circuits, shots and seconds are kept here for ``accounting.json``.
    """

    def __init__(self, method: str, shots: int, seed: int) -> None:
        self.method = method
        self.shots = int(shots)
        self.seed = int(seed)
        self._mitigators: dict[tuple[int, ...], ReadoutMitigator] = {}
        self._lock = threading.Lock()
        self.cost = {"calibration_jobs": 0, "calibration_circuits": 0, "calibration_shots": 0,
                     "calibration_seconds": 0.0}

    def mitigator(self, backend: Any, isa: QuantumCircuit, register: str) -> ReadoutMitigator:
        """The mitigator of the register ``register`` of ``isa``, calibrated on ``backend`` at first use."""
        qubits = measured_qubits(isa, register)
        with self._lock:  # lockstep federations call from several threads; calibrate once
            if qubits not in self._mitigators:
                self._mitigators[qubits] = self._calibrate(backend, isa.num_qubits, qubits, register)
            return self._mitigators[qubits]

    def _calibrate(self, backend: Any, num_qubits: int, qubits: tuple[int, ...], register: str) -> ReadoutMitigator:
        from llmqfl.config import derive_seed
        from llmqfl.quantum.training.primitive import bitstring_counts

        states = prepared_states(self.method, len(qubits))
        circuits = calibration_circuits(qubits, num_qubits, states, register, getattr(backend, "device_target", None))
        start = time.perf_counter()
        result = backend.run_calibration(circuits, shots=self.shots,
                                         seed=derive_seed(self.seed, "readout_calibration", *qubits))
        self.cost["calibration_seconds"] += time.perf_counter() - start
        frequencies = np.stack([
            bitstring_counts(getattr(result[i].data, register), len(qubits)) / self.shots for i in range(len(states))
        ])
        self.cost["calibration_jobs"] += 1
        self.cost["calibration_circuits"] += len(states)
        self.cost["calibration_shots"] += len(states) * self.shots
        mitigator = ReadoutMitigator.from_frequencies(self.method, qubits, frequencies)
        logger.info("readout calibration (%s) of qubits %s: %d circuits x %d shots; assignment fidelity %.4f",
                    self.method, list(qubits), len(states), self.shots, float(np.mean(np.diag(mitigator.matrix))))
        return mitigator

    def summary(self) -> dict[str, Any]:
        """What ``accounting.json`` records: the method, the calibration's cost, each register's confusion."""
        return {"method": self.method, "shots_per_circuit": self.shots, **self.cost,
                "calibrations": [{"qubits": list(m.qubits),
                                  "assignment_fidelity": float(np.mean(np.diag(m.matrix)))}
                                 for m in self._mitigators.values()]}


def readout_mitigation(kind: str, mitigation: MitigationSettings, *, shots: int, seed: int) -> ReadoutMitigation | None:
    """The backend's :class:`ReadoutMitigation` when ``backend.mitigation.readout.enable``; None otherwise."""
    readout = mitigation.readout
    if not readout.enable:
        return None
    return ReadoutMitigation(readout.method, readout.shots or shots, seed)


def accounting_entry(backend: Any) -> dict[str, Any] | None:
    """``accounting.json``'s ``mitigation``: the runtime options sent and the readout calibration's cost."""
    readout = getattr(backend, "mitigation", None)
    engine = getattr(backend, "_engine", None)
    options = dict(getattr(engine, "mitigation", None) or {})
    if readout is None and not options:
        return None
    return {"runtime_options": options, "readout": readout.summary() if readout is not None else None}
