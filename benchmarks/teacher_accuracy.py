"""Teacher accuracy per DNA tokenisation scheme and data set: client test accuracy vs majority, seconds.

    nice -n 10 .venv/bin/python benchmarks/teacher_accuracy.py --schemes kmer3 overlap6 \
        --datasets coding_vs_intergenic splice rotten_tomatoes [--clients 0 1] [--set llm.epochs=4]

Builds the default config (``config/config.yaml``) with ``data.source`` replaced, splits and partitions
it in memory exactly as the data and partition stages do, runs each client's distill job
(``llmqfl.llm.client_job.run_client``; with ``llm.federated_rounds`` R > 0 the federation of
``llmqfl.llm.federation``: every client's R rounds, the server's size-weighted adapter averages, the
evaluation of the last global adapter) into a scratch folder, and prints one JSON object:
``{scheme: {dataset: {accuracy, majority, margin, seconds_per_client, cpu_seconds_per_client, per_client}}}``.
On a shared machine compare ``cpu_seconds`` (the job runs ``llm.threads`` = 1 torch thread, so on a
quiet machine wall seconds equal CPU seconds).
Text data sets ignore the scheme (they are run once, under the first scheme).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llmqfl.config import load_config
from llmqfl.llm.client_job import ClientData, run_client
from llmqfl.llm.federation import run_federation
from llmqfl.settings import Settings

SCHEMES: dict[str, dict[str, Any]] = {
    "overlap6": {"dna_tokens": "overlap", "kmer": 6},
    "kmer3": {"dna_tokens": "kmer", "kmer": 3},
    "kmer1": {"dna_tokens": "kmer", "kmer": 1},
    "kmer6": {"dna_tokens": "kmer", "kmer": 6},
    "frames3": {"dna_tokens": "frames", "kmer": 3},
}
TEXT = {"rotten_tomatoes"}


def parse_set(values: list[str]) -> dict[str, Any]:
    """``a.b=v`` pairs (v read as YAML) into a nested override."""
    out: dict[str, Any] = {}
    for value in values:
        key, raw = value.split("=", 1)
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return out


def clients_of(config: dict[str, Any]) -> tuple[list[ClientData], str]:
    from llmqfl.data.partitioners import partition_as_configured
    from llmqfl.stages import data as data_stage

    settings = Settings.from_config(config)
    tables, meta = data_stage.prepare(settings)
    parts, _ = partition_as_configured(tables["train"], settings, meta["n_classes"])
    out = []
    for frame in parts:
        out.append(ClientData(frame.reset_index(drop=True), frame[frame["split"] == "train"],
                              frame[frame["split"] == "test"], meta["kind"], list(meta["classes"])))
    return out, meta["kind"]


def measure(config: dict[str, Any], clients: list[int] | None) -> dict[str, Any]:
    data, _ = clients_of(config)
    chosen = clients if clients is not None else list(range(len(data)))
    rounds = int(config["llm"].get("federated_rounds", 0))
    rows = []
    with tempfile.TemporaryDirectory(prefix="llmqfl-teacher-") as scratch:
        if rounds:
            # federated LoRA rounds (llmqfl.llm.federation, what the distill_federated job runs): one process
            # for every client's rounds; a client's CPU time is the federation's over the number of clients
            cpu = time.process_time()
            results = run_federation(Settings.from_config(config), data, root_seed=config["seed"], out=scratch,
                                     progress=False)
            cpu_per_client = (time.process_time() - cpu) / len(data)
            rows = [_row(results[k], cpu_per_client) for k in chosen]
        for k in chosen if not rounds else []:
            cpu = time.process_time()
            metrics = run_client(Settings.from_config(config), data[k], root_seed=config["seed"], client=k,
                                 out=Path(scratch) / f"client_{k}", teacher=False, progress=False)
            rows.append(_row(metrics, time.process_time() - cpu))
    accuracy = float(np.mean([r["accuracy"] for r in rows]))
    majority = float(np.mean([r["majority"] for r in rows]))
    return {"accuracy": accuracy, "majority": majority, "margin": accuracy - majority,
            "seconds_per_client": float(np.mean([r["seconds"] for r in rows])),
            "cpu_seconds_per_client": float(np.mean([r["cpu_seconds"] for r in rows])), "per_client": rows}


def _row(metrics: dict[str, Any], cpu_seconds: float) -> dict[str, Any]:
    return {"client": metrics["client"], "accuracy": metrics["eval_accuracy"], "majority": metrics["majority_rate"],
            "eval_loss": metrics["eval_loss"], "seconds": metrics["seconds"], "cpu_seconds": cpu_seconds,
            "n_train": metrics["n_train"], "n_eval": metrics["n_eval"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--schemes", nargs="+", default=["kmer3", "overlap6"], choices=sorted(SCHEMES))
    p.add_argument("--datasets", nargs="+", default=["coding_vs_intergenic"])
    p.add_argument("--clients", nargs="*", type=int, default=None, help="only these clients (default: all)")
    p.add_argument("--set", nargs="*", default=[], help="overrides, e.g. llm.epochs=4 data.max_items=800")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    overrides = parse_set(args.set)
    result: dict[str, Any] = {}
    for i, scheme in enumerate(args.schemes):
        result[scheme] = {}
        for dataset in args.datasets:
            if dataset in TEXT and i > 0:
                continue
            override = {"data": {"source": dataset}, "llm": dict(SCHEMES[scheme])}
            config = load_config(args.config, overrides={**overrides, **_merge(override, overrides)})
            if dataset != "coding_vs_intergenic":
                config["data"]["max_items"] = overrides.get("data", {}).get("max_items", config["data"]["max_items"])
            result[scheme][dataset] = measure(config, args.clients)
            print(json.dumps({scheme: {dataset: result[scheme][dataset]}}), flush=True, file=__import__("sys").stderr)
    print(json.dumps(result, indent=1))


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    from llmqfl.config import deep_merge

    return deep_merge(base, update)


if __name__ == "__main__":
    main()
