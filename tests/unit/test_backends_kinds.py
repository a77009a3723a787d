"""Each backend kind builds and runs a small broadcast pub; bad settings fail before any work."""

from __future__ import annotations

import numpy as np
import pytest
from fakes.backend_settings import backend_settings
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.library import real_amplitudes, zz_feature_map

from llmqfl.config import derive_seed, load_config, load_settings
from llmqfl.errors import ConfigError
from llmqfl.quantum.backends.backend import (
    DEFAULT_SHOTS,
    ShotBudgetExceeded,
    check_backend_config,
    fake_device_names,
    make_backend,
)

N_QUBITS = 4


def vqc() -> QuantumCircuit:
    """The paper's VQC shape: ZZ feature map + RealAmplitudes (fewer reps to stay fast)."""
    return zz_feature_map(N_QUBITS, reps=1).compose(real_amplitudes(N_QUBITS, reps=1))


def measured(circuit: QuantumCircuit) -> QuantumCircuit:
    out = circuit.copy()
    out.measure_all()
    return out


def values(circuit: QuantumCircuit, n_sets: int = 3, n_items: int = 2, seed: int = 0) -> np.ndarray:
    """Parameter values broadcast as (sets, items, parameters), as the evaluator sends them."""
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, size=(n_sets, n_items, circuit.num_parameters))


def flip_circuit() -> QuantumCircuit:
    """Ideal outcome is always '0101' whatever the angles: a clean probe for device noise."""
    theta = ParameterVector("t", 2)
    qc = QuantumCircuit(N_QUBITS)
    qc.x([0, 2])
    qc.rz(theta[0], 1)
    qc.rz(theta[1], 3)
    qc.measure_all()
    return qc


def test_aer_sampler_is_seeded_and_counts_shots() -> None:
    # Prepare
    circuit = measured(vqc())
    params = values(circuit)
    first = make_backend(backend_settings(kind="aer", shots=200), seed=5, n_qubits=N_QUBITS)
    again = make_backend(backend_settings(kind="aer", shots=200), seed=5, n_qubits=N_QUBITS)
    other = make_backend(backend_settings(kind="aer", shots=200), seed=6, n_qubits=N_QUBITS)
    # Execute
    bits = [b.run_sampler([(circuit, params)])[0].data.meas for b in (first, again, other)]
    second_job = first.run_sampler([(circuit, params)])[0].data.meas
    # Assert
    assert bits[0].shape == (3, 2) and bits[0].num_shots == 200
    assert np.array_equal(bits[0].array, bits[1].array)  # same seed, same samples
    assert not np.array_equal(bits[0].array, bits[2].array)  # another seed, other samples
    assert not np.array_equal(bits[0].array, second_job.array)  # each job draws fresh shot noise
    assert first.usage()["shots"] == 2 * 3 * 2 * 200 and first.usage()["circuits"] == 12


def test_aer_sampler_without_shots_uses_the_default() -> None:
    # Prepare
    backend = make_backend(backend_settings(kind="aer"), seed=1, n_qubits=N_QUBITS)
    # Execute
    bits = backend.run_sampler([(flip_circuit(), [[0.1, 0.2]])])[0].data.meas
    # Assert
    assert bits.num_shots == DEFAULT_SHOTS
    assert bits.get_counts(0) == {"0101": DEFAULT_SHOTS}


def test_aer_noisy_manila_differs_from_ideal() -> None:
    # Prepare
    circuit = flip_circuit()
    params = np.zeros((2, 2))
    noisy = make_backend(backend_settings(kind="aer_noisy", shots=2000), seed=2, n_qubits=N_QUBITS)
    # Execute
    counts = noisy.run_sampler([(circuit, params)])[0].data.meas.get_counts(0)
    # Assert
    assert noisy.name == "FakeManilaV2" and noisy.num_qubits == 5 and noisy.shots == 2000
    assert max(counts, key=counts.get) == "0101"
    assert counts["0101"] < 2000  # readout and gate errors flip some shots
    assert sum(counts.values()) == 2000


def test_fake_local_mode_runs_isa_circuits_in_a_batch() -> None:
    # Prepare
    circuit = measured(vqc())
    params = values(circuit)
    backend = make_backend(backend_settings(kind="fake", name="FakeManilaV2", shots=100), seed=4, n_qubits=N_QUBITS)
    # Execute
    isa = backend.transpile(circuit)
    bits = backend.run_sampler([(isa, params)])[0].data.meas
    backend.close()
    # Assert
    assert backend.transpile(circuit) is isa  # cached per circuit
    assert isa.num_qubits == 5 and isa.layout is not None
    assert bits.shape == (3, 2) and bits.num_shots == 100
    assert backend._engine.mode.__class__.__name__ == "Batch" and not backend._engine.mode._active
    usage = backend.usage()
    assert (usage["jobs"], usage["shots"], usage["failures"]) == (1, 600, 0)
    assert usage["quantum_seconds"] > 0
    with pytest.raises(RuntimeError, match="closed"):
        backend.run_sampler([(isa, params)])


def test_fake_job_mode_and_aer_noisy_agree_on_the_same_device_and_seed() -> None:
    # Prepare: local mode simulates the fake device's noise with Aer, as aer_noisy does
    circuit = measured(vqc())
    params = values(circuit, n_sets=1, n_items=2)
    settings = {"name": "FakeManilaV2", "shots": 300, "mode": "job"}
    fake = make_backend(backend_settings(kind="fake", **settings), seed=9, n_qubits=N_QUBITS)
    # Aer's own SamplerV2: the same random stream as local mode (the default sampler draws its own)
    noisy = make_backend(backend_settings(kind="aer_noisy", aer_sampler="native", **settings), seed=9,
                         n_qubits=N_QUBITS)
    # Execute
    fake_counts = fake.run_sampler([(circuit, params)])[0].data.meas.get_counts()
    noisy_counts = noisy.run_sampler([(circuit, params)])[0].data.meas.get_counts()
    # Assert
    assert sum(fake_counts.values()) == sum(noisy_counts.values()) == 600
    assert fake_counts == noisy_counts


def test_noise_on_the_circuits_qubits_only_gives_the_same_counts_as_the_full_device_model() -> None:
    # Prepare: a 2-qubit circuit on a 5-qubit device; the same Aer seed for both models
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel

    from llmqfl.quantum.backends.backend import fake_device
    from llmqfl.quantum.simulators.device_noise import active_qubits, device_noise_model

    device = fake_device("FakeManilaV2")
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.sx(1)
    circuit.measure_all()
    isa = generate_preset_pass_manager(optimization_level=1, backend=device, seed_transpiler=0).run(circuit)
    qubits = active_qubits([isa])
    full, limited = NoiseModel.from_backend(device), device_noise_model(device, qubits)

    def counts(noise: NoiseModel) -> dict[str, int]:
        simulator = AerSimulator.from_backend(device, noise_model=noise, seed_simulator=5)
        return simulator.run(isa, shots=4000).result().get_counts()

    # Execute
    full_counts, limited_counts = counts(full), counts(limited)
    # Assert: fewer errors, the same noisy outcome
    assert qubits is not None and len(qubits) == 2
    assert set(limited.noise_qubits) == set(qubits) < set(full.noise_qubits)
    assert limited_counts == full_counts
    assert full_counts.get("00", 0) + full_counts.get("11", 0) < 4000  # the noise is there


def test_a_delay_keeps_the_devices_full_noise_model() -> None:
    # Prepare
    from llmqfl.quantum.backends.backend import fake_device
    from llmqfl.quantum.simulators.device_noise import active_qubits, device_noise_model

    circuit = QuantumCircuit(1)
    circuit.delay(100, 0, unit="ns")
    # Execute
    qubits = active_qubits([circuit])
    # Assert
    assert qubits is None
    assert len(device_noise_model(fake_device("FakeManilaV2"), qubits).noise_qubits) == 5


@pytest.mark.slow  # Brisbane's 127-qubit noise model is built once (~5 s); each job then sees the used qubits only
def test_fake_local_mode_on_a_127_qubit_device() -> None:
    # Prepare
    circuit = measured(vqc())
    params = values(circuit, n_sets=2, n_items=2)
    backend = make_backend(backend_settings(kind="fake", name="FakeBrisbane", shots=64), seed=1, n_qubits=N_QUBITS)
    # Execute
    first = backend.run_sampler([(circuit, params)])[0].data.meas
    simulator = backend._engine.mode._backend
    second = backend.run_sampler([(circuit, params)])[0].data.meas
    backend.close()
    # Assert: one simulator for the run, noise on the circuit's 4 physical qubits of 127
    assert backend.num_qubits == 127 and backend.transpile(circuit).num_qubits == 127
    assert backend._engine.mode._backend is simulator and len(backend._engine.qubits) == N_QUBITS
    assert first.shape == second.shape == (2, 2) and first.num_shots == 64
    assert backend.usage()["jobs"] == 2


@pytest.mark.slow  # building Brisbane's 127-qubit noise model and simulating it: ~5 s quiet, ~20 s loaded
def test_127_qubit_device_transpiles_and_runs_a_4_qubit_circuit() -> None:
    # Prepare
    circuit = measured(vqc())
    params = values(circuit, n_sets=2, n_items=2)
    backend = make_backend(backend_settings(kind="aer_noisy", name="FakeBrisbane", shots=64), seed=1, n_qubits=N_QUBITS)
    # Execute
    isa = backend.transpile(circuit)
    bits = backend.run_sampler([(circuit, params)])[0].data.meas
    # Assert
    assert backend.num_qubits == 127 and isa.num_qubits == 127
    assert len(isa.layout.final_index_layout()) == N_QUBITS
    assert set(isa.count_ops()) <= set(backend._engine.target.operation_names) | {"barrier"}
    assert bits.shape == (2, 2) and bits.num_bits == N_QUBITS and bits.num_shots == 64


def test_shot_budget_stops_before_the_job_that_would_exceed_it() -> None:
    # Prepare
    circuit = measured(vqc())
    params = values(circuit, n_sets=1, n_items=2)  # 2 circuits x 100 shots per job
    backend = make_backend(backend_settings(kind="aer", shots=100, shot_budget=500), seed=0, n_qubits=N_QUBITS)
    # Execute
    backend.run_sampler([(circuit, params)])
    backend.run_sampler([(circuit, params)])
    remaining = backend.remaining_shots()
    with pytest.raises(ShotBudgetExceeded) as info:
        backend.run_sampler([(circuit, params)])
    # Assert
    assert remaining == 100
    assert (info.value.needed, info.value.remaining, info.value.budget) == (200, 100, 500)
    assert str(info.value).startswith("backend.shot_budget: sampler job on aer:statevector needs 200 shots")
    assert backend.usage()["jobs"] == 2 and backend.usage()["shots"] == 400  # nothing was submitted
    assert make_backend(backend_settings(kind="aer"), seed=0, n_qubits=2).remaining_shots() is None


def test_sampler_pub_without_measurements_is_rejected() -> None:
    # Prepare
    backend = make_backend(backend_settings(kind="aer", shots=10), seed=0, n_qubits=N_QUBITS)
    # Execute / Assert
    with pytest.raises(ValueError, match="no measurements"):
        backend.run_sampler([(vqc(), values(vqc()))])
    assert backend.usage()["jobs"] == 0


@pytest.mark.parametrize(
    ("backend_cfg", "n_qubits", "message"),
    [
        ({"kind": "aer_noisy", "name": "FakeNowhere"}, 4, r"backend.name: unknown fake device 'FakeNowhere'; e.g. .*"
                                                          r"FakeManilaV2"),
        ({"kind": "fake", "name": "FakeManilaV2"}, 6, "qfl.n_qubits: 6 qubits do not fit FakeManilaV2, which has 5"),
        ({"kind": "aer_noisy"}, 7, "qfl.n_qubits: 7 qubits do not fit FakeManilaV2"),
        ({"kind": "aer", "shots": 0}, 4, "backend.shots"),
        ({"kind": "aer", "shots": True}, 4, "backend.shots"),
        ({"kind": "qpu"}, 4, "backend.kind: 'qpu' is not one of"),
        ({"kind": "fake", "mode": "dedicated"}, 4, "backend.mode"),
    ],
)
def test_bad_settings_fail_with_one_line_before_any_work(backend_cfg: dict, n_qubits: int, message: str) -> None:
    # Execute / Assert: the schema refuses some as the settings are built, the backend's checks the rest
    with pytest.raises(ConfigError, match=message) as info:
        check_backend_config(backend_settings(**backend_cfg), n_qubits=n_qubits)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=message):
        make_backend(backend_settings(**backend_cfg), seed=0, n_qubits=n_qubits)


def test_check_reads_the_whole_config_and_returns_its_backend_section() -> None:
    # Prepare
    settings = load_settings({"backend": {"kind": "fake"}, "qfl": {"n_qubits": 5}})
    # Execute
    checked = check_backend_config(settings)
    # Assert
    assert checked is settings.backend
    assert checked.kind == "fake" and checked.shots is None and checked.mode == "batch"
    assert (checked.retries, checked.backoff_s, checked.timeout_s) == (3, 1.0, None)
    with pytest.raises(ConfigError, match="6 qubits do not fit FakeManilaV2"):
        check_backend_config(load_settings({"backend": {"kind": "fake"}, "qfl": {"n_qubits": 6}}))
    with pytest.raises(TypeError, match="BackendSettings"):  # a raw dict is a caller's bug, not a config error
        check_backend_config({"backend": {"kind": "fake"}, "qfl": {"n_qubits": 5}})
    with pytest.raises(TypeError, match="BackendSettings"):
        make_backend({"kind": "aer"}, seed=0, n_qubits=2)


def test_fake_device_names_cover_small_and_127_qubit_devices() -> None:
    # Execute
    names = fake_device_names()
    # Assert
    assert {"FakeManilaV2", "FakeBrisbane", "FakeSherbrooke"} <= set(names)
    assert all(name.startswith("Fake") for name in names)


def test_non_aer_kinds_default_to_1024_shots() -> None:
    # Execute
    backend = make_backend(backend_settings(kind="aer_noisy"), seed=0, n_qubits=2)
    # Assert
    assert backend.shots == DEFAULT_SHOTS == 1024


def test_hardware_experiment_config_is_valid_and_runs_offline(project_root) -> None:
    # Prepare
    config = load_config(project_root / "config" / "experiments" / "ibm-hardware.yaml")
    settings = load_settings(config)
    # Execute
    checked = check_backend_config(settings)
    backend = make_backend(settings.backend, seed=derive_seed(settings.seed, "backend"),
                           n_qubits=settings.qfl.n_qubits)
    # Assert
    assert (checked.kind, checked.name, checked.shots) == ("fake", "FakeManilaV2", 10)
    assert (config["federation"]["n_clients"], config["federation"]["rounds"]) == (3, 10)
    assert config["federation"]["selection"] == {"kind": "closest_to_server", "fraction": 0.1}
    assert config["qfl"]["optimizer"]["maxiter"] == 1 and config["qfl"]["optimizer"]["max_maxiter"] == 5
    guidance = config["qfl"]["guidance"]
    assert (guidance["rule"], guidance["max_increment"], guidance["signal"]) == ("adaptive", 5, "eval_loss")
    assert config["data"]["source"] == "coding_vs_intergenic"
    assert backend.num_qubits == 5 and backend.shots == 10
    backend.close()


def test_fake_session_mode_is_closed_by_the_context_manager() -> None:
    # Prepare
    circuit = measured(vqc())
    # Execute
    with make_backend(backend_settings(kind="fake", shots=20, mode="session"), seed=0, n_qubits=N_QUBITS) as backend:
        bits = backend.run_sampler([(circuit, values(circuit, n_sets=1, n_items=1))])[0].data.meas
        session = backend._engine.mode
        was_active = session._active
    # Assert
    assert type(session).__name__ == "Session" and was_active and not session._active
    assert bits.num_shots == 20


# --------------------------------------------------------------------------- Aer distribution sampler


def _frequencies(bit_array, n_bits: int) -> np.ndarray:
    """(..., 2**n_bits) outcome frequencies of a BitArray."""
    from llmqfl.quantum.training.primitive import bitstring_counts

    return bitstring_counts(bit_array, n_bits) / bit_array.num_shots


@pytest.mark.parametrize("kind", ["aer", "aer_noisy"])
def test_distribution_sampler_agrees_with_aer_sampler_within_shot_noise(kind: str) -> None:
    # Prepare: the noisy device adds gate noise and per-qubit readout errors, both must be reproduced
    circuit = measured(vqc())
    params = values(circuit, n_sets=2, n_items=2, seed=4)
    shots = 20_000
    settings = {"kind": kind, "shots": shots, "name": "FakeManilaV2" if kind == "aer_noisy" else None}
    fast = make_backend(backend_settings(**settings, aer_sampler="distribution"), seed=1, n_qubits=N_QUBITS)
    native = make_backend(backend_settings(**settings, aer_sampler="native"), seed=2, n_qubits=N_QUBITS)
    # Execute
    fast_result = fast.run_sampler([(circuit, params)])[0]
    native_result = native.run_sampler([(circuit, params)])[0]
    # Assert: 5 sigma of the difference of two binomial estimates, per outcome and binding
    assert fast_result.metadata["sampling"] == "distribution"
    assert fast_result.data.meas.shape == native_result.data.meas.shape == (2, 2)
    assert fast_result.data.meas.num_shots == shots
    p, q = _frequencies(fast_result.data.meas, N_QUBITS), _frequencies(native_result.data.meas, N_QUBITS)
    mean = (p + q) / 2
    sigma = np.sqrt(2 * mean * (1 - mean) / shots) + 1.0 / shots
    assert np.all(np.abs(p - q) < 5 * sigma)
    assert fast.usage()["shots"] == native.usage()["shots"] == 4 * shots


def test_distribution_sampler_reproduces_readout_errors() -> None:
    # Prepare: the ideal outcome is always '0101', so every other outcome is device noise
    circuit = flip_circuit()
    params = values(circuit, n_sets=1, n_items=1)
    settings = {"kind": "aer_noisy", "name": "FakeManilaV2", "shots": 40_000}
    fast = make_backend(backend_settings(**settings, aer_sampler="distribution"), seed=3, n_qubits=N_QUBITS)
    native = make_backend(backend_settings(**settings, aer_sampler="native"), seed=3, n_qubits=N_QUBITS)
    # Execute
    p = _frequencies(fast.run_sampler([(circuit, params)])[0].data.meas, N_QUBITS)[0, 0]
    q = _frequencies(native.run_sampler([(circuit, params)])[0].data.meas, N_QUBITS)[0, 0]
    # Assert: a few percent of shots are wrong on both, and by the same amount
    assert 0.02 < 1 - p[0b0101] < 0.3
    assert abs(p[0b0101] - q[0b0101]) < 5 * np.sqrt(2 * q[0b0101] * (1 - q[0b0101]) / 40_000)


def test_distribution_sampler_is_deterministic_per_seed() -> None:
    # Prepare
    circuit = measured(vqc())
    params = values(circuit)

    def bits(seed: int) -> np.ndarray:
        backend = make_backend(backend_settings(kind="aer", shots=100), seed=seed, n_qubits=N_QUBITS)
        return backend.run_sampler([(circuit, params)])[0].data.meas.array

    # Execute
    first, again, other = bits(5), bits(5), bits(6)
    # Assert
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == (3, 2, 100, 1)


def test_non_terminal_measurements_fall_back_to_aer_sampler() -> None:
    # Prepare: qubit 0 is measured, flipped and measured again: not a single final distribution
    from qiskit import ClassicalRegister, QuantumRegister

    from llmqfl.quantum.simulators.aer_sampler import distribution_plan

    qubits, bits = QuantumRegister(2, "q"), ClassicalRegister(2, "c")
    circuit = QuantumCircuit(qubits, bits)
    circuit.x(0)
    circuit.measure(0, 0)
    circuit.x(0)
    circuit.measure(0, 1)
    backend = make_backend(backend_settings(kind="aer", shots=50), seed=0, n_qubits=2)
    # Execute
    result = backend.run_sampler([circuit])[0]
    # Assert: Aer's own sampler ran it, with the right (deterministic) outcome
    assert distribution_plan(backend.transpile(circuit)) is None
    assert "sampling" not in result.metadata
    assert result.data.c.get_counts() == {"01": 50}


def test_distribution_plan_maps_registers_and_readout() -> None:
    # Prepare: two registers, one clbit never measured, readout matrices on two bits
    from qiskit import ClassicalRegister, QuantumRegister

    from llmqfl.quantum.simulators.aer_sampler import apply_readout, distribution_plan, pack_register

    circuit = QuantumCircuit(QuantumRegister(3, "q"), ClassicalRegister(2, "a"), ClassicalRegister(2, "b"))
    circuit.x(2)
    circuit.measure(2, 0)  # a[0] <- q2
    circuit.measure(0, 3)  # b[1] <- q0
    probabilities = np.array([0.1, 0.2, 0.3, 0.4])
    flip = np.array([[0.9, 0.1], [0.2, 0.8]])
    outcomes = np.array([[0b01, 0b10, 0b11]])  # bit 0 = q0, bit 1 = q2
    # Execute
    plan = distribution_plan(circuit)
    recorded = apply_readout(probabilities, [np.eye(2), flip])
    a, b = (pack_register(outcomes, bits) for _, _, bits in plan.registers)
    # Assert
    assert plan.measured_qubits == (0, 2)
    assert plan.registers == (("a", 2, (1, -1)), ("b", 2, (-1, 0)))
    np.testing.assert_allclose(recorded, probabilities @ np.kron(flip, np.eye(2)))
    assert a.get_bitstrings() == ["00", "01", "01"] and b.get_bitstrings() == ["10", "00", "10"]


def test_expression_angles_are_evaluated_with_numpy_like_qiskit_binds_them() -> None:
    # Prepare: the ZZ map's phase gates carry expressions such as 2(pi - x0)(pi - x1)
    from llmqfl.quantum.simulators.aer_sampler import distribution_plan

    circuit = measured(zz_feature_map(2, reps=1))
    values_2d = np.random.default_rng(2).uniform(0, np.pi, (5, 2))
    # Execute
    plan = distribution_plan(circuit)
    columns = plan.bindings(circuit.parameters, values_2d)
    # Assert: every derived angle equals qiskit's own binding of the original expression
    assert plan.derived and set(columns) == set(plan.circuit.parameters)
    expressions = [  # in circuit order, as the plan derives them
        p for inst in circuit.data for p in inst.operation.params
        if getattr(p, "parameters", None) and not isinstance(p, Parameter)
    ]
    assert len(expressions) == len(plan.derived) == 3  # 2 x0, 2 x1, 2 (pi - x0)(pi - x1)
    for expression, item in zip(expressions, plan.derived, strict=True):
        for row in range(5):
            binding = {p: values_2d[row, circuit.parameters.data.index(p)] for p in expression.parameters}
            assert np.isclose(columns[item.parameter][row], float(expression.bind(binding)))


def test_readout_matrices_refuse_noise_they_cannot_reproduce() -> None:
    # Prepare: local readout errors are modelled; measure-gate errors and 2-qubit readout errors are not
    from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error

    from llmqfl.quantum.simulators.aer_sampler import readout_matrices

    local = NoiseModel()
    local.add_readout_error(ReadoutError([[0.9, 0.1], [0.2, 0.8]]), [1])
    on_measure = NoiseModel()
    on_measure.add_all_qubit_quantum_error(depolarizing_error(0.1, 1), ["measure"])
    correlated = NoiseModel()
    correlated.add_readout_error(ReadoutError([[0.97, 0.01, 0.01, 0.01]] * 4), [0, 1])
    # Execute
    matrices = readout_matrices(local, [0, 1])
    # Assert
    np.testing.assert_array_equal(matrices[0], np.eye(2))
    np.testing.assert_array_equal(matrices[1], [[0.9, 0.1], [0.2, 0.8]])
    np.testing.assert_array_equal(readout_matrices(None, [0])[0], np.eye(2))
    assert readout_matrices(on_measure, [0]) is None
    assert readout_matrices(correlated, [0, 1]) is None
