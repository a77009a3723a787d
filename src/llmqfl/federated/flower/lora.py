"""Federated LoRA rounds over Flower (``llm.federated_rounds`` R > 0): the teachers of sites that keep their data.

Why: :mod:`llmqfl.llm.federation` runs the rounds with every client's items in one process; across sites
each site fine-tunes on its own items and only adapters travel. Round r: the ServerApp sends every site
the global adapter (none in round 1: every site builds the same shared init from the root seed), each
site trains ``llm.epochs`` epochs from it with the seed the in-process loop uses and sends back its
adapter folder's files; the server averages them with :func:`llmqfl.llm.fedavg.average_adapters`
(``llm.adapter_aggregation``), the same call and the same files as in-process. After round R an
``evaluate`` message carries the last global adapter: each site writes its own ``distill`` outputs
(adapter, ``teacher.parquet``, ``metrics.json``) and replies only its metrics, never a teacher output.

A site's SuperNode names its own files: ``--node-config 'config="qfl.json" client=K
partition="client_K.parquet" meta="meta.json" distill="distill"'`` (and ``bundle=`` for the QFL run
after it). The app folder: :func:`llmqfl.federated.flower.deployment.write_app` with ``kind="lora"``.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from llmqfl.config import derive_seed, read_settings
from llmqfl.errors import ConfigError
from llmqfl.federated.flower import messages
from llmqfl.federated.flower.transport import FlowerTransportError, GridTransport
from llmqfl.io import atomic_path, read_json, write_json
from llmqfl.settings import Settings

log = logging.getLogger(__name__)
server = ServerApp()
client = ClientApp()
RESULT_FILE = "lora_result.json"
ROUNDS = "rounds"


# -- payloads: an adapter folder's files, byte for byte --------------------------------------------
def folder_record(folder: Path) -> ConfigRecord:
    return ConfigRecord({p.relative_to(folder).as_posix(): p.read_bytes()
                         for p in sorted(Path(folder).rglob("*")) if p.is_file()})  # fmt: skip


def write_record(record: Any, folder: Path) -> Path:
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for name, data in record.items():
            target = tmp / name
            if target.resolve().parent != tmp.resolve() and tmp.resolve() not in target.resolve().parents:
                raise FlowerTransportError(f"adapter file {name!r} points outside its folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(bytes(data))
    return folder


def check_settings(settings: Settings) -> int:
    """R, or one line for what the rounds over Flower do not do."""
    llm = settings.llm
    if settings.privacy.llm.enabled:
        raise ConfigError("config error: privacy.llm: DP-SGD is not applied in federated LoRA over Flower yet; "
                          "turn it off for sites that keep their data, or run the rounds in-process")
    rounds = llm.federated_rounds
    if rounds < 1:
        raise ConfigError("config error: llm.federated_rounds: federated LoRA over Flower needs at least 1 round")
    if llm.references:
        raise ConfigError("config error: llm.references: the pooled reference needs every item in one place; "
                          "off for sites that keep their data")
    return rounds


# -- the site ---------------------------------------------------------------------------------------
def _node(context: Context) -> dict[str, Any]:
    node = context.node_config
    missing = [k for k in ("config", "client", "partition", "meta", "distill") if k not in node]
    if missing:
        raise ValueError(f"flower lora site: --node-config needs {missing}")
    return dict(node)


def _site(node: dict[str, Any]) -> tuple[Settings, Any, Any, Any, int]:
    """(settings, the site's items, its model at the shared init, the items' tokens, client id)."""
    import torch

    from llmqfl.llm.client_job import build_client_model, check_llm, encode_client, load_client
    from llmqfl.llm.fedavg import check_method, freeze_shared_factors

    settings = read_settings(node["config"])
    check_settings(settings)
    llm, k = settings.llm, int(node["client"])
    check_llm(llm)
    torch.set_num_threads(llm.threads)
    data = load_client(str(node["partition"]), str(node["meta"]), client=k)
    classifier = build_client_model(llm, data.kind, data.n_classes, root_seed=settings.seed,
                                    models_root=str(node.get("models_root", "resources/models")),
                                    classes=data.classes)  # fmt: skip
    freeze_shared_factors(classifier.model, check_method(llm.adapter_aggregation))
    return settings, data, classifier, encode_client(classifier, llm, data, k), k


def _load_global(classifier: Any, record: Any) -> None:
    from llmqfl.llm.federation import load_adapter_folder

    with tempfile.TemporaryDirectory(prefix="llmqfl-lora-") as scratch:
        load_adapter_folder(classifier.model, write_record(record, Path(scratch) / "adapter"))


@client.query()
def query(msg: Message, context: Context) -> Message:
    from llmqfl.llm.client_job import load_client

    node = _node(context)
    data = load_client(str(node["partition"]), str(node["meta"]), client=int(node["client"]))
    return Message(messages.identity_content(int(node["client"]), len(data.train), math.nan), reply_to=msg)


@client.train()
def train(msg: Message, context: Context) -> Message:
    """One round at the site: from the global adapter, on its own train items; its adapter back."""
    from llmqfl.llm.client_job import save_adapter, train_client

    began = time.perf_counter()
    node = _node(context)
    settings, data, classifier, encoded, k = _site(node)
    llm, r = settings.llm, int(msg.content.config_records["config"]["round"])
    if "adapter" in msg.content.config_records:
        _load_global(classifier, msg.content.config_records["adapter"])
    seed = derive_seed(settings.seed, "distill", k, "round", r)
    result = train_client(classifier, llm, data, encoded, client=k, seed=seed, progress=False,
                          probe_head=r == 1 and llm.head_init == "probe")  # fmt: skip
    folder = Path(str(node["distill"])) / ROUNDS / f"round_{r}"
    save_adapter(classifier, folder / "adapter")
    record = {"client": k, "round": r, "seed": seed, "n_train": len(data.train), "train_loss": result.train_loss,
              "train_steps": result.steps, "items_per_second": result.items_per_second,
              "seconds": time.perf_counter() - began}  # fmt: skip
    write_json(folder / "metrics.json", record)
    metrics = MetricRecord({key: value for key, value in record.items() if key != "seed"})
    return Message(RecordDict({"adapter": folder_record(folder / "adapter"), "metrics": metrics}), reply_to=msg)


@client.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The last global adapter: the site's own teacher outputs and metrics, written at the site only."""
    from llmqfl.llm.client_job import evaluate_client, write_outputs
    from llmqfl.llm.finetune import TrainResult

    began = time.perf_counter()
    node = _node(context)
    settings, data, classifier, encoded, k = _site(node)
    records = msg.content.config_records
    rounds = int(records["config"]["round"])
    _load_global(classifier, records["adapter"])
    out = Path(str(node["distill"]))
    per_round = [read_json(out / ROUNDS / f"round_{r}" / "metrics.json") for r in range(1, rounds + 1)]
    last = per_round[-1]
    result = TrainResult(float(last["train_loss"]), int(last["train_steps"]), float(last["seconds"]),
                         float(last["items_per_second"]))  # fmt: skip
    metrics, frame = evaluate_client(classifier, settings.llm, data, encoded, client=k,
                                     seed=derive_seed(settings.seed, "distill", k, "round", rounds),
                                     result=result, teacher=True)  # fmt: skip
    evaluation = time.perf_counter() - began
    round_seconds = [float(m["seconds"]) for m in per_round]
    metrics.update(federated=json.loads(str(records["config"]["federated"])), seconds=sum(round_seconds) + evaluation,
                   evaluation_seconds=evaluation, round_seconds=round_seconds, transport="flower")  # fmt: skip
    write_outputs(classifier, out, frame, metrics, None)
    scalars = {key: float(v) for key, v in metrics.items() if key.startswith("eval_") and isinstance(v, int | float)}
    return Message(RecordDict({"metrics": MetricRecord(scalars)}), reply_to=msg)


# -- the coordinator --------------------------------------------------------------------------------
def federate(transport: GridTransport, settings: Settings, out: Path) -> dict[str, Any]:
    """R rounds over the grid; ``out/rounds/round_r/{client_k, global}`` as in-process; the summary."""
    from llmqfl.integrity import read_manifest, write_manifest
    from llmqfl.llm.fedavg import average_adapters, check_method

    rounds = check_settings(settings)
    method = check_method(settings.llm.adapter_aggregation)
    identities = transport.connect(range(settings.federation.n_clients))
    ids = sorted(identities)
    sizes = [identities[k].n_train for k in ids]
    summaries: list[dict[str, Any]] = []
    global_folder: Path | None = None

    def content(r: int, **values: Any) -> RecordDict:  # a fresh record per message
        records: dict[str, Any] = {"config": ConfigRecord({"round": r, **values})}
        if global_folder is not None:
            records["adapter"] = folder_record(global_folder)
        return RecordDict(records)

    for r in range(1, rounds + 1):
        replies, failed = transport.exchange(r, messages.TRAIN, {k: content(r) for k in ids})
        if failed:
            raise FlowerTransportError(f"federated LoRA round {r}: every site must train; failed: {failed}")
        folder = out / ROUNDS / f"round_{r}"
        for k in ids:
            write_record(replies[k].content.config_records["adapter"], folder / f"client_{k}" / "adapter")
            write_json(folder / f"client_{k}" / "metrics.json", dict(replies[k].content.metric_records["metrics"]))
        began = time.perf_counter()
        with atomic_path(folder / "global" / "adapter") as tmp:
            result = average_adapters([folder / f"client_{k}" / "adapter" for k in ids], sizes, out=tmp, method=method)
            recipe = (read_manifest(folder / f"client_{ids[0]}" / "adapter") or {}).get("llmqfl", {})
            write_manifest(tmp, {"llmqfl": dict(recipe)})
        summary = {"round": r, "method": result.method, "product_error": result.product_error,
                   "n_clients": result.n_clients, "client_sizes": sizes, "weights": result.weights,
                   "parameters": result.parameters, "bytes_per_client": result.bytes_per_client,
                   "bytes_up": sum(transport.bytes_up[r].values()), "bytes_down": sum(transport.bytes_down[r].values()),
                   "seconds": time.perf_counter() - began}  # fmt: skip
        write_json(folder / "global" / "aggregate.json", summary)
        summaries.append(summary)
        global_folder = folder / "global" / "adapter"
        transport.note(f"lora round {r}: averaged {ids}")
    federated = {
        "rounds": rounds, "adapter_aggregation": method,
        "product_error_per_round": [s["product_error"] for s in summaries],
        "bytes_up_per_round": [s["bytes_up"] for s in summaries],
        "bytes_down_per_round": [s["bytes_down"] for s in summaries],
        "bytes_total": sum(s["bytes_up"] + s["bytes_down"] for s in summaries),
    }  # fmt: skip
    final = {k: content(rounds, federated=json.dumps(federated)) for k in ids}
    replies, failed = transport.exchange(rounds + 1, messages.EVALUATE, final)
    if failed:
        raise FlowerTransportError(f"federated LoRA: sites {sorted(failed)} did not write their teachers: {failed}")
    summary = {"federated": federated, "sites": {str(k): dict(replies[k].content.metric_records["metrics"])
                                                 for k in ids}}  # fmt: skip
    write_json(out / RESULT_FILE, summary)
    transport.note(f"lora done: {rounds} rounds")
    return summary


@server.main()
def main(grid: Grid, context: Context) -> None:
    """Run config ``config`` (the stage config file on the coordinator) and ``out`` (where rounds go)."""
    from llmqfl.federated.flower.server_app import PROGRESS_FILE

    run_config = context.run_config
    settings = read_settings(run_config["config"])
    out = Path(str(run_config["out"]))
    out.mkdir(parents=True, exist_ok=True)
    flower = settings.federation.flower
    transport = GridTransport(grid, round_timeout_s=flower.round_timeout_s,
                              connect_timeout_s=flower.connect_timeout_s, progress=out / PROGRESS_FILE)
    federate(transport, settings, out)
