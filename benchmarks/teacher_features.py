"""How much class signal each quantum feature source keeps in ``n_qubits`` angles, on the DNA sets.

    nice -n 10 .venv/bin/python benchmarks/teacher_features.py [--datasets coding_vs_intergenic splice]
        [--sources onehot kmer1 kmer2 kmer3 kmer4] [--embedding] [--n-qubits 4]

For each data set of the default config (split and partitioned as the pipeline does) and each source,
builds the angle features with ``llmqfl.federated.features.build_features`` (PCA fitted on the client
train items only, pooled) and fits a logistic regression on the pooled client train features: the
accuracy it reaches on the server's test set says how much a classifier on these angles can learn.
``--embedding`` adds the base LLM's mean-pooled embedding (overlapping 6-mers, as the embed stage).
Prints one JSON object ``{dataset: {source: {test_accuracy, client_test_accuracy, majority}}}``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.config import load_config


def _splits(config: dict[str, Any]) -> tuple[dict[str, pd.DataFrame], dict[int, pd.DataFrame], dict[str, Any]]:
    from llmqfl.data.partitioners import partition_as_configured
    from llmqfl.settings import Settings
    from llmqfl.stages import data as data_stage

    settings = Settings.from_config(config)
    tables, meta = data_stage.prepare(settings)
    parts, _ = partition_as_configured(tables["train"], settings, meta["n_classes"])
    return tables, dict(enumerate(parts)), meta


def _embeddings(config: dict[str, Any], tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    from llmqfl.llm.embeddings import base_embeddings

    llm = config["llm"]
    frames = []
    for split, frame in tables.items():
        vectors = base_embeddings(frame["item"].astype(str).tolist(), model=llm["model"], kind="dna",
                                  max_length=int(llm["max_length"]), kmer=6, dna_tokens="overlap")
        frames.append(pd.DataFrame({"split": split, "row": frame["row"].to_numpy(), "embedding": list(vectors)}))
    return pd.concat(frames, ignore_index=True)


def score(features: Any, tables: dict[str, pd.DataFrame], parts: dict[int, pd.DataFrame]) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    train_x = np.concatenate([features.clients[k].train for k in sorted(parts)])
    train_y = np.concatenate([parts[k][parts[k]["split"] == "train"]["label"].to_numpy() for k in sorted(parts)])
    test_x = np.concatenate([features.clients[k].test for k in sorted(parts)])
    test_y = np.concatenate([parts[k][parts[k]["split"] == "test"]["label"].to_numpy() for k in sorted(parts)])
    model = LogisticRegression(max_iter=2000).fit(train_x, train_y)
    server_y = tables["test"].sort_values("row")["label"].to_numpy()
    return {"test_accuracy": float(model.score(features.server_test, server_y)),
            "client_test_accuracy": float(model.score(test_x, test_y)),
            "majority": float(np.bincount(server_y).max() / len(server_y))}


def main() -> None:
    from llmqfl.federated.features import build_features

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--datasets", nargs="+", default=["coding_vs_intergenic", "splice"])
    p.add_argument("--sources", nargs="+", default=["onehot", "kmer1", "kmer2", "kmer3", "kmer4"])
    p.add_argument("--embedding", action="store_true")
    p.add_argument("--n-qubits", type=int, default=None)
    p.add_argument("--max-items", default="config", help="data.max_items ('config', an integer or 'all')")
    args = p.parse_args()
    result: dict[str, Any] = {}
    for dataset in args.datasets:
        overrides: dict[str, Any] = {"data": {"source": dataset}}
        if args.max_items != "config":
            overrides["data"]["max_items"] = None if args.max_items == "all" else int(args.max_items)
        config = load_config(args.config, overrides=overrides)
        n_qubits = args.n_qubits or int(config["qfl"]["n_qubits"])
        tables, parts, _ = _splits(config)
        sources = list(args.sources) + (["embedding"] if args.embedding else [])
        embeddings = _embeddings(config, tables) if args.embedding else None
        result[dataset] = {}
        for source in sources:
            kind, k = (source[:4], int(source[4:])) if source.startswith("kmer") else (source, 3)
            features = build_features(source=kind, fit="pooled", n_qubits=n_qubits, data=tables, partitions=parts,
                                      embeddings=embeddings, k=k)
            result[dataset][source] = score(features, tables, parts)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
