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

Resume: each completed round is written whole (atomically) to ``out/checkpoints/round_r/`` (its client
adapters and metrics, the averaged adapter, and a manifest with every file's digest and the fingerprint of
the federation's inputs). A killed job resumes after its last complete round whose files match their
digests and whose fingerprint matches, and ends with the outputs an uninterrupted run writes (every round
seeds its own training); a round whose files differ from their digests is named in one line and it and the
later rounds are trained again. ``out/rounds/`` is the rounds' copy (hard links) that the workflow declares:
Snakemake deletes a job's declared outputs before it runs it, so the checkpoints live beside them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from llmqfl import layout, provenance
from llmqfl.config import derive_seed
from llmqfl.errors import ConfigError, IntegrityError
from llmqfl.integrity import check_manifest, write_manifest
from llmqfl.io import atomic_path, read_json, write_json
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
from llmqfl.llm.dp_sgd import DpSgd, federated_metrics
from llmqfl.llm.fedavg import ADAPTER_WEIGHTS, average_adapters, check_method, freeze_shared_factors
from llmqfl.llm.finetune import TrainResult
from llmqfl.llm.model_assets import DEFAULT_MODELS_ROOT
from llmqfl.settings import DpSgdSettings, LlmSettings, Settings, as_plain

log = logging.getLogger(__name__)
ROUNDS = layout.ROUNDS  # out/rounds/round_r/{client_k/{adapter, metrics.json}, global/{adapter, aggregate.json}}
CHECKPOINTS = "checkpoints"  # out/checkpoints/round_r/: the same, written as each round completes (resume)
_ROUND = re.compile(r"^round_(\d+)$")
# a run for client k's outputs (the stage passes one that opens an MLflow run; tests and benchmarks none)
ClientRun = Callable[[int], AbstractContextManager[Any]]


def run_federation(
    settings: Settings,
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

    ``settings.llm`` is the fine-tuning (R = ``llm.federated_rounds``), ``settings.privacy.llm`` its DP-SGD.

    ``out/client_k/{adapter, teacher.parquet, metrics.json}`` are what a single client's distill job
    writes (the adapter is the last global one); ``metrics.json`` adds ``federated`` (rounds, bytes per
    round) and counts the client's fine-tuning ``seconds`` over its rounds. ``tracker`` gets the rounds'
    metrics (step = round); ``client_run(k)`` wraps the writing of client k's outputs. ``test`` (the server's
    test set, ``server_test.load_server_test``) adds the last global adapter's ``server_test_*`` to every client.
    Completed rounds in ``out/checkpoints`` with this federation's fingerprint are not trained again.
    """
    llm, privacy = settings.llm, settings.privacy.llm
    check_llm(llm)
    rounds = int(llm.federated_rounds)
    if rounds < 1:
        raise ConfigError("config error: llm.federated_rounds: a federation needs at least 1 round")
    if not clients:
        raise ConfigError("config error: federation.n_clients: no clients to federate")
    kinds = {(c.kind, tuple(c.classes)) for c in clients}
    if len(kinds) > 1:
        raise ConfigError(f"config error: the clients' items differ in kind or classes: {sorted(kinds)}")
    method = check_method(str(llm.adapter_aggregation))
    out = Path(out)
    torch.set_num_threads(int(llm.threads))
    start = time.perf_counter()
    classifier = build_client_model(llm, clients[0].kind, clients[0].n_classes, root_seed=root_seed,
                                    models_root=models_root, classes=clients[0].classes)
    freeze_shared_factors(classifier.model, method)  # ffa: A stays the shared init in every client
    encoded = [encode_client(classifier, llm, data, k) for k, data in enumerate(clients)]
    initial = _adapter_state(classifier.model)  # the shared init every client starts round 1 from
    build_seconds = time.perf_counter() - start
    progress_ = _Rounds(out / CHECKPOINTS, federation_fingerprint(settings, clients, root_seed), rounds, len(clients))
    state = _train_rounds(classifier, llm, clients, encoded, progress_, root_seed=root_seed, tracker=tracker,
                          progress=progress, privacy=privacy)
    with atomic_path(out / ROUNDS) as folder:
        folder.mkdir()
        for r in range(1, rounds + 1):
            shutil.copytree(progress_.folder(r), folder / f"round_{r}", copy_function=_link_or_copy)
    references = None
    if llm.references and test is not None:  # centralised and local-only teachers (issue 22)
        from llmqfl.llm.teacher_references import teacher_references

        references = teacher_references(classifier, llm, clients, encoded, root_seed=root_seed, test=test,
                                        reset=lambda: _load_adapter_state(classifier.model, initial),
                                        privacy=privacy)
    _load_adapter_state(classifier.model, state)
    scored = score_server_test(classifier, llm, test, clients[0].kind) if test is not None else {}
    summaries = progress_.summaries
    federated = {
        "rounds": rounds,
        "adapter_aggregation": method,
        "product_error_per_round": [s.get("product_error", 0.0) for s in summaries],
        "bytes_up_per_round": [s["bytes_up"] for s in summaries],
        "bytes_down_per_round": [s["bytes_down"] for s in summaries],
        "bytes_total": sum(s["bytes_up"] + s["bytes_down"] for s in summaries),
    }
    all_metrics = []
    for k, data in enumerate(clients):
        began = time.perf_counter()
        metrics, frame = evaluate_client(classifier, llm, data, encoded[k], client=k,
                                         seed=derive_seed(root_seed, "distill", k, "round", rounds),
                                         result=progress_.last_results[k], teacher=True)
        evaluation = time.perf_counter() - began
        round_seconds = progress_.round_seconds[k]
        dp = DpSgd.from_settings(privacy)
        if dp is not None and "dp_steps" in metrics:  # every round's steps in one account (privacy.llm)
            metrics = federated_metrics(metrics, rounds, dp)
        metrics.update(
            federated=federated,
            # C6 compares a client's fine-tuning with a full fine-tuning that loads, trains and evaluates alone:
            # the model load (shared here) is counted in full for each client, as it would pay it alone
            seconds=build_seconds + sum(round_seconds) + evaluation,
            evaluation_seconds=evaluation,
            round_seconds=round_seconds,
            **scored,
        )
        if references is not None:
            metrics["references"] = references
        with client_run(k) if client_run is not None else nullcontext() as run:
            write_outputs(classifier, out / layout.client_dir(k), frame, metrics, run)
        all_metrics.append(metrics)
    return all_metrics


def federation_fingerprint(settings: Settings, clients: Sequence[ClientData], root_seed: int) -> str:
    """Digest of everything the rounds depend on: settings (not the thread count), seed, items, code.

    The settings are ``llm`` with ``privacy.llm`` under ``llm.privacy`` (the DP-SGD the rounds train with)."""
    digest = hashlib.sha256()
    # threads change no number (config.RUNTIME_KEYS)
    llm = {k: v for k, v in as_plain(settings.llm).items() if k != "threads"}
    llm["privacy"] = as_plain(settings.privacy.llm)
    digest.update(json.dumps({"llm": llm, "seed": root_seed}, sort_keys=True, default=str).encode())
    digest.update(provenance.stage_digest("distill_federated").encode())  # rounds of other code are not resumed
    for data in clients:
        digest.update(json.dumps({"kind": data.kind, "classes": list(data.classes)}, default=str).encode())
        columns = data.frame[["row", "item", "label", "split"]]
        digest.update(json.dumps(columns.astype(str).to_numpy().tolist()).encode())
    return digest.hexdigest()


class _Rounds:
    """The completed rounds in ``out/checkpoints``: which to resume after, and what they recorded."""

    def __init__(self, root: Path, fingerprint: str, rounds: int, n_clients: int) -> None:
        self.root, self.fingerprint, self.rounds, self.n_clients = root, fingerprint, rounds, n_clients
        self.summaries: list[dict[str, Any]] = []
        self.round_seconds: list[list[float]] = [[] for _ in range(n_clients)]
        self.last_results: list[TrainResult | None] = [None] * n_clients
        self.done = self._resume()

    def folder(self, round_index: int) -> Path:
        return self.root / f"round_{round_index}"

    def _resume(self) -> int:
        """The last round r such that rounds 1..r are complete, intact and this federation's; later ones go."""
        done = 0
        for r in range(1, self.rounds + 1):
            folder = self.folder(r)
            if not folder.is_dir():
                break
            try:
                manifest = check_manifest(folder)
            except IntegrityError as exc:
                log.warning("federated fine-tuning checkpoint %s; round %d and later are trained again", exc, r)
                break
            if manifest.get("fingerprint") != self.fingerprint:
                log.warning("federated fine-tuning checkpoints in %s belong to other inputs, settings or code; "
                            "starting from round 1", self.root)
                break
            self._restore(r)
            done = r
        self._remove_after(done)
        if done:
            log.info("federated fine-tuning resumes after round %d of %d (%s)", done, self.rounds, self.root)
        return done

    def _restore(self, round_index: int) -> None:
        folder = self.folder(round_index)
        self.summaries.append(read_json(folder / "global" / "aggregate.json"))
        for k in range(self.n_clients):
            record = read_json(folder / layout.client_dir(k) / layout.CLIENT_METRICS)
            self.round_seconds[k].append(float(record["seconds"]))
            self.last_results[k] = TrainResult(float(record["train_loss"]), int(record["train_steps"]),
                                               float(record["seconds"]), float(record["items_per_second"]))

    def _remove_after(self, done: int) -> None:
        """Rounds after ``done`` (damaged, of other inputs, or built on one that is) and killed writes' leftovers."""
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            match = _ROUND.match(path.name)
            if (match and int(match.group(1)) > done) or (path.name.startswith(".round_") and path.is_dir()):
                shutil.rmtree(path)

    def record(self, round_index: int, summary: dict[str, Any], seconds: list[float],
               results: list[TrainResult]) -> None:
        self.summaries.append(summary)
        for k, value in enumerate(seconds):
            self.round_seconds[k].append(value)
        self.last_results = list(results)


def _train_rounds(classifier: Any, llm: LlmSettings, clients: Sequence[ClientData], encoded: list[Any],
                  done: _Rounds, *, root_seed: int, tracker: Any, progress: bool,
                  privacy: DpSgdSettings | None = None) -> dict[str, torch.Tensor]:
    """The rounds not yet done; returns the last global adapter's tensors."""
    if done.done:  # the last complete round's global adapter, as the uninterrupted run reads it
        state = _read_adapter(done.folder(done.done) / "global" / layout.ADAPTER)
    else:  # round 1: every client starts from the same fresh adapter
        state = _adapter_state(classifier.model)
    if tracker is not None:
        for r, summary in enumerate(done.summaries, start=1):
            tracker.log_metrics(_round_metrics(summary), step=r)
    for r in range(done.done + 1, done.rounds + 1):
        seconds, results = [], []
        with atomic_path(done.folder(r)) as folder:
            for k, data in enumerate(clients):
                began = time.perf_counter()
                _load_adapter_state(classifier.model, state)
                seed = derive_seed(root_seed, "distill", k, "round", r)
                if progress:
                    log.info("federated round %d: client %d trains (%d rounds, %d clients)", r, k, done.rounds,
                             len(clients))
                result = train_client(classifier, llm, data, encoded[k], client=k, seed=seed, progress=progress,
                                      probe_head=r == 1 and llm.head_init == "probe", privacy=privacy)
                client_folder = folder / layout.client_dir(k)
                save_adapter(classifier, client_folder / layout.ADAPTER)
                seconds.append(time.perf_counter() - began)
                write_json(client_folder / layout.CLIENT_METRICS, {
                    "client": k, "round": r, "seed": seed, "n_train": len(data.train), "train_loss": result.train_loss,
                    "train_steps": result.steps, "items_per_second": result.items_per_second,
                    "seconds": seconds[-1]})
                results.append(result)
            summary = _aggregate(r, [folder / layout.client_dir(k) for k in range(len(clients))],
                                 [len(data.train) for data in clients], folder / "global", classifier.recipe,
                                 str(llm.adapter_aggregation))
            write_manifest(folder, {"round": r, "fingerprint": done.fingerprint})
        done.record(r, summary, seconds, results)
        state = _read_adapter(done.folder(r) / "global" / layout.ADAPTER)
        if tracker is not None:
            tracker.log_metrics(_round_metrics(summary), step=r)
    return state


def _aggregate(round_index: int, folders: list[Path], sizes: list[int], out: Path,
               recipe: Mapping[str, Any], method: str = "factorwise") -> dict[str, Any]:
    """The server's step: the size-weighted mean adapter, and what the round moved over the wire."""
    began = time.perf_counter()
    with atomic_path(out / layout.ADAPTER) as tmp:
        result = average_adapters([f / layout.ADAPTER for f in folders], sizes, out=tmp, method=method)
        write_manifest(tmp, {"llmqfl": dict(recipe)})
    summary = {
        "round": round_index,
        "method": result.method,
        "product_error": result.product_error,
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


def _round_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """What MLflow gets per round: the bytes on the wire and how far the average's B·A is from the exact mean."""
    return {k: float(summary.get(k, 0.0)) for k in ("bytes_up", "bytes_down", "parameters", "product_error")}


def _link_or_copy(source: str, target: str) -> None:
    """A hard link (the rounds' files are never changed in place: every write replaces), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


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


def load_adapter_folder(model: torch.nn.Module, folder: str | Path) -> None:
    """Load an adapter folder (its files checked against their digests) into ``model``: where a round starts.

    What a site of federated LoRA over Flower (``llmqfl.federated.flower.lora``) does with the global
    adapter it receives, the same load as the in-process rounds'."""
    _load_adapter_state(model, _read_adapter(Path(folder)))


def _read_adapter(folder: Path) -> dict[str, torch.Tensor]:
    """The adapter's tensors, its files checked against their digests first."""
    from safetensors.torch import load_file

    check_manifest(folder)
    return load_file(folder / ADAPTER_WEIGHTS)
