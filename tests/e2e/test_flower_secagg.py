"""Secure aggregation (Flower's SecAgg+) on Flower's simulation engine and on localhost's deployment engine.

What a user relies on: turning ``federation.flower.secagg`` on hides every client's update from the
server yet gives the global weights of the plain FedAvg run, within the tolerance the quantisation
settings state, and the bytes the protocol adds are recorded for every round.
"""

from __future__ import annotations

from pathlib import Path

import flower_fixtures as ff
import numpy as np

from llmqfl.federated.flower.deployment import LocalDeployment, write_app
from llmqfl.federated.flower.launch import transport_summary
from llmqfl.federated.flower.secagg import secagg_settings, tolerance


def test_flower_secagg_matches_the_plain_fedavg_within_the_stated_tolerance(tmp_path: Path) -> None:
    # Prepare: 4 clients of 6, 7, 8, 9 train items (weight ratios 2/3, 7/9, 8/9, 1: not on the
    # quantisation grid), SecAgg+ with 3 shares each, threshold 2
    secagg = {"enabled": True, "num_shares": 3, "reconstruction_threshold": 2}
    prep = ff.prepared(n_clients=4, rounds=2, transport="flower", secagg=secagg)
    # Execute, beside the reference: the plain loop, FedAvg of the weights the server sees
    outcome, reference = ff.simulated_and_inprocess(prep, tmp_path)
    # Assert: round 1 starts from the same weights, so its clients train the same; SecAgg+'s global
    # weights are the plain FedAvg within 3 N c / (Q sum r_i), and not bit-equal (it did quantise)
    assert outcome.result.rounds_run == 2 and outcome.dropped == {}
    sizes = [c.n_train for c in prep.clients]
    bound = tolerance(secagg_settings(prep.config), sizes)
    assert 0 < bound < 1e-5  # c = 8, Q = 2**22: a quantisation step of 3.8e-6
    assert outcome.secagg[1]["tolerance"] == bound and outcome.secagg[1]["clipped"] == 0
    gap = np.abs(outcome.round_weights[1] - reference.round_weights[0])
    assert gap.max() <= bound and gap.max() > 0
    # round 2 starts from round 1's (slightly different) weights: still the plain run to a few steps
    np.testing.assert_allclose(outcome.round_weights[2], reference.round_weights[1], rtol=0, atol=1e-3)
    # the bytes SecAgg+ adds (key exchange, masked vectors, unmasking), recorded per round
    summary = transport_summary(outcome)
    for r in (1, 2):
        assert outcome.secagg[r]["bytes_added"] > 0
        assert summary["secagg"][str(r)]["bytes_added"] == outcome.secagg[r]["bytes_added"]
        assert sorted(outcome.bytes_up[r]) == [0, 1, 2, 3]
    # the history still has every client's losses and work (sent in the clear), but no weights reached the server
    history = outcome.result.history
    rows = history[(history["round"] == 1) & (history["client"] >= 0)]
    assert (rows["nfev"] > 0).all() and rows["train_loss"].notna().all()


def test_flower_secagg_on_the_localhost_deployment_engine(tmp_path: Path) -> None:
    # Prepare: the same 4 clients, one round, one SuperLink and a SuperNode per client over gRPC on localhost
    secagg = {"enabled": True, "num_shares": 3, "reconstruction_threshold": 2}
    prep = ff.prepared(n_clients=4, rounds=1, transport="flower", secagg=secagg)
    bundles = ff.write(prep, tmp_path / "bundles")
    reference = ff.inprocess(prep)
    reference.run()
    clients = {int(name.split("_")[1]): path for name, path in bundles.items() if name != "server"}
    # Execute
    with LocalDeployment(tmp_path / "flower", clients) as deployment:
        proc = deployment.submit(write_app(tmp_path / "app"), {"bundles": str(tmp_path / "bundles"),
                                                               "out": str(tmp_path / "out")})  # fmt: skip
        outcome = deployment.wait(proc, tmp_path / "out", timeout_s=480)
    # Assert: the plain FedAvg within the stated tolerance, every SuperNode through all four stages
    assert outcome.result.rounds_run == 1 and outcome.dropped == {}
    gap = np.abs(outcome.round_weights[1] - reference.round_weights[0]).max()
    assert 0 < gap <= outcome.secagg[1]["tolerance"] and outcome.secagg[1]["clipped"] == 0
    assert outcome.secagg[1]["bytes_added"] > 0
    for k in range(4):
        assert (tmp_path / "flower" / f"supernode_{k}.log").read_text().count("Receiving: train message") == 4
