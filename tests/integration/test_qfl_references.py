"""The quantum student's reference rows: the baseline arm's run also trains centralised and local-only models
on the same splits and seed (``qfl.references``), without changing the federated run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from qfl_stage_inputs import N_CLIENTS, _argv, _config

from llmqfl.stages import qfl as stage


def test_baseline_run_writes_centralised_and_local_only_references(results: Path) -> None:
    # Prepare: the baseline arm with and without references, same seed and splits
    config = _config()
    plain, with_refs = results / "qfl" / "plain", results / "qfl" / "refs"

    # Execute
    assert stage.main(_argv(results, "baseline", config, out=str(plain))) == 0
    assert stage.main(_argv(results, "baseline", {**config, "qfl": {**config["qfl"], "references": True}},
                            out=str(with_refs))) == 0

    # Assert: both references, scored on the server test set, trained rounds x maxiter steps
    accounting = json.loads((with_refs / "accounting.json").read_text())
    student = accounting["references"]["student"]
    assert student["steps"] == 2 * 2
    assert 0.0 <= student["centralised"]["test_accuracy"] <= 1.0
    assert len(student["local_only"]["per_client"]) == N_CLIENTS
    assert student["local_only"]["test_accuracy"] == np.mean(student["local_only"]["per_client"])
    # the references leave the federated run as it was, and are off by default
    assert np.array_equal(np.load(plain / "weights.npy"), np.load(with_refs / "weights.npy"))
    assert "student" not in json.loads((plain / "accounting.json").read_text())["references"]
