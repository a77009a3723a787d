"""One federated round of the paper's genomic set-up: our engine vs qiskit-machine-learning's VQC.

Set-up (paper code, path A): 10 clients x 80 items split 64/16, 4 qubits, ZZ feature map (reps 1) +
RealAmplitudes (reps 3) = 16 weights, COBYLA with maxiter 10 per client from the global point,
FedAvg, the server fits the average on 200 items, then train and test scores everywhere.

Arms, each timed as the median of ``--repeats`` full rounds:
  ours_exact      our exact path (batched statevector engine)
  ours_primitive  our primitive path on the project's Aer backend, 1024 shots (default
                  ``aer_sampler: distribution``: Aer computes each binding's distribution, shots are
                  drawn from it); ``--native-arm`` adds ``ours_primitive_native`` (Aer's SamplerV2)
  peer_default    qiskit-ml 0.9.1 ``VQC`` with its default sampler (exact ``QMLSampler``)
  peer_aer        qiskit-ml ``VQC`` with Aer's SamplerV2, 1024 shots, transpiled by a pass manager

Fair work: scipy >= 1.16 COBYLA raises ``maxiter`` below n_params + 2 to n_params + 2, so the peer's
``COBYLA(maxiter=10)`` really runs 18 evaluations per fit. Our COBYLA enforces the budget, so by
default we give it the peer's effective budget (``--ours-maxiter match``) and both sides do the same
number of circuit evaluations; the JSON records both budgets and the circuit counts.

Prints ONE JSON object. ``python benchmarks/qfl_round.py --quick`` is a fast smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _threads_from_argv() -> str:
    """``--threads N`` must act before numpy / Aer load their thread pools, so it is read here."""
    for index, arg in enumerate(sys.argv):
        if arg == "--threads" and index + 1 < len(sys.argv):
            return sys.argv[index + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "1"


if __name__ == "__main__":  # same thread limits for every arm (BLAS and Aer's OpenMP)
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_name] = _threads_from_argv()

ROOT = Path(__file__).resolve().parents[1]

from llmqfl.config import derive_seed, load_settings  # noqa: E402  (after the thread limits above)
from llmqfl.data.encoders import onehot  # noqa: E402
from llmqfl.quantum import build_model, cross_entropy, make_evaluator, train_local  # noqa: E402
from llmqfl.quantum.training.loss import accuracy  # noqa: E402

DATA = ROOT / "data" / "coding_vs_intergenic.csv"
ROOT_SEED = 0
INITIAL_POINT = 0.5  # the paper's VQC initial point


@dataclass
class Split:
    """Features (angles) and labels for every participant of one round."""

    clients: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # x_train, y_train, x_test, y_test
    server: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    source: str


# --------------------------------------------------------------------------- data


def _angles(features: np.ndarray) -> np.ndarray:
    low, high = features.min(axis=0), features.max(axis=0)
    return np.pi * (features - low) / np.where(high > low, high - low, 1.0)


def _real_features(n_items: int, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Balanced sample of the committed DNA windows: one-hot -> PCA 4 (pooled, as the paper) -> [0, pi]."""
    if not DATA.exists():
        return None
    import pandas as pd
    from sklearn.decomposition import PCA

    frame = pd.read_csv(DATA)
    classes = sorted(frame["label"].unique())
    per_class = n_items // len(classes)
    if frame["label"].value_counts().min() < per_class:
        return None
    rng = np.random.default_rng(seed)
    parts = [frame[frame["label"] == c].iloc[rng.permutation((frame["label"] == c).sum())[:per_class]] for c in classes]
    sample = pd.concat(parts).iloc[rng.permutation(per_class * len(classes))]
    reduced = PCA(n_components=4, random_state=seed).fit_transform(onehot(sample["item"].astype(str).tolist()))
    labels = np.array([classes.index(c) for c in sample["label"]])
    return _angles(reduced), labels


def _synthetic_features(n_items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded angles whose label depends on them (only used when the real CSV is missing or too small)."""
    rng = np.random.default_rng(seed)
    features = rng.uniform(0, np.pi, (n_items, 4))
    labels = (np.cos(features[:, 0]) * np.cos(features[:, 1]) + 0.3 * np.sin(features[:, 2]) > 0).astype(np.int64)
    return features, labels


def make_split(n_clients: int, items_per_client: int, n_server: int, *, prefer_real: bool) -> Split:
    """Client shards (80/20 local split), server fit set and server test set."""
    n_total = n_clients * items_per_client + 2 * n_server
    seed = derive_seed(ROOT_SEED, "benchmark", "data", n_total)
    real = _real_features(n_total, seed) if prefer_real else None
    features, labels = real if real is not None else _synthetic_features(n_total, seed)
    n_train = round(0.8 * items_per_client)
    clients = []
    for k in range(n_clients):
        lo = k * items_per_client
        x, y = features[lo : lo + items_per_client], labels[lo : lo + items_per_client]
        clients.append((x[:n_train], y[:n_train], x[n_train:], y[n_train:]))
    lo = n_clients * items_per_client
    server = (
        features[lo : lo + n_server],
        labels[lo : lo + n_server],
        features[lo + n_server : lo + 2 * n_server],
        labels[lo + n_server : lo + 2 * n_server],
    )
    return Split(clients, server, "coding_vs_intergenic.csv (one-hot -> PCA 4)" if real is not None else "synthetic")


# --------------------------------------------------------------------------- our round


def ours_round(split: Split, *, maxiter: int, backend: Any = None) -> dict[str, Any]:
    """Clients train from the global point, FedAvg, server fit, scores; one evaluator for the round."""
    model = build_model(kind="vqc", n_qubits=4, n_classes=2)
    evaluator = make_evaluator(model, backend=backend, seed=derive_seed(ROOT_SEED, "benchmark", "evaluator"))
    start_point = np.full(model.n_params, INITIAL_POINT)
    weights, sizes, scores, nfev = [], [], [], 0
    for k, (x_train, y_train, x_test, y_test) in enumerate(split.clients):
        result = train_local(
            evaluator,
            x_train,
            y_train,
            x0=start_point,
            optimizer="cobyla",
            maxiter=maxiter,
            seed=derive_seed(ROOT_SEED, "benchmark", "client", k),
        )
        nfev += result.nfev
        weights.append(result.weights)
        sizes.append(len(y_train))
        scores.append(
            (
                accuracy(evaluator.probabilities(x_train, result.weights), y_train),
                accuracy(evaluator.probabilities(x_test, result.weights), y_test),
            )
        )
    average = np.average(np.stack(weights), axis=0, weights=sizes)
    x_fit, y_fit, x_eval, y_eval = split.server
    server = train_local(
        evaluator,
        x_fit,
        y_fit,
        x0=average,
        optimizer="cobyla",
        maxiter=maxiter,
        seed=derive_seed(ROOT_SEED, "benchmark", "server"),
    )
    nfev += server.nfev
    server_scores = (
        accuracy(evaluator.probabilities(x_fit, server.weights), y_fit),
        accuracy(evaluator.probabilities(x_eval, server.weights), y_eval),
    )
    return {
        "client_weights": weights,
        "server_weights": server.weights,
        "circuits": evaluator.stats.circuits,
        "nfev": nfev,
        "client_scores": scores,
        "server_scores": server_scores,
    }


# --------------------------------------------------------------------------- the peer's round


class _CountingSampler:
    """Wraps a V2 sampler's ``run`` to count bound circuits (rows of each pub's parameter values)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler, self.circuits = sampler, 0
        original = sampler.run

        def run(pubs, *args, **kwargs):
            for pub in pubs:
                values = pub[1] if isinstance(pub, tuple) and len(pub) > 1 else None
                self.circuits += 1 if values is None else int(np.prod(np.shape(values)[:-1]))
            return original(pubs, *args, **kwargs)

        sampler.run = run


def peer_round(
    split: Split, *, maxiter: int, make_sampler: Callable[[], Any], pass_manager: Any = None
) -> dict[str, Any]:
    """The same round written with qiskit-ml's VQC, as the paper's code does (a new VQC per fit)."""
    from qiskit.circuit.library import real_amplitudes, zz_feature_map
    from qiskit_machine_learning.algorithms import VQC
    from qiskit_machine_learning.optimizers import COBYLA

    counter = _CountingSampler(make_sampler())
    nfev = [0]

    def callback(_weights: np.ndarray, _value: float) -> None:
        nfev[0] += 1

    def fit(x: np.ndarray, y: np.ndarray, initial: np.ndarray) -> Any:
        vqc = VQC(
            feature_map=zz_feature_map(4, reps=1),
            ansatz=real_amplitudes(4, reps=3),
            optimizer=COBYLA(maxiter=maxiter),
            initial_point=initial,
            sampler=counter.sampler,
            pass_manager=pass_manager,
            callback=callback,
        )
        return vqc.fit(x, y)

    weights, sizes, scores = [], [], []
    for x_train, y_train, x_test, y_test in split.clients:
        vqc = fit(x_train, y_train, np.full(16, INITIAL_POINT))
        weights.append(np.asarray(vqc.weights))
        sizes.append(len(y_train))
        scores.append((vqc.score(x_train, y_train), vqc.score(x_test, y_test)))
    average = np.average(np.stack(weights), axis=0, weights=sizes)
    x_fit, y_fit, x_eval, y_eval = split.server
    server = fit(x_fit, y_fit, average)
    server_scores = (server.score(x_fit, y_fit), server.score(x_eval, y_eval))
    return {
        "client_weights": weights,
        "server_weights": np.asarray(server.weights),
        "circuits": counter.circuits,
        "nfev": nfev[0],
        "client_scores": scores,
        "server_scores": server_scores,
    }


def peer_loss_difference(split: Split, weight_sets: list[np.ndarray]) -> float:
    """Max |our CE - ln 2 x qiskit-ml CE| over clients, for the same weights and inputs (exact paths)."""
    from qiskit_machine_learning.neural_networks import SamplerQNN
    from qiskit_machine_learning.utils.loss_functions import CrossEntropyLoss

    model = build_model(kind="vqc", n_qubits=4, n_classes=2)
    ours = make_evaluator(model, seed=0)
    qnn = SamplerQNN(
        circuit=model.circuit,
        input_params=list(model.input_params),
        weight_params=list(model.weight_params),
        interpret=lambda b: b % 2,
        output_shape=2,
    )
    worst = 0.0
    for (x_train, y_train, _, _), weights in zip(split.clients, weight_sets, strict=True):
        peer_bits = float(np.sum(CrossEntropyLoss()(qnn.forward(x_train, weights), np.eye(2)[y_train])) / len(y_train))
        mine = cross_entropy(ours.probabilities(x_train, weights), y_train)
        worst = max(worst, abs(mine - peer_bits * math.log(2)))
    return worst


# --------------------------------------------------------------------------- timing


def timed(function: Callable[[], dict[str, Any]], repeats: int) -> tuple[list[float], list[float], dict[str, Any]]:
    """Wall and process-CPU seconds of each repeat (CPU time is steadier on a shared machine)."""
    walls, cpus, last = [], [], {}
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        last = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, last


def project_aer_backend(shots: int, sampler: str = "distribution") -> tuple[Any, str]:
    """The project's Aer backend (llmqfl.quantum.backends.backend) with ``shots`` and ``backend.aer_sampler``."""
    from llmqfl.quantum.backends.backend import make_backend

    backend = make_backend(
        load_settings({"backend": {"kind": "aer", "shots": shots, "aer_sampler": sampler}}).backend,
        seed=derive_seed(ROOT_SEED, "benchmark", "backend"),
        n_qubits=4,
    )
    return backend, f"llmqfl.quantum.backends.backend.make_backend(kind=aer, aer_sampler={sampler})"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-repeats", type=int, default=None, help="repeats of the slow arms (default --repeats)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads for every arm (shared machine)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 3 clients, small large-scale round")
    parser.add_argument("--maxiter", type=int, default=10, help="COBYLA maxiter as configured (paper: 10)")
    parser.add_argument(
        "--ours-maxiter",
        default="match",
        help="'match' = the peer's effective evaluations (max(maxiter, n_params + 2)), or an int",
    )
    parser.add_argument("--shots", type=int, default=1024)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument(
        "--native-arm", action="store_true", help="also time our primitive path on Aer's SamplerV2 (aer_sampler native)"
    )
    parser.add_argument("--synthetic", action="store_true", help="ignore data/coding_vs_intergenic.csv")
    parser.add_argument("--large-clients", type=int, default=100)
    parser.add_argument("--large-items", type=int, default=640)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    slow_repeats = 1 if args.quick else (args.peer_repeats or args.repeats)
    n_clients = 3 if args.quick else 10
    large_clients = 10 if args.quick else args.large_clients

    n_params = 16
    ours_maxiter = max(args.maxiter, n_params + 2) if args.ours_maxiter == "match" else int(args.ours_maxiter)
    split = make_split(n_clients, 80, 200, prefer_real=not args.synthetic)
    out: dict[str, Any] = {
        "setup": {
            "clients": n_clients,
            "items_per_client": 80,
            "client_split": "64/16",
            "server_fit": 200,
            "server_test": 200,
            "qubits": 4,
            "model": "zz_feature_map(4,1)+real_amplitudes(4,3)",
            "optimizer": "cobyla",
            "maxiter_configured": args.maxiter,
            "ours_maxiter": ours_maxiter,
            "peer_effective_maxiter": max(args.maxiter, n_params + 2),
            "shots": args.shots,
            "repeats": repeats,
            "slow_arm_repeats": slow_repeats,
            "threads": args.threads,
            "data": split.source,
        },
        "seconds": {},
        "cpu_seconds": {},
        "all_seconds": {},
        "circuits": {},
        "nfev": {},
        "server_test_accuracy": {},
    }
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}

    def record(name: str, measured: tuple[list[float], list[float], dict[str, Any]]) -> dict[str, Any]:
        wall, cpu, result = measured
        walls.setdefault(name, []).extend(wall)
        cpus.setdefault(name, []).extend(cpu)
        out["seconds"][name] = statistics.median(walls[name])
        out["cpu_seconds"][name] = statistics.median(cpus[name])
        out["all_seconds"][name] = walls[name]
        out["circuits"][name] = result["circuits"]
        out["nfev"][name] = result["nfev"]
        out["server_test_accuracy"][name] = result["server_scores"][1]
        return result

    def exact_arm() -> dict[str, Any]:  # re-measured next to each slow arm: the load drifts
        return record("ours_exact", timed(lambda: ours_round(split, maxiter=ours_maxiter), repeats))

    exact_arm()
    backend, backend_source = project_aer_backend(args.shots)
    out["setup"]["ours_primitive_backend"] = backend_source
    record("ours_primitive", timed(lambda: ours_round(split, maxiter=ours_maxiter, backend=backend), repeats))
    if args.native_arm:  # the same round on Aer's own SamplerV2 (one memory string per shot)
        native, native_source = project_aer_backend(args.shots, "native")
        out["setup"]["ours_primitive_native_backend"] = native_source
        record(
            "ours_primitive_native",
            timed(lambda: ours_round(split, maxiter=ours_maxiter, backend=native), slow_repeats),
        )

    if not args.skip_peer:
        from qiskit.transpiler import generate_preset_pass_manager
        from qiskit_aer import AerSimulator
        from qiskit_aer.primitives import SamplerV2 as AerSamplerV2
        from qiskit_machine_learning.primitives import QMLSampler

        peer = record(
            "peer_default",
            timed(lambda: peer_round(split, maxiter=args.maxiter, make_sampler=QMLSampler), slow_repeats),
        )
        exact_arm()
        aer_seed = derive_seed(ROOT_SEED, "benchmark", "peer_aer")
        pass_manager = generate_preset_pass_manager(
            backend=AerSimulator(), optimization_level=1, seed_transpiler=aer_seed
        )
        record(
            "peer_aer",
            timed(
                lambda: peer_round(
                    split,
                    maxiter=args.maxiter,
                    pass_manager=pass_manager,
                    make_sampler=lambda: AerSamplerV2(default_shots=args.shots, seed=aer_seed),
                ),
                slow_repeats,
            ),
        )

        wall, cpu = out["seconds"], out["cpu_seconds"]
        out["ratios_peer_over_ours"] = {
            "exact_vs_peer_default": wall["peer_default"] / wall["ours_exact"],
            "primitive_vs_peer_aer": wall["peer_aer"] / wall["ours_primitive"],
            "exact_vs_peer_default_cpu": cpu["peer_default"] / cpu["ours_exact"],
            "primitive_vs_peer_aer_cpu": cpu["peer_aer"] / cpu["ours_primitive"],
        }
        if "ours_primitive_native" in wall:
            out["ratios_peer_over_ours"]["primitive_native_vs_peer_aer"] = (
                wall["peer_aer"] / wall["ours_primitive_native"]
            )
        out["loss_max_abs_diff_same_weights"] = peer_loss_difference(split, peer["client_weights"])
        out["targets_met"] = {
            "exact_300x_peer_default": out["ratios_peer_over_ours"]["exact_vs_peer_default"] >= 300,
            "primitive_10x_peer_aer": out["ratios_peer_over_ours"]["primitive_vs_peer_aer"] >= 10,
            "losses_equal_1e-9": out["loss_max_abs_diff_same_weights"] <= 1e-9,
        }
    out["circuit_evaluations_per_second"] = {
        name: out["circuits"][name] / seconds for name, seconds in out["seconds"].items()
    }

    large = make_split(large_clients, args.large_items, 200, prefer_real=False)
    times, cpu_times, result = timed(lambda: ours_round(large, maxiter=ours_maxiter), repeats)
    median = statistics.median(times)
    out["large_exact_round"] = {
        "clients": large_clients,
        "items_per_client": args.large_items,
        "data": "synthetic",
        "seconds": median,
        "cpu_seconds": statistics.median(cpu_times),
        "all_seconds": times,
        "circuits": result["circuits"],
        "circuit_evaluations_per_second": result["circuits"] / median,
        "under_3_s": median < 3.0,
    }
    print(json.dumps(out, indent=2, default=float))
    return out


if __name__ == "__main__":
    main()
