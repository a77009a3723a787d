"""The ``qfl`` stage with ``federation.transport: flower``: the same run over Flower's deployment engine.

One SuperLink and one SuperNode per client on localhost (insecure), each SuperNode holding only its
own client's partition and teacher outputs; the llm_guided arm, so the LLM signal (each client's
LLM loss) and distillation travel too. What a user relies on: the transport changes no number.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from qfl_stage_inputs import N_CLIENTS, _argv, _config

from llmqfl.contracts import SERVER
from llmqfl.federated.accounting import TIMING_COLUMNS
from llmqfl.federated.client import ClientData
from llmqfl.federated.flower.bundles import load_client, load_server
from llmqfl.stages import flower_sites as sites
from llmqfl.stages import qfl as stage

WIRE = ["bytes_up", "bytes_down"]


def test_flower_deployment_gives_the_inprocess_weights_per_round_and_wire_bytes(results: Path) -> None:
    # Prepare
    config = _config()
    flower = json.loads(json.dumps(config))
    flower["federation"]["transport"] = "flower"
    local, remote = results / "inprocess", results / "flower"
    # Execute
    assert stage.main(_argv(results, "llm_guided", config, out=str(local))) == 0
    assert stage.main(_argv(results, "llm_guided", flower, out=str(remote))) == 0
    # Assert: every round's global weights, to 1e-12
    for r in (1, 2):
        a = np.load(local / "checkpoints" / f"round_{r}.npz")["weights"]
        b = np.load(remote / "checkpoints" / f"round_{r}.npz")["weights"]
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.load(remote / "weights.npy"), np.load(local / "weights.npy"), rtol=0, atol=1e-12)
    # the whole history agrees, except the bytes: in-process counts the raw weights, Flower what crossed
    ours, theirs = (pd.read_parquet(d / "history.parquet") for d in (local, remote))
    untimed = [*TIMING_COLUMNS, *WIRE]
    pd.testing.assert_frame_equal(theirs.drop(columns=untimed), ours.drop(columns=untimed), rtol=0, atol=1e-12)
    clients = theirs[theirs["client"] != SERVER]
    assert len(clients) == 2 * N_CLIENTS
    raw = ours.loc[ours["client"] != SERVER, "bytes_up"].max()  # the float64 weights alone
    assert (clients["bytes_up"] > raw).all() and (clients["bytes_down"] > 2 * raw).all()  # train + evaluate
    assert (theirs.loc[theirs["client"] == SERVER, WIRE] == 0).all().all()
    accounting = json.loads((remote / "accounting.json").read_text())
    transport = accounting["transport"]
    assert transport["kind"] == "flower" and transport["dropped"] == {}
    for r in (1, 2):
        in_round = theirs[theirs["round"] == r]
        assert transport["bytes_up_per_round"][str(r)] == in_round["bytes_up"].sum()
        assert transport["bytes_down_per_round"][str(r)] == in_round["bytes_down"].sum()
    assert accounting["totals"]["bytes_up"] == theirs["bytes_up"].sum()
    # no site's items were left behind in the run's folder
    assert not list((remote / "flower").rglob("client_*.pkl"))


def test_flower_site_bundles_give_each_site_only_its_own_items(results: Path) -> None:
    # Prepare
    config = _config()
    folder = results / "bundles"
    # Execute
    code = sites.main(["bundles", *_argv(results, "llm_guided", config, out=str(folder))])
    # Assert
    assert code == 0
    assert sorted(p.name for p in folder.glob("*.pkl")) == [
        "client_0.pkl",
        "client_1.pkl",
        "client_2.pkl",
        "server.pkl",
    ]
    assert (folder / "app" / "pyproject.toml").is_file()
    server = load_server(folder)
    assert server.client_ids == (0, 1, 2) and not any(isinstance(v, ClientData) for v in vars(server).values())
    for k in range(N_CLIENTS):
        site = load_client(folder / f"client_{k}.pkl")
        assert site.data.client == k and site.data.teacher_probs is not None  # its own teacher outputs
        assert len(site.data.train_y) == 9 and len(site.data.test_y) == 3


def test_flower_collect_without_a_result_fails_with_one_line(tmp_path: Path, capsys) -> None:
    assert sites.main(["collect", "--bundles", str(tmp_path), "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llmqfl flower collect:") and "flower_result.pkl" in err and "\n" not in err
    assert not list(tmp_path.iterdir())
