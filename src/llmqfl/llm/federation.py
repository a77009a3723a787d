"""Federated LoRA rounds (``llm.federated_rounds`` R > 0): every client's rounds and the server's averages.

Each round every client fine-tunes ``llm.epochs`` epochs from the last global adapter on its own train
items, uploads its adapter (LoRA A and B, the head, the DNA token rows), and the server averages them by
train size (``llmqfl.llm.fedavg``); the clients' teacher outputs come from the last global adapter,
evaluated on each client's own items (and on the server's test set, once: every client's final model is
that adapter, so its ``server_test_*`` metrics are the same for every client). Items never leave their
client's data; adapters are what travels.

Why one process for the whole federation: the clients share the model they start from, so one model is
loaded once and each client's round starts by loading the global adapter into it. Run as one job per
client and round, each job paid its own process start-up, model load, tokenisation and MLflow run, and
R = 2 cost 2.0x the CPU of R = 0 (docs/teacher.md); here the rounds cost what their training costs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from llmqfl.config import derive_seed
from llmqfl.errors import ConfigError
from llmqfl.io import atomic_path, write_json
from llmqfl.llm.client_job import (
    ClientData,
    build_client_model,
    check_llm,
    encode_client,
    evaluate_client,
    save_adapter,
    score_server_test,
    train_client,
    write_outputs,
)
from llmqfl.llm.fedavg import ADAPTER_WEIGHTS, average_adapters
from llmqfl.llm.model_assets import DEFAULT_MODELS_ROOT

log = logging.getLogger(__name__)
ROUNDS = "rounds"  # out/rounds/round_r/{client_k/{adapter, metrics.json}, global/{adapter, aggregate.json}}
# a run for client k's outputs (the stage passes one that opens an MLflow run; tests and benchmarks none)
ClientRun = Callable[[int], AbstractContextManager[Any]]


def run_federation(
    llm: Mapping[str, Any],
    clients: Sequence[ClientData],
    *,
    root_seed: int,
    out: str | Path,
    models_root: str | Path = DEFAULT_MODELS_ROOT,
    client_run: ClientRun | None = None,
    tracker: Any = None,
    progress: bool = True,
    test: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Run R rounds for ``clients`` (client k = ``clients[k]``), write ``out/client_k`` and ``out/rounds``.

    ``out/client_k/{adapter, teacher.parquet, metrics.json}`` are what a single client's distill job
    writes (the adapter is the last global one); ``metrics.json`` adds ``federated`` (rounds, bytes per
    round) and counts the client's fine-tuning ``seconds`` over its rounds. ``tracker`` gets the rounds'
    metrics (step = round); ``client_run(k)`` wraps the writing of client k's outputs. ``test`` (the server's
    test set, ``server_test.load_server_test``) adds the last global adapter's ``server_test_*`` to every client.
    """
    check_llm(llm)
    rounds = int(llm.get("federated_rounds", 0))
    if rounds < 1:
        raise ConfigError("config error: llm.federated_rounds: a federation needs at least 1 round")
    if not clients:
        raise ConfigError("config error: federation.n_clients: no clients to federate")
    kinds = {(c.kind, tuple(c.classes)) for c in clients}
    if len(kinds) > 1:
        raise ConfigError(f"config error: the clients' items differ in kind or classes: {sorted(kinds)}")
    out = Path(out)
    torch.set_num_threads(int(llm.get("threads", 1)))
    start = time.perf_counter()
    classifier = build_client_model(llm, clients[0].kind, clients[0].n_classes, root_seed=root_seed,
                                    models_root=models_root)
    encoded = [encode_client(classifier, llm, data, k) for k, data in enumerate(clients)]
    build_seconds = time.perf_counter() - start
    round_seconds: list[list[float]] = [[] for _ in clients]  # per client, per round
    with atomic_path(out / ROUNDS) as folder:
        state, summaries, train_results = _train_rounds(classifier, llm, clients, encoded, round_seconds,
                                                        root_seed=root_seed, rounds=rounds, folder=folder,
                                                        tracker=tracker, progress=progress)
    _load_adapter_state(classifier.model, state)
    scored = score_server_test(classifier, llm, test, clients[0].kind) if test is not None else {}
    federated = {
        "rounds": rounds,
        "bytes_up_per_round": [s["bytes_up"] for s in summaries],
        "bytes_down_per_round": [s["bytes_down"] for s in summaries],
        "bytes_total": sum(s["bytes_up"] + s["bytes_down"] for s in summaries),
    }
    all_metrics = []
    for k, data in enumerate(clients):
        began = time.perf_counter()
        metrics, frame = evaluate_client(classifier, llm, data, encoded[k], client=k,
                                         seed=derive_seed(root_seed, "distill", k, "round", rounds),
                                         result=train_results[k], teacher=True)
        evaluation = time.perf_counter() - began
        metrics.update(
            federated=federated,
            # C6 compares a client's fine-tuning with a full fine-tuning that loads, trains and evaluates alone:
            # the model load (shared here) is counted in full for each client, as it would pay it alone
            seconds=build_seconds + sum(round_seconds[k]) + evaluation,
            evaluation_seconds=evaluation,
            round_seconds=round_seconds[k],
            **scored,
        )
        with client_run(k) if client_run is not None else nullcontext() as run:
            write_outputs(classifier.model, out / f"client_{k}", frame, metrics, run)
        all_metrics.append(metrics)
    return all_metrics


def _train_rounds(classifier: Any, llm: Mapping[str, Any], clients: Sequence[ClientData], encoded: list[Any],
                  round_seconds: list[list[float]], *, root_seed: int, rounds: int, folder: Path, tracker: Any,
                  progress: bool) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]], list[Any]]:
    """The R rounds: (the last global adapter's tensors, the rounds' summaries, each client's last training)."""
    state = _adapter_state(classifier.model)  # round 1: every client starts from the same fresh adapter
    summaries, train_results = [], []
    for r in range(1, rounds + 1):
        folders, train_results = [], []
        for k, data in enumerate(clients):
            began = time.perf_counter()
            _load_adapter_state(classifier.model, state)
            seed = derive_seed(root_seed, "distill", k, "round", r)
            if progress:
                log.info("federated round %d: client %d trains (%d rounds, %d clients)", r, k, rounds, len(clients))
            result = train_client(classifier, llm, data, encoded[k], client=k, seed=seed, progress=progress,
                                  probe_head=r == 1 and llm.get("head_init", "random") == "probe")
            client_folder = folder / f"round_{r}" / f"client_{k}"
            save_adapter(classifier.model, client_folder / "adapter")
            round_seconds[k].append(time.perf_counter() - began)
            write_json(client_folder / "metrics.json", {
                "client": k, "round": r, "seed": seed, "n_train": len(data.train), "train_loss": result.train_loss,
                "train_steps": result.steps, "seconds": round_seconds[k][-1]})
            folders.append(client_folder)
            train_results.append(result)
        summary = _aggregate(r, folders, [len(data.train) for data in clients], folder / f"round_{r}" / "global")
        summaries.append(summary)
        state = _read_adapter(folder / f"round_{r}" / "global" / "adapter")
        if tracker is not None:
            tracker.log_metrics({k: summary[k] for k in ("bytes_up", "bytes_down", "parameters")}, step=r)
    return state, summaries, train_results


def _aggregate(round_index: int, folders: list[Path], sizes: list[int], out: Path) -> dict[str, Any]:
    """The server's step: the size-weighted mean adapter, and what the round moved over the wire."""
    began = time.perf_counter()
    with atomic_path(out / "adapter") as tmp:
        result = average_adapters([f / "adapter" for f in folders], sizes, out=tmp)
    summary = {
        "round": round_index,
        "n_clients": result.n_clients,
        "client_sizes": sizes,
        "weights": result.weights,
        "parameters": result.parameters,
        "bytes_per_client": result.bytes_per_client,
        "bytes_up": result.bytes_per_client * result.n_clients,
        "bytes_down": result.bytes_per_client * result.n_clients,
        "seconds": time.perf_counter() - began,
    }
    write_json(out / "aggregate.json", summary)
    return summary


def _adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of what the adapter saves: LoRA, the head, the trainable token rows (not the embedding matrix)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model, save_embedding_layers=False).items()}


def _load_adapter_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, dict(state))
    unexpected = [k for k in getattr(result, "unexpected_keys", []) or [] if "lora_" in k or "modules_to_save" in k]
    if unexpected:
        raise RuntimeError(f"adapter state does not fit the model: {unexpected[:3]}")


def _read_adapter(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / ADAPTER_WEIGHTS)
