"""Flower's simulation engine: the same ServerApp and ClientApp, many virtual SuperNodes in one machine.

Why: a study with tens or hundreds of clients should not need a process per client. Flower numbers
the virtual nodes 0..n-1 (``partition-id``), and node ``k`` loads ``client_{k}.pkl`` from the bundle
folder (:func:`llmqfl.federated.flower.client_app.bundle_path`); the bundle folder and the output
folder reach both apps through the environment, which Flower's Ray workers inherit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llmqfl.federated.flower.bundles import load_server
from llmqfl.federated.flower.server_app import RESULT_FILE, FlowerRun, load_outcome

BUNDLES_ENV, OUT_ENV = "LLMQFL_FLOWER_BUNDLES", "LLMQFL_FLOWER_OUT"


class FlowerSimulationError(RuntimeError):
    """The simulated federation ended without a result."""


def run_simulated(bundles: Path, out_dir: Path, *, num_cpus: int | None = None, verbose: bool = False) -> FlowerRun:
    """Run the federation of ``bundles`` on Flower's simulation engine (Ray); its outcome.

    ``num_cpus`` caps the Ray workers (each ClientApp asks for one CPU); default: every core.
    """
    from flwr.simulation import run_simulation

    from llmqfl.federated.flower.client_app import app as client_app
    from llmqfl.federated.flower.server_app import app as server_app

    bundles, out_dir = Path(bundles).resolve(), Path(out_dir).resolve()
    n_clients = len(load_server(bundles).client_ids)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULT_FILE).unlink(missing_ok=True)
    env = {BUNDLES_ENV: str(bundles), OUT_ENV: str(out_dir)}
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    cpus = int(num_cpus or os.cpu_count() or 1)
    backend_config: dict[str, Any] = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False},  # workers inherit os.environ
    }
    try:
        run_simulation(server_app, client_app, num_supernodes=n_clients, backend_config=backend_config,
                       verbose_logging=verbose)  # fmt: skip
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not (out_dir / RESULT_FILE).exists():
        raise FlowerSimulationError(f"flower simulation of {n_clients} clients ended without {out_dir / RESULT_FILE}")
    return load_outcome(out_dir)
