"""Client-level DP of the quantum updates on the Flower transport (Flower's DP strategy wrapper): the same
global weights as the in-process loop's DP aggregation, every upload clipped to the configured norm, and
the accountant's epsilon."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import flower_fixtures as ff
import numpy as np
import pytest

from llmqfl.config import deep_merge, load_settings
from llmqfl.federated.privacy import accounting_entry
from llmqfl.federated.run import build_plan

DP = {"enabled": True, "noise_multiplier": 0.8, "clip_norm": 0.05, "delta": 1e-5}


def test_flower_dp_wrapper_gives_the_inprocess_private_weights(tmp_path: Path) -> None:
    from opacus.accountants import RDPAccountant

    # Prepare: 3 clients, 2 rounds, privacy.quantum on
    base = ff.prepared(n_clients=3, rounds=2)
    config = load_settings(deep_merge(base.config.as_config(), {"privacy": {"quantum": DP}}))
    prep = replace(base, config=config, plan=build_plan(config, "baseline", None))
    # Execute on Flower's simulation engine, beside the in-process reference
    outcome, reference = ff.simulated_and_inprocess(prep, tmp_path)
    assert outcome.result.rounds_run == 2 and outcome.dropped == {}
    # Assert: the same clipped, noised global weights both ways
    for r in (1, 2):
        np.testing.assert_allclose(outcome.round_weights[r], reference.round_weights[r - 1], rtol=0, atol=1e-12)
        assert not np.allclose(outcome.round_weights[r], ff.inprocess(base).aggregate(
            reference.round_updates[r - 1]))  # the noise moved them off the plain FedAvg
    records = outcome.privacy
    assert sorted(records) == [1, 2]
    clipped = [n for r in records.values() for n in r["clipped_norms"]]
    assert max(n for r in records.values() for n in r["update_norms"]) > DP["clip_norm"]
    assert max(clipped) <= DP["clip_norm"] * (1 + 1e-9)
    for r in (1, 2):  # the same norms and noise as in-process (the global weights agree to the last bits)
        mine, theirs = records[r], reference.privacy_rounds[r]
        assert mine["clients"] == theirs["clients"] and mine["noise_std"] == theirs["noise_std"]
        for key in ("update_norms", "clipped_norms"):
            np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-12, atol=1e-15)
    entry = accounting_entry(prep.plan.privacy, 2, records)["quantum"]
    accountant = RDPAccountant()
    accountant.history = [(DP["noise_multiplier"], 1.0, 2)]
    assert entry["epsilon"] == pytest.approx(accountant.get_epsilon(delta=DP["delta"]), rel=1e-12)
