"""The federation over Flower's deployment engine (one SuperLink, one SuperNode per client, localhost).

What a user relies on: moving the clients onto their own sites changes no number (the same global
weights per round as the in-process loop, exact simulator), the bytes that crossed the wire are in
the history, and a site that dies mid-round costs that round only that site's update.
"""

from __future__ import annotations

import time
from pathlib import Path

import flower_fixtures as ff
import numpy as np

from llmqfl.contracts import SERVER
from llmqfl.federated.flower.deployment import LocalDeployment, write_app


def _deploy(tmp_path: Path, prep, **kwargs) -> tuple[LocalDeployment, Path, Path]:
    bundles = ff.write(prep, tmp_path / "bundles")
    clients = {int(name.split("_")[1]): path for name, path in bundles.items() if name != "server"}
    return LocalDeployment(tmp_path / "flower", clients, **kwargs), tmp_path / "bundles", tmp_path / "out"


def test_flower_deployment_matches_inprocess_weights_and_records_wire_bytes(tmp_path: Path) -> None:
    prep = ff.prepared(n_clients=3, rounds=2)
    reference = ff.inprocess(prep)
    expected = reference.run()
    deployment, bundles, out = _deploy(tmp_path, prep)
    with deployment:
        outcome = deployment.run(write_app(tmp_path / "app"), bundles, out, timeout_s=300)

    assert outcome.result.rounds_run == expected.rounds_run == 2
    for r, weights in enumerate(reference.round_weights, start=1):
        np.testing.assert_allclose(outcome.round_weights[r], weights, rtol=0, atol=1e-12)
    np.testing.assert_allclose(outcome.result.weights, expected.weights, rtol=0, atol=1e-12)

    history = outcome.result.history
    clients = history[history["client"] != SERVER]
    # every selected client's row holds the serialized bytes of its train message and reply plus its
    # evaluate message and reply: more than the raw float64 weights, the same each round
    n_weights = prep.weights.size * 8
    assert (clients["bytes_down"] > 2 * n_weights).all() and (clients["bytes_up"] > n_weights).all()
    for r in (1, 2):
        assert sum(outcome.bytes_down[r].values()) == int(history[history["round"] == r]["bytes_down"].sum())
        assert sum(outcome.bytes_up[r].values()) == int(history[history["round"] == r]["bytes_up"].sum())
    # the server's own metrics agree with the in-process loop (its evaluation is split, not changed)
    server = history[history["client"] == SERVER].reset_index(drop=True)
    ref_server = expected.history[expected.history["client"] == SERVER].reset_index(drop=True)
    np.testing.assert_allclose(server["loss"], ref_server["loss"], rtol=0, atol=1e-12)
    ref_clients = expected.history[expected.history["client"] != SERVER]
    np.testing.assert_allclose(clients["test_accuracy"], ref_clients["test_accuracy"], rtol=0, atol=1e-12)
    assert not outcome.dropped


def _wait_for(path: Path, text: str, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not {count} times in {path} after {timeout_s} s")


def test_flower_supernode_killed_mid_round_is_dropped_and_recorded(tmp_path: Path) -> None:
    prep = ff.prepared(n_clients=3, rounds=2, round_timeout_s=30)
    victim = 2
    deployment, bundles, out = _deploy(tmp_path, prep)
    with deployment:
        proc = deployment.submit(write_app(tmp_path / "app"), {"bundles": str(bundles), "out": str(out)})
        # round 2's train message reached the victim's SuperNode: its ClientApp is starting to train
        _wait_for(tmp_path / "flower" / f"supernode_{victim}.log", "Receiving: train message", 2, 240)
        deployment.kill_client(victim)
        outcome = deployment.wait(proc, out, timeout_s=240)

    history = outcome.result.history
    assert outcome.result.rounds_run == 2
    assert sorted(outcome.dropped) == [2] and sorted(outcome.dropped[2]) == [victim]
    row = history[(history["round"] == 2) & (history["client"] == victim)].iloc[0]
    assert row["stop_reason"] == "dropped: no reply within 30 s"
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
