"""Primitive path: SamplerV2 + parameter broadcasting through a backend with the agreed duck-typed surface."""

from __future__ import annotations

import numpy as np
import pytest
from fakes.backend_settings import backend_settings
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import SamplerV2

from llmqfl.errors import ConfigError
from llmqfl.quantum import build_model, make_evaluator
from llmqfl.quantum.training.evaluators import ExactEvaluator
from llmqfl.quantum.training.local_training import train_local
from llmqfl.quantum.training.primitive import PrimitiveEvaluator, bitstring_counts
from llmqfl.registry import traits as registry_traits


class AerDouble:
    """Double of the ``quantum.backends.backend`` surface: transpile (cached), run_sampler, shots, num_qubits, seed,
    the kind and its traits."""

    kind = "aer"
    traits = registry_traits("backend", "aer")

    def __init__(self, *, shots: int | None, seed: int = 7, num_qubits: int | None = None) -> None:
        self.shots, self.seed = shots, seed
        simulator = AerSimulator(seed_simulator=seed)
        self.num_qubits = num_qubits if num_qubits is not None else simulator.num_qubits
        self._pass_manager = generate_preset_pass_manager(backend=simulator, optimization_level=1, seed_transpiler=seed)
        self._sampler = SamplerV2(default_shots=shots or 1024, seed=seed)
        self._cache: dict[int, object] = {}
        self.transpile_calls = 0
        self.pubs_seen: list[tuple] = []

    def transpile(self, circuit):
        key = id(circuit)
        if key not in self._cache:
            self.transpile_calls += 1
            self._cache[key] = self._pass_manager.run(circuit)
        return self._cache[key]

    def run_sampler(self, pubs):
        self.pubs_seen.extend(pubs)
        return self._sampler.run(pubs).result()


def test_bitstring_counts_reads_big_endian_bytes():
    # Prepare
    from qiskit.primitives import BitArray

    bits = BitArray.from_samples(["0000000011", "0000000101", "1000000101"], num_bits=10)
    # Execute
    counts = bitstring_counts(bits, 10)
    # Assert
    assert counts[3] == 1 and counts[5] == 1 and counts[512 + 5] == 1 and counts.sum() == 3


@pytest.mark.parametrize(("kind", "n_classes"), [("vqc", 2), ("vqc", 3), ("qcnn", 3)])
def test_primitive_probabilities_match_exact_within_shot_noise(kind, n_classes):
    # Prepare
    rng = np.random.default_rng(3)
    model = build_model(kind=kind, n_qubits=4, n_classes=n_classes)
    backend = AerDouble(shots=4000)
    features = rng.uniform(0, np.pi, (6, 4))
    weights = rng.uniform(-np.pi, np.pi, (2, model.n_params))
    # Execute
    sampled = make_evaluator(model, backend=backend, seed=0).probabilities(features, weights)
    exact = ExactEvaluator(model).probabilities(features, weights)
    # Assert: 5 sigma of a binomial with 4000 shots
    sigma = np.sqrt(exact * (1 - exact) / 4000) + 1e-3
    assert sampled.shape == (2, 6, n_classes)
    assert np.all(np.abs(sampled - exact) < 5 * sigma)
    np.testing.assert_allclose(sampled.sum(axis=-1), 1.0)


def test_one_call_per_evaluation_and_one_transpile():
    # Prepare
    model = build_model(kind="vqc", n_qubits=4, n_classes=2)
    backend = AerDouble(shots=64)
    evaluator = make_evaluator(model, backend=backend, seed=0)
    features = np.random.default_rng(0).uniform(0, np.pi, (20, 4))
    # Execute
    evaluator.probabilities(features, np.zeros(16))
    evaluator.probabilities(features, np.ones((3, 16)))
    # Assert
    assert isinstance(evaluator, PrimitiveEvaluator)
    assert backend.transpile_calls == 1
    assert len(backend.pubs_seen) == 2
    assert np.shape(backend.pubs_seen[1][1]) == (3, 20, 20)  # sets x items x (4 inputs + 16 weights)
    assert evaluator.stats.jobs == 2
    assert evaluator.stats.circuits == 20 + 60
    assert evaluator.stats.shots == 64 * 80
    assert evaluator.stats.objective_evaluations == 4


def test_exact_backend_selects_exact_path():
    # Prepare
    model = build_model(kind="vqc", n_qubits=2, n_classes=2)
    # Execute
    evaluator = make_evaluator(model, backend=AerDouble(shots=None), seed=0)
    # Assert
    assert isinstance(evaluator, ExactEvaluator)


def test_more_qubits_than_backend_is_rejected():
    # Prepare
    model = build_model(kind="vqc", n_qubits=4, n_classes=2)
    backend = AerDouble(shots=10, num_qubits=3)
    # Execute / Assert
    with pytest.raises(ConfigError, match="4 qubits do not fit"):
        make_evaluator(model, backend=backend, seed=0)
    assert backend.transpile_calls == 0


def test_spsa_on_primitive_path_batches_pairs_and_is_deterministic():
    # Prepare
    rng = np.random.default_rng(1)
    model = build_model(kind="vqc", n_qubits=2, n_classes=2)
    features, labels = rng.uniform(0, np.pi, (12, 2)), rng.integers(0, 2, 12)

    def run():
        backend = AerDouble(shots=256, seed=5)
        evaluator = make_evaluator(model, backend=backend, seed=0)
        result = train_local(
            evaluator, features, labels, x0=np.full(model.n_params, 0.5), optimizer="spsa", maxiter=3, seed=11
        )
        return result, backend

    # Execute
    first, backend = run()
    second, _ = run()
    # Assert: 3 iterations x one batched +/- call, plus the final point
    assert len(backend.pubs_seen) == 4
    assert np.shape(backend.pubs_seen[0][1])[0] == 2
    assert first.nfev == 7
    np.testing.assert_array_equal(first.weights, second.weights)
    assert first.loss == second.loss


@pytest.mark.parametrize("aer_sampler", ["distribution", "native"])
def test_primitive_path_with_the_project_backend(aer_sampler):
    # Prepare
    backends = pytest.importorskip("llmqfl.quantum.backends.backend")
    model = build_model(kind="qcnn", n_qubits=4, n_classes=3)
    settings = backend_settings(kind="aer", shots=4000, aer_sampler=aer_sampler)
    backend = backends.make_backend(settings, seed=0, n_qubits=4)
    rng = np.random.default_rng(8)
    features, weights = rng.uniform(0, np.pi, (5, 4)), rng.uniform(-np.pi, np.pi, (2, model.n_params))
    # Execute
    sampled = make_evaluator(model, backend=backend, seed=0).probabilities(features, weights)
    exact = ExactEvaluator(model).probabilities(features, weights)
    # Assert
    assert np.all(np.abs(sampled - exact) < 5 * np.sqrt(exact * (1 - exact) / 4000) + 1e-3)
