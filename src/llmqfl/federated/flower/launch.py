"""The ``qfl`` stage's run over Flower (``federation.transport: flower``): same inputs, same outputs.

Why here: the stage (:mod:`llmqfl.stages.qfl`) keeps its MLflow run, its files and its DVC/Snakemake
contract whatever the transport; only :func:`llmqfl.federated.run.execute` is swapped for
:func:`execute_flower`, which splits the prepared run into site bundles, starts Flower's deployment
engine on this machine (one SuperLink, one SuperNode per client) and reads the ServerApp's result.
The client bundles are deleted afterwards: they are copies of the stage's inputs, not outputs.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmqfl.federated.accounting import accounting_summary, round_metrics
from llmqfl.federated.flower import client_app  # noqa: F401  (what each SuperNode runs: a stage dependency)
from llmqfl.federated.flower.bundles import client_file, write_bundles
from llmqfl.federated.flower.deployment import LocalDeployment, write_app
from llmqfl.federated.flower.server_app import FlowerRun
from llmqfl.federated.privacy import accounting_entry
from llmqfl.federated.server import FederationResult
from llmqfl.settings import Settings

log = logging.getLogger(__name__)
WORK_DIR = "flower"


def run_deadline_s(settings: Settings, rounds: int) -> float:
    """How long the whole run may take before the launcher gives up: connect, then every round's
    train and evaluate exchanges at their timeout, plus a minute for the processes to start."""
    flower = settings.federation.flower
    return 60.0 + flower.connect_timeout_s + 2 * rounds * flower.round_timeout_s


def transport_summary(outcome: FlowerRun) -> dict[str, Any]:
    """The accounting's ``transport`` block: wire bytes per round, who was dropped when (``dropped``,
    and per client ``missed_rounds``) and who came back in which round (``rejoined``)."""
    missed: dict[int, list[int]] = {}
    for r, clients in sorted(outcome.dropped.items()):
        for k in sorted(clients):
            missed.setdefault(k, []).append(r)
    summary = {
        "kind": "flower",
        "engine": "deployment",
        "bytes_down_per_round": {str(r): sum(v.values()) for r, v in sorted(outcome.bytes_down.items())},
        "bytes_up_per_round": {str(r): sum(v.values()) for r, v in sorted(outcome.bytes_up.items())},
        "dropped": {str(r): {str(k): why for k, why in v.items()} for r, v in sorted(outcome.dropped.items())},
        "missed_rounds": {str(k): rounds for k, rounds in sorted(missed.items())},
        "rejoined": {str(r): list(v) for r, v in sorted((outcome.rejoined or {}).items())},
    }
    secagg = getattr(outcome, "secagg", None)  # results pickled before SecAgg+ existed have none
    if secagg:  # federation.flower.secagg: what SecAgg+ added per round (bytes), its tolerance, clipped entries
        summary["secagg"] = {str(r): dict(v) for r, v in sorted(secagg.items())}
    return summary


def execute_flower(
    prepared: Any, *, out_dir: Path, resume: bool, log_metrics: Callable[..., None]
) -> tuple[FederationResult, dict[str, Any]]:
    """:func:`llmqfl.federated.run.execute` over Flower's deployment engine on localhost."""
    work = Path(out_dir) / WORK_DIR
    bundles = work / "bundles"
    write_bundles(prepared, bundles)
    clients = {c.client: bundles / client_file(c.client) for c in prepared.clients}
    try:
        with LocalDeployment(work, clients) as deployment:
            proc = deployment.submit(
                write_app(work / "app"), {"bundles": str(bundles.resolve()), "out": str(Path(out_dir).resolve()),
                                          "resume": bool(resume)},
            )  # fmt: skip
            outcome = deployment.wait(proc, out_dir, timeout_s=run_deadline_s(prepared.config, prepared.plan.rounds))
    finally:
        shutil.rmtree(bundles, ignore_errors=True)
    result = outcome.result
    for r in range(1, result.rounds_run + 1):
        log_metrics(round_metrics([row for row in result.history.to_dict("records") if row["round"] == r]), step=r)
        if r in outcome.secagg:  # federation.flower.secagg: the bytes SecAgg+ added and its stated tolerance
            log_metrics({f"secagg_{k}": float(v) for k, v in outcome.secagg[r].items()}, step=r)
    accounting = accounting_summary(
        result.history, arm=prepared.arm, seed=prepared.seed, stop_reason=result.stop_reason
    )
    accounting["transport"] = transport_summary(outcome)
    if prepared.plan.privacy is not None:  # Flower's DP wrapper aggregated (federated/flower/dp.py)
        accounting["privacy"] = accounting_entry(prepared.plan.privacy, result.rounds_run, outcome.privacy)
    if result.aborted:
        accounting["aborted_round"] = result.aborted
    log.info("flower: %d rounds, dropped %s", result.rounds_run, accounting["transport"]["dropped"] or "none")
    return result, accounting
