"""The same federation on Flower's simulation engine (Ray, virtual SuperNodes in one process tree).

What a user relies on: a many-client study run on the simulation engine is the federation the
in-process loop and the deployment engine run, number for number, with the bytes that crossed
Flower's messages recorded per round.
"""

from __future__ import annotations

from pathlib import Path

import flower_fixtures as ff
import numpy as np


def test_flower_simulation_engine_gives_the_inprocess_weights_per_round(tmp_path: Path) -> None:
    # Prepare: 3 clients, 2 rounds, exact simulator
    prep = ff.prepared(n_clients=3, rounds=2)
    # Execute, beside the in-process reference
    outcome, reference = ff.simulated_and_inprocess(prep, tmp_path)
    # Assert: every round's global weights, to 1e-12, and nobody dropped
    assert outcome.result.rounds_run == 2 and outcome.dropped == {}
    for r in (1, 2):
        np.testing.assert_allclose(outcome.round_weights[r], reference.round_weights[r - 1], rtol=0, atol=1e-12)
    # the bytes on the wire per round: every client sent and received more than its float64 weights
    raw = reference.round_weights[0].nbytes
    for r in (1, 2):
        assert sorted(outcome.bytes_up[r]) == [0, 1, 2] and sorted(outcome.bytes_down[r]) == [0, 1, 2]
        assert all(n > raw for n in outcome.bytes_up[r].values())
        assert all(n > raw for n in outcome.bytes_down[r].values())
    history = outcome.result.history
    assert sorted(history["round"].unique()) == [1, 2]
