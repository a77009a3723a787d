"""Per-round overhead of the Flower transport: in-process loop vs Flower deployment vs Flower simulation.

    .venv/bin/python benchmarks/flower_overhead.py                      # 4, 10 and 100 clients
    .venv/bin/python benchmarks/flower_overhead.py --clients 4 --rounds 2   # quick

The same tiny federation (tests/flower_fixtures.py: 2 qubits, exact simulator, COBYLA maxiter 3,
selection all) runs in-process (:class:`llmqfl.federated.server.Federation`), over Flower's
deployment engine (one SuperLink + one SuperNode process per client on localhost,
:mod:`llmqfl.federated.flower.deployment`) and over Flower's simulation engine (Ray,
:mod:`llmqfl.federated.flower.simulation`). A round's time is the server's wall clock from
selection to the checkpoint (messages included); the JSON gives each engine's median over rounds,
its ratio to the in-process median, and whether its global weights equal the in-process ones.
Start-up (processes, connecting, Ray) is reported apart. Deployment above ``--deployment-max``
clients is skipped with the reason (a SuperNode and a ClientApp process per client per message).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import flower_fixtures as ff

from llmqfl.federated.flower.deployment import LocalDeployment, write_app
from llmqfl.federated.flower.simulation import run_simulated


class Timed(ff.Recording):
    """The in-process loop with each round's wall time."""

    def _round(self, state: Any) -> Any:  # type: ignore[override]
        start = time.perf_counter()
        state = super()._round(state)
        self.round_seconds = {**getattr(self, "round_seconds", {}), state.round: time.perf_counter() - start}
        return state


def inprocess(prep: Any) -> tuple[dict[str, Any], list[np.ndarray]]:
    federation = ff.inprocess(prep)
    federation.__class__ = Timed
    start = time.perf_counter()
    federation.run()
    total = time.perf_counter() - start
    per_round = statistics.median(federation.round_seconds.values())
    return {"round_seconds_median": per_round, "total_seconds": total}, federation.round_weights


def _summary(outcome: Any, total: float, reference: list[np.ndarray], base: float) -> dict[str, Any]:
    per_round = statistics.median(outcome.round_seconds.values())
    same = all(np.allclose(outcome.round_weights[r + 1], w, rtol=0, atol=1e-12) for r, w in enumerate(reference))
    return {
        "round_seconds_median": per_round,
        "total_seconds": total,
        "startup_seconds": total - sum(outcome.round_seconds.values()),
        "ratio_to_inprocess": per_round / base,
        "bytes_per_round": sum(outcome.bytes_down[1].values()) + sum(outcome.bytes_up[1].values()),
        "weights_equal_inprocess": bool(same),
    }


def deployment(prep: Any, work: Path, reference: list[np.ndarray], base: float) -> dict[str, Any]:
    paths = ff.write(prep, work / "bundles")
    clients = {int(k.split("_")[1]): p for k, p in paths.items() if k != "server"}
    start = time.perf_counter()
    with LocalDeployment(work / "flower", clients) as local:
        outcome = local.run(write_app(work / "app"), work / "bundles", work / "out", timeout_s=3600)
        rss = [_rss_mb(p.pid) for p in local.supernodes.values()]
    return {
        **_summary(outcome, time.perf_counter() - start, reference, base),
        "supernode_rss_mb_median": statistics.median(rss),
    }


def _rss_mb(pid: int) -> float:
    """Resident memory of one SuperNode process (what each site's idle daemon costs)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def simulation(prep: Any, work: Path, reference: list[np.ndarray], base: float, cpus: int) -> dict[str, Any]:
    ff.write(prep, work / "bundles")
    start = time.perf_counter()
    outcome = run_simulated(work / "bundles", work / "sim_out", num_cpus=cpus)
    return _summary(outcome, time.perf_counter() - start, reference, base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[4, 10, 100])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--deployment-max", type=int, default=10, help="largest client count run on the deployment engine"
    )
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="Ray workers of the simulation engine")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for n in args.clients:
        prep = ff.prepared(n_clients=n, rounds=args.rounds, round_timeout_s=3600, connect_timeout_s=3600)
        base, reference = inprocess(prep)
        entry: dict[str, Any] = {"inprocess": base}
        with tempfile.TemporaryDirectory() as tmp:
            if n <= args.deployment_max:
                entry["deployment"] = deployment(prep, Path(tmp) / "dep", reference, base["round_seconds_median"])
            else:
                entry["deployment"] = {
                    "skipped": f"{n} clients > --deployment-max {args.deployment_max}: {n} SuperNodes, each with "
                    f"its SuperExec (~170 MB a site idle, measured at 100), and a ClientApp process per message "
                    f"started for every client at once (Flower 1.42); at 100 clients on 2 cores and 24 GB the "
                    f"first round's ClientApps exhausted the memory (benchmarks/README.md)"
                }
            entry["simulation"] = simulation(
                prep, Path(tmp) / "sim", reference, base["round_seconds_median"], args.cpus
            )
        results[str(n)] = entry
        print(f"{n} clients: {json.dumps(entry)}", file=sys.stderr)
    setup = {"rounds": args.rounds, "qubits": ff.N_QUBITS, "backend": "exact", "cpus": os.cpu_count()}
    print(json.dumps({"setup": setup, "clients": results}, indent=2))


if __name__ == "__main__":
    main()
