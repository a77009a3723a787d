"""The numpy density-matrix engine reproduces Aer's noisy distributions and counts; Aer runs what it cannot model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fakes.backend_settings import backend_settings
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector

from llmqfl.quantum.backends.backend import make_backend
from llmqfl.quantum.models.circuits import build_model
from llmqfl.quantum.simulators import noisy_exact
from llmqfl.quantum.simulators.aer_sampler import _PROBABILITIES_LABEL, DistributionSamplerV2, distribution_plan
from llmqfl.quantum.simulators.noisy_exact import NoisyExactEngine, NoisyExactSamplerV2
from llmqfl.quantum.training.primitive import READOUT_REGISTER, measured_circuit


@pytest.fixture(scope="module")
def noisy_backend() -> Any:
    backend = make_backend(backend_settings(kind="aer_noisy", name="FakeManilaV2"), seed=7, n_qubits=4)
    yield backend
    backend.close()


def _bound_values(model: Any, isa: QuantumCircuit, n_sets: int, n_items: int, seed: int) -> np.ndarray:
    """(sets, items, ISA parameters): features per item, weights per set, as the primitive evaluator sends them."""
    rng = np.random.default_rng(seed)
    features = rng.uniform(0, np.pi, (n_items, model.n_inputs))
    weights = rng.uniform(-np.pi, np.pi, (n_sets, model.n_params))
    position = {p: (True, i) for i, p in enumerate(model.input_params)}
    position.update({p: (False, i) for i, p in enumerate(model.weight_params)})
    values = np.empty((n_sets, n_items, isa.num_parameters))
    for column, parameter in enumerate(isa.parameters):
        is_input, index = position[parameter]
        values[:, :, column] = features[None, :, index] if is_input else weights[:, None, index]
    return values


def _aer_distributions(simulator: Any, plan: Any, parameters: list, flat: np.ndarray) -> np.ndarray:
    result = simulator.run([plan.circuit], shots=1, parameter_binds=[plan.bindings(parameters, flat)]).result()
    return np.stack([np.asarray(result.data(i)[_PROBABILITIES_LABEL]) for i in range(flat.shape[0])])


@pytest.mark.parametrize(("kind", "n_classes"), [("vqc", 2), ("qcnn", 3)])
def test_distributions_equal_aer_density_matrix_on_the_device_noise(noisy_backend: Any, kind: str,
                                                                      n_classes: int) -> None:
    # Prepare: the default VQC (ZZ map + RealAmplitudes reps 3) and a QCNN, routed onto FakeManilaV2
    model = build_model(kind=kind, n_qubits=4, n_classes=n_classes)
    isa = noisy_backend.transpile(measured_circuit(model))
    plan = distribution_plan(isa)
    simulator = noisy_backend._engine.simulator
    values = _bound_values(model, isa, n_sets=3, n_items=4, seed=11)
    parameters, flat = list(isa.parameters), values.reshape(12, -1)
    # Act
    ours = NoisyExactEngine(plan, simulator.options.noise_model).distributions(parameters, flat, 4)
    theirs = _aer_distributions(simulator, plan, parameters, flat)
    # Assert: every binding's distribution, noise and all, to 1e-9 (and the noise is really there)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-9, rtol=0)
    assert simulator.options.method == "density_matrix" and not simulator.options.noise_model.is_ideal()


def test_sampler_draws_the_same_counts_as_the_aer_distribution_sampler(noisy_backend: Any) -> None:
    # Prepare
    model = build_model(kind="vqc", n_qubits=4, n_classes=2)
    isa = noisy_backend.transpile(measured_circuit(model))
    values = _bound_values(model, isa, n_sets=2, n_items=5, seed=3)
    simulator = noisy_backend._engine.simulator
    # Act: the same job seed through both samplers
    ours = NoisyExactSamplerV2(simulator, seed=1234, default_shots=256).run([(isa, values)]).result()[0]
    theirs = DistributionSamplerV2(simulator, seed=1234, default_shots=256).run([(isa, values)]).result()[0]
    # Assert: identical shots (same distribution, same seeded draws), and it was our engine that ran
    assert ours.metadata["engine"] == "noisy_exact" and "engine" not in theirs.metadata
    assert ours.metadata["sampling"] == theirs.metadata["sampling"] == "distribution"
    ours_bits, theirs_bits = getattr(ours.data, READOUT_REGISTER), getattr(theirs.data, READOUT_REGISTER)
    assert ours_bits.shape == (2, 5) and ours_bits.num_shots == 256
    np.testing.assert_array_equal(ours_bits.array, theirs_bits.array)


def _delay_circuit() -> QuantumCircuit:
    theta = ParameterVector("t", 2)
    circuit = QuantumCircuit(2)
    circuit.rz(theta[0], 0)
    circuit.sx(0)
    circuit.delay(2000, 0, unit="dt")  # relaxation while idle: outside the gate-error model
    circuit.cx(0, 1)
    circuit.rz(theta[1], 1)
    circuit.measure_all()
    return circuit


@pytest.mark.parametrize("case", ["delay", "too_many_qubits"])
def test_circuits_the_engine_does_not_model_run_on_aer(noisy_backend: Any, case: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    if case == "delay":
        isa = noisy_backend.transpile(_delay_circuit())
        values = np.random.default_rng(0).uniform(-np.pi, np.pi, (3, isa.num_parameters))
    else:
        monkeypatch.setattr(noisy_exact, "MAX_QUBITS", 3)
        model = build_model(kind="vqc", n_qubits=4, n_classes=2)
        isa = noisy_backend.transpile(measured_circuit(model))
        values = _bound_values(model, isa, n_sets=1, n_items=3, seed=5)
    simulator = noisy_backend._engine.simulator
    sampler = NoisyExactSamplerV2(simulator, seed=99, default_shots=64)
    # Act
    ours = sampler.run([(isa, values)]).result()[0]
    theirs = DistributionSamplerV2(simulator, seed=99, default_shots=64).run([(isa, values)]).result()[0]
    # Assert: no engine for it, Aer's own path ran, and the result is exactly Aer's
    assert sampler.engine(isa, distribution_plan(isa)) is None
    assert ours.metadata["sampling"] == "distribution" and "engine" not in ours.metadata
    register = next(name for name, _ in ours.data.items())
    np.testing.assert_array_equal(getattr(ours.data, register).array, getattr(theirs.data, register).array)


def test_compile_refuses_what_it_cannot_model(noisy_backend: Any) -> None:
    # Prepare
    plan = distribution_plan(noisy_backend.transpile(_delay_circuit()))
    # Act / Assert
    with pytest.raises(noisy_exact.Unsupported, match="delay"):
        NoisyExactEngine(plan, noisy_backend._engine.simulator.options.noise_model)


def test_the_config_switch_picks_the_engine_and_both_give_the_same_probabilities() -> None:
    # Prepare: the same seeded aer_noisy backend with each engine
    from llmqfl.quantum.training.evaluators import make_evaluator

    model = build_model(kind="vqc", n_qubits=4, n_classes=2)
    rng = np.random.default_rng(2)
    features, weights = rng.uniform(0, np.pi, (6, 4)), rng.uniform(-np.pi, np.pi, (2, model.n_params))
    results = {}
    for engine in ("auto", "aer"):
        cfg = backend_settings(kind="aer_noisy", name="FakeManilaV2", shots=128, noisy_engine=engine)
        with make_backend(cfg, seed=5, n_qubits=4) as backend:
            # Act
            sampler = backend._engine.sampler(shots=128, seed=0)
            probabilities = make_evaluator(model, backend=backend, seed=0).probabilities(features, weights)
        results[engine] = (type(sampler).__name__, probabilities)
    # Assert: auto (the default) runs the numpy engine, aer keeps Aer, and the sampled results are identical
    assert results["auto"][0] == "NoisyExactSamplerV2" and results["aer"][0] == "DistributionSamplerV2"
    np.testing.assert_array_equal(results["auto"][1], results["aer"][1])
