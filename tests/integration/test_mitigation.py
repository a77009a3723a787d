"""backend.mitigation: the runtime Sampler's twirling and dynamical decoupling reach it on `fake`; readout-error
mitigation undoes a known confusion and a device's readout error, and its calibration is counted; what a kind
cannot honour is refused with a message naming the option."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes.backend_settings import backend_settings
from qfl_stage_inputs import _argv, _config
from qiskit import ClassicalRegister, QuantumCircuit

from llmqfl.config import load_settings
from llmqfl.errors import ConfigError
from llmqfl.planning import CostModel, Sizes, plan_arm
from llmqfl.quantum.backends.backend import RuntimeApi, check_backend_config, make_backend
from llmqfl.quantum.backends.mitigation import (
    ReadoutCalibrationError,
    ReadoutMitigator,
    confusion_matrix,
    project_to_simplex,
)
from llmqfl.quantum.training.primitive import bitstring_counts
from llmqfl.stages import qfl as stage


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ({"kind": "aer_noisy", "mitigation": {"twirling": {"gates": True}}},
         "twirling.gates cannot be honoured by kind"),
        ({"kind": "aer", "shots": 64, "mitigation": {"dynamical_decoupling": {"enable": True}}},
         "dynamical_decoupling.enable cannot be honoured"),
        ({"kind": "fake", "mitigation": {"resilience_level": 1}}, "Sampler has no resilience levels"),
        ({"kind": "fake", "mitigation": {"dynamical_decoupling": {"sequence_type": "YY"}}}, "sequence_type"),
        ({"kind": "aer", "shots": 64, "mitigation": {"readout": {"enable": True}}},
         "readout.enable: kind 'aer' has no readout error"),
        ({"kind": "aer_noisy", "mitigation": {"readout": {"enable": True, "method": "inverse"}}}, "method"),
        ({"kind": "fake", "mitigation": {"readout": {"enable": True, "shots": 0}}}, "shots"),
    ],
)
def test_options_a_kind_cannot_honour_are_refused_at_parse_time(backend: dict, message: str) -> None:
    # Act / Assert: the schema (as the settings are built) or the preflight check refuses before anything is built
    with pytest.raises(ConfigError, match=message):
        check_backend_config(backend_settings(**backend), n_qubits=2)


def test_fake_kind_passes_twirling_and_decoupling_to_the_runtime_sampler() -> None:
    # Prepare: the real runtime classes, with the sampler's options recorded on the way
    real = RuntimeApi.default()
    seen: list[Any] = []

    def sampler(**kwargs: Any) -> Any:
        seen.append(kwargs["options"])
        return real.sampler(**kwargs)

    mitigation = {"twirling": {"gates": True, "measure": True, "num_randomizations": 4, "shots_per_randomization": 32},
                  "dynamical_decoupling": {"enable": True, "sequence_type": "XY4"}}
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    api = RuntimeApi(sampler=sampler, batch=real.batch, session=real.session)
    with make_backend(backend_settings(kind="fake", name="FakeManilaV2", shots=128, mitigation=mitigation),
                      seed=3, n_qubits=2, runtime=api) as backend:
        # Act
        result = backend.run_sampler([circuit])
    # Assert: the options reached the primitive and the twirled job ran (Bell-state counts dominate)
    options = seen[0]
    assert options["twirling"] == {"enable_gates": True, "enable_measure": True, "num_randomizations": 4,
                                   "shots_per_randomization": 32}
    assert options["dynamical_decoupling"] == {"enable": True, "sequence_type": "XY4"}
    counts = result[0].data.meas.get_counts()
    assert sum(counts.values()) == 128
    assert counts.get("00", 0) + counts.get("11", 0) > 0.8 * 128
    assert np.isfinite(backend.usage()["shots"])


# ---------------------------------------------------------------------------- readout-error mitigation


def _confusion(rng: np.random.Generator, n: int) -> np.ndarray:
    """A column-stochastic confusion A[measured, prepared] with correlated errors, 70-90% on the diagonal."""
    matrix = rng.uniform(0.0, 1.0, (n, n))
    np.fill_diagonal(matrix, 0.0)
    matrix *= rng.uniform(0.1, 0.3, n) / matrix.sum(axis=0)
    return matrix + np.diag(1.0 - matrix.sum(axis=0))


def test_full_calibration_undoes_a_known_correlated_confusion() -> None:
    # Prepare: a known 3-bit confusion, what each basis state is read as, and true distributions
    rng = np.random.default_rng(7)
    confusion = _confusion(rng, 8)
    true = rng.dirichlet(np.ones(8), size=(5, 4))
    measured = true @ confusion.T
    # Act: calibrate from the basis states' read-out frequencies (row s: state s prepared)
    mitigator = ReadoutMitigator.from_frequencies("full", (0, 1, 2), confusion.T)
    mitigated = mitigator.apply(measured)
    # Assert: the confusion is undone exactly; the raw distributions are far off
    np.testing.assert_allclose(mitigated, true, atol=1e-12)
    assert np.abs(measured - true).max() > 0.05


def test_tensored_calibration_undoes_independent_per_qubit_errors() -> None:
    # Prepare: per-qubit readout errors (bit 0: P(1|0)=0.02, P(0|1)=0.08; bit 1: 0.05, 0.12), and the frequencies
    # that all-zeros and all-ones are read with
    per_bit = [np.array([[0.98, 0.08], [0.02, 0.92]]), np.array([[0.95, 0.12], [0.05, 0.88]])]
    confusion = np.kron(per_bit[1], per_bit[0])  # bit 1 is the most significant index
    frequencies = np.stack([confusion[:, 0], confusion[:, 3]])
    true = np.array([0.1, 0.6, 0.0, 0.3])
    # Act
    matrix = confusion_matrix("tensored", 2, frequencies)
    mitigated = ReadoutMitigator.from_frequencies("tensored", (4, 2), frequencies).apply(confusion @ true)
    # Assert
    np.testing.assert_allclose(matrix, confusion, atol=1e-12)
    np.testing.assert_allclose(mitigated, true, atol=1e-12)


def test_shot_noise_quasi_probabilities_are_projected_onto_the_simplex() -> None:
    # Prepare: quasi-probabilities with a negative entry, and a distribution that needs no change
    quasi = np.array([[0.7, 0.4, -0.1, 0.0], [0.25, 0.25, 0.25, 0.25]])
    # Act
    projected = project_to_simplex(quasi)
    # Assert: a distribution, the nearest one (mass taken evenly from the positive entries), identity on the second
    np.testing.assert_allclose(projected.sum(axis=1), 1.0)
    assert (projected >= 0).all()
    np.testing.assert_allclose(projected[0], [0.65, 0.35, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(projected[1], quasi[1])


def test_a_calibration_that_reads_out_no_better_than_a_coin_is_refused() -> None:
    coin = np.full((2, 2), 0.5)
    with pytest.raises(ReadoutCalibrationError, match="singular or ill-conditioned"):
        ReadoutMitigator.from_frequencies("full", (0,), coin)


def _prepared(bits: str) -> QuantumCircuit:
    """The basis state ``bits`` (qiskit order: the last character is qubit 0), measured into ``readout``."""
    n = len(bits)
    circuit = QuantumCircuit(n)
    circuit.add_register(ClassicalRegister(n, "readout"))
    for k, bit in enumerate(reversed(bits)):
        if bit == "1":
            circuit.x(k)
    for k in range(n):
        circuit.measure(k, k)
    return circuit


@pytest.mark.parametrize("method", ["full", "tensored"])
def test_readout_mitigation_removes_a_devices_readout_error_and_its_calibration_is_counted(method: str) -> None:
    # Prepare: basis states on aer_noisy FakeManilaV2 (readout errors of a few percent per qubit)
    shots, cal_shots = 4096, 2048
    cfg = backend_settings(kind="aer_noisy", name="FakeManilaV2", shots=shots)
    states = ["000", "101", "011"]
    circuits = [_prepared(bits) for bits in states]
    ideal = np.zeros((3, 8))
    ideal[range(3), [int(bits, 2) for bits in states]] = 1.0
    with make_backend(cfg, seed=5, n_qubits=3) as plain:
        raw = np.stack([bitstring_counts(r.data.readout, 3) / shots for r in plain.run_sampler(circuits)])
    mitigated_cfg = replace(cfg, mitigation=replace(cfg.mitigation, readout=replace(
        cfg.mitigation.readout, enable=True, method=method, shots=cal_shots)))
    with make_backend(mitigated_cfg, seed=5, n_qubits=3) as backend:
        # Act: calibrate on the measured register of the first circuit, then correct every circuit's counts
        mitigator = backend.mitigation.mitigator(backend, backend.transpile(circuits[0]), "readout")
        result = backend.run_sampler(circuits)
        corrected = mitigator.apply(np.stack([bitstring_counts(r.data.readout, 3) / shots for r in result]))
        usage, summary = backend.usage(), backend.mitigation.summary()
    # Assert: the raw counts miss the prepared state by the readout error, the corrected ones by shot noise only
    raw_error = np.abs(raw - ideal).max()
    corrected_error = np.abs(corrected - ideal).max()
    assert raw_error > 0.03
    assert corrected_error < raw_error / 3
    # the calibration job: one job of 2**3 (full) or 2 (tensored) circuits at its own shots, in the backend's totals
    n_cal = 8 if method == "full" else 2
    assert summary["calibration_jobs"] == 1 and summary["calibration_circuits"] == n_cal
    assert summary["calibration_shots"] == n_cal * cal_shots
    assert usage["jobs"] == 2 and usage["shots"] == n_cal * cal_shots + 3 * shots


def test_qfl_stage_records_the_calibration_in_accounting_and_the_plan_counts_it(results: Path) -> None:
    # Prepare: the tiny federation on aer_noisy with readout mitigation (full: 2**2 calibration circuits)
    config = _config(n_qubits=2)
    config["backend"] = {"kind": "aer_noisy", "name": "FakeManilaV2", "shots": 64,
                         "mitigation": {"readout": {"enable": True, "shots": 128}}}
    out = results / "qfl" / "baseline" / "seed_0"
    # Act
    assert stage.main(_argv(results, "baseline", config)) == 0
    # Assert: accounting.json says what the calibration cost, apart from the training totals
    accounting = json.loads((out / "accounting.json").read_text())
    readout = accounting["mitigation"]["readout"]
    assert (readout["calibration_jobs"], readout["calibration_circuits"], readout["calibration_shots"]) == (1, 4, 512)
    assert readout["method"] == "full" and 0.5 < readout["calibrations"][0]["assignment_fidelity"] <= 1.0
    # the cost plan adds the same job, circuits and shots to a run
    full = load_settings(config)
    sizes = Sizes(n_train=(9, 9, 9), n_test=(3, 3, 3), server_val=6, server_test=8)
    off = load_settings({**config, "backend": {**config["backend"], "mitigation": {}}})
    planned = [plan_arm(c, "baseline", 0, sizes, n_params=4, cost_model=CostModel(device=None), n_readout=2)
               for c in (full, off)]
    assert planned[0].expected.jobs - planned[1].expected.jobs == 1
    assert planned[0].expected.shots - planned[1].expected.shots == 512
    assert planned[0].expected.circuits - planned[1].expected.circuits == 4


def test_a_resumed_fake_run_replays_its_calibration_from_the_ledger_and_keeps_the_job_seeds(tmp_path: Path) -> None:
    # Prepare: a fake backend with readout mitigation and its job ledger, built twice (a run, then its resume)
    from llmqfl.quantum.jobs.job_ledger import attach_ledger

    cfg = backend_settings(kind="fake", name="FakeManilaV2", shots=64,
                           mitigation={"readout": {"enable": True, "method": "tensored"}})
    matrices, counts, states = [], [], []
    for resume in (False, True):
        with make_backend(cfg, seed=2, n_qubits=2) as backend:
            ledger = attach_ledger(backend, tmp_path, fingerprint="b" * 64, resume=resume)
            # Act
            mitigator = backend.mitigation.mitigator(backend, backend.transpile(_prepared("01")), "readout")
            matrices.append(mitigator.matrix)
            counts.append(dict(ledger.counts))
            states.append(backend.rng_state())
    # Assert: submitted once, replayed on resume (the same confusion), and the training jobs' seed counter untouched
    assert counts[0].get("submitted") == 1 and counts[1].get("replayed") == 1 and not counts[1].get("submitted")
    np.testing.assert_array_equal(matrices[0], matrices[1])
    assert states == [{"submitted": 0}, {"submitted": 0}]
