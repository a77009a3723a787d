"""A small prepared run (n clients, 2 qubits, exact simulator) for the Flower tests and benchmark."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import numpy as np

from llmqfl.config import load_settings
from llmqfl.federated.client import Client, ClientData
from llmqfl.federated.flower.bundles import write_bundles
from llmqfl.federated.run import Prepared, build_model, build_plan
from llmqfl.federated.server import Federation, ServerData
from llmqfl.quantum import make_evaluator, train_local
from llmqfl.settings import Settings

N_QUBITS = 2


def config(rounds: int = 2, n_clients: int = 4, transport: str = "inprocess", **flower) -> Settings:
    return load_settings(
        {
            "federation": {"n_clients": n_clients, "rounds": rounds, "selection": {"kind": "all"}, "flower": flower,
                           "transport": transport},
            "qfl": {
                "n_qubits": N_QUBITS,
                "ansatz_reps": 1,
                "optimizer": {"name": "cobyla", "maxiter": 3, "max_maxiter": 6},
                "initial_point": 0.5,
            },
        }
    )


def _items(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(0, np.pi, (n, N_QUBITS))
    return x, (x[:, 0] > np.pi / 2).astype(np.int64)


def prepared(n_clients: int = 4, rounds: int = 2, transport: str = "inprocess", **flower) -> Prepared:
    cfg = config(rounds, n_clients, transport, **flower)
    rng = np.random.default_rng(0)
    clients = [ClientData(k, *_items(rng, 6 + k % 4), *_items(rng, 3)) for k in range(n_clients)]
    server = ServerData(*_items(rng, 4), *_items(rng, 4))
    model = build_model(cfg, 2)
    weights = np.full(model.n_params, 0.5)
    plan = build_plan(cfg, "baseline", None)
    return Prepared("baseline", 0, 11, cfg, clients, server, plan, model, weights, None, f"test-{n_clients}")


def write(prep: Prepared, folder: Path) -> dict[str, Path]:
    return write_bundles(prep, folder)


class Recording(Federation):
    """The in-process loop, keeping each round's global weights and client updates."""

    def aggregate(self, updates, **kwargs):  # type: ignore[override]
        weights = super().aggregate(updates, **kwargs)
        self.round_weights = [*getattr(self, "round_weights", []), weights.copy()]
        self.round_updates = [*getattr(self, "round_updates", []), dict(updates)]
        return weights


def inprocess(prep: Prepared) -> Recording:
    optimizer = prep.config.qfl.optimizer
    trainer = functools.partial(train_local, optimizer=optimizer.name, learning_rate=optimizer.learning_rate)
    clients = [Client(d, trainer=trainer, distill_weight=0.0, temperature=2.0) for d in prep.clients]
    from llmqfl.config import derive_seed

    evaluator = make_evaluator(prep.model, backend=None, seed=derive_seed(prep.base_seed, "evaluator"))
    return Recording(
        clients=clients,
        server=prep.server,
        evaluator=evaluator,
        plan=prep.plan,
        seed=prep.base_seed,
        initial_weights=prep.weights,
    )


def simulated_and_inprocess(prep: Prepared, folder: Path) -> tuple[Any, Recording]:
    """The run on Flower's simulation engine (bundles in ``folder/bundles``, outputs in ``folder/out``) and the
    in-process loop's recording of the same prepared run, to compare round by round."""
    from llmqfl.federated.flower.simulation import run_simulated

    write(prep, folder / "bundles")
    reference = inprocess(prep)
    reference.run()
    return run_simulated(folder / "bundles", folder / "out", num_cpus=2), reference


def wait_for(path: Path, text: str, count: int, timeout_s: float) -> None:
    """Block until ``text`` appears ``count`` times in the log at ``path`` (a SuperNode reached a message)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not {count} times in {path} after {timeout_s} s")
