"""A site that dies in a round and is restarted comes back in a later round (Flower deployment, localhost).

What a user relies on: a site that missed a round is not dropped for good; once its SuperNode is up
again it trains in the next round, the history says which round it missed and which it rejoined, and
the global weights are FedAvg over exactly the clients that trained in each round.
"""

from __future__ import annotations

import json
from pathlib import Path

import flower_fixtures as ff
import numpy as np

from llmqfl.federated.evaluation_scope import ScopedEvaluator, client_scope
from llmqfl.federated.flower.deployment import LocalDeployment, write_app
from llmqfl.stages.flower_sites import collect


def test_flower_killed_site_restarted_rejoins_a_later_round(tmp_path: Path) -> None:
    # Prepare: 2 sites, 3 rounds; the victim dies while its round-2 training is in flight
    prep = ff.prepared(n_clients=2, rounds=3, round_timeout_s=60)
    victim, other = 1, 0
    bundles = ff.write(prep, tmp_path / "bundles")
    clients = {int(name.split("_")[1]): path for name, path in bundles.items() if name != "server"}
    out = tmp_path / "out"
    # Execute
    with LocalDeployment(tmp_path / "flower", clients) as deployment:
        proc = deployment.submit(write_app(tmp_path / "app"), {"bundles": str(tmp_path / "bundles"), "out": str(out)})
        ff.wait_for(tmp_path / "flower" / f"supernode_{victim}.log", "Receiving: train message", 2, 240)
        deployment.restart_client(victim)  # killed, then a new SuperNode on the same site's bundle
        outcome = deployment.wait(proc, out, timeout_s=300)
    # Assert: round 2 missed, round 3 rejoined, and both said in the history
    result, history = outcome.result, outcome.result.history
    assert result.rounds_run == 3
    assert sorted(outcome.dropped) == [2] and sorted(outcome.dropped[2]) == [victim]
    assert outcome.rejoined == {3: [victim]}
    rows = history[history["client"] == victim].set_index("round")
    assert rows.loc[2, "stop_reason"] == f"dropped: {outcome.dropped[2][victim]}" and rows.loc[2, "nfev"] == 0
    assert rows.loc[3, "stop_reason"] == "rejoined: missed rounds [2]"
    assert rows.loc[3, "nfev"] > 0 and np.isfinite(rows.loc[3, "test_accuracy"])
    # the weights: round 2 is the other site alone; round 3 FedAvg over both, from round 2's model
    reference = ff.inprocess(prep)
    reference.run()
    np.testing.assert_allclose(outcome.round_weights[1], reference.round_weights[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        outcome.round_weights[2], reference.aggregate({other: reference.round_updates[1][other]}), rtol=0, atol=1e-12
    )
    round3 = {
        k: reference.clients[k].train(
            ScopedEvaluator(reference.evaluator, client_scope(k, 3)),
            global_weights=outcome.round_weights[2],
            maxiter=int(history[(history["round"] == 3) & (history["client"] == k)]["maxiter"].iloc[0]),
            seed=reference.client_seed(k, 3),
        )
        for k in (other, victim)
    }
    np.testing.assert_allclose(outcome.round_weights[3], reference.aggregate(round3), rtol=0, atol=1e-12)
    # the accounting names the missed and rejoined rounds
    collect(tmp_path / "bundles", out)
    transport = json.loads((out / "accounting.json").read_text())["transport"]
    assert transport["missed_rounds"] == {str(victim): [2]} and transport["rejoined"] == {"3": [victim]}
