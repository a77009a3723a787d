"""A site dies mid-round on Flower's deployment engine (one SuperLink, one SuperNode per client, localhost).

What a user relies on: losing a site costs that round only that site's update; the round completes
with the others, the history says who was dropped and why, and every round is checkpointed. (That the
transport changes no number is ``tests/e2e/test_flower_stage.py``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import flower_fixtures as ff
import numpy as np

from llmqfl.federated.flower.deployment import LocalDeployment, write_app
from llmqfl.stages.flower_sites import collect


def _deploy(tmp_path: Path, prep, **kwargs) -> tuple[LocalDeployment, Path, Path]:
    bundles = ff.write(prep, tmp_path / "bundles")
    clients = {int(name.split("_")[1]): path for name, path in bundles.items() if name != "server"}
    return LocalDeployment(tmp_path / "flower", clients, **kwargs), tmp_path / "bundles", tmp_path / "out"


def test_flower_supernode_killed_mid_round_is_dropped_and_recorded(tmp_path: Path) -> None:
    # the timeout is well over a healthy reply on a loaded 2-core machine (a ClientApp process per message)
    prep = ff.prepared(n_clients=3, rounds=2, round_timeout_s=60)
    victim = 2
    deployment, bundles, out = _deploy(tmp_path, prep)
    with deployment:
        proc = deployment.submit(write_app(tmp_path / "app"), {"bundles": str(bundles), "out": str(out)})
        # round 2's train message reached the victim's SuperNode: its ClientApp is starting to train
        ff.wait_for(tmp_path / "flower" / f"supernode_{victim}.log", "Receiving: train message", 2, 240)
        deployment.kill_client(victim)
        outcome = deployment.wait(proc, out, timeout_s=240)

    history = outcome.result.history
    assert outcome.result.rounds_run == 2
    assert sorted(outcome.dropped) == [2] and sorted(outcome.dropped[2]) == [victim]
    row = history[(history["round"] == 2) & (history["client"] == victim)].iloc[0]
    # noticed by whichever came first: the round timeout, Flower's error reply (2 missed heartbeats),
    # or the transport's own poll finding the node gone from the grid
    reason = outcome.dropped[2][victim]
    assert reason in ("no reply within 60 s", "node left the federation") or "Node Unavailable" in reason
    assert row["stop_reason"] == f"dropped: {reason}"
    assert row["nfev"] == 0 and np.isnan(row["train_loss"]) and np.isnan(row["test_accuracy"])
    # round 2's global model is FedAvg over exactly the clients that replied, from round 1's model
    survivors = [k for k in range(3) if k != victim]
    round2 = history[(history["round"] == 2) & history["client"].isin(survivors)]
    assert (round2["nfev"] > 0).all() and round2["test_accuracy"].notna().all()
    reference = ff.inprocess(prep)
    reference.run()  # the in-process loop's round 1 is the same; round 2 without the victim
    np.testing.assert_allclose(outcome.round_weights[1], reference.round_weights[0], rtol=0, atol=1e-12)
    without_victim = reference.aggregate({k: reference.round_updates[1][k] for k in survivors})
    np.testing.assert_allclose(outcome.round_weights[2], without_victim, rtol=0, atol=1e-12)
    assert not np.allclose(outcome.round_weights[2], reference.round_weights[1])
    # nothing lost: both rounds are in the history and checkpointed
    assert sorted(history["round"].unique()) == [1, 2]
    assert {p.name.split(".")[0] for p in (out / "checkpoints").glob("round_*")} >= {"round_1", "round_2"}
    # and the stage's files follow from the result, the drop recorded in the accounting
    written = collect(bundles, out)
    assert sorted(p.name for p in written) == ["accounting.json", "history.parquet", "weights.npy"]
    transport = json.loads((out / "accounting.json").read_text())["transport"]
    assert transport["dropped"] == {"2": {str(victim): reason}}
