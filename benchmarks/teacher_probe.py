"""What the frozen base model already separates: a logistic regression per client on its features.

    nice -n 10 .venv/bin/python benchmarks/teacher_probe.py --dataset rotten_tomatoes

Splits and partitions the default config (``data.source`` replaced) as ``benchmarks/teacher_accuracy.py``
does, runs the base model (no fine-tuning, text through its own tokenizer) over every client's items,
fits a logistic regression on each client's train items and scores it on its test items, for three
features: the mean of the last hidden states, the BERT pooler output, the [CLS] last hidden state.
Prints one JSON object ``{feature: mean client test accuracy, ..., majority}`` (docs/teacher.md).
A BERT-style model is needed (it has a pooler); DNA goes through the tokenizer as overlapping 6-mers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from teacher_accuracy import clients_of

from llmqfl.config import load_config
from llmqfl.llm import finetune, token_inputs
from llmqfl.llm.modeling import build_classifier


@torch.no_grad()
def client_features(encoder: torch.nn.Module, tokenizer: object, items: list[str], kind: str) -> dict[str, np.ndarray]:
    features = token_inputs.encode_items(tokenizer, items, None, kind=kind, scheme="overlap", k=6, max_length=128,
                                         vocab=None)
    batches, order = token_inputs.length_sorted_loader(features, tokenizer, batch_size=64)
    parts: dict[str, list[torch.Tensor]] = {"mean": [], "pooler": [], "cls": []}
    for batch in batches:
        out = encoder(**batch)
        parts["mean"].append(finetune.mean_pool(out.last_hidden_state, batch["attention_mask"]))
        parts["pooler"].append(out.pooler_output)
        parts["cls"].append(out.last_hidden_state[:, 0])
    inverse = np.argsort(np.asarray(order))
    return {name: torch.cat(values).numpy()[inverse] for name, values in parts.items()}


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--dataset", default="rotten_tomatoes")
    p.add_argument("--model", default="minilm-l6")
    args = p.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config, overrides={"data": {"source": args.dataset}})
    data, kind = clients_of(config)
    classifier = build_classifier(model=args.model, n_classes=data[0].n_classes, peft="full", pooling="model")
    model = classifier.model
    encoder = getattr(model, model.base_model_prefix)
    if getattr(encoder, "pooler", None) is None:
        raise SystemExit(f"error: --model {args.model}: needs a BERT-style encoder with a pooler")
    encoder.eval()
    scores: dict[str, list[float]] = {"mean": [], "pooler": [], "cls": [], "majority": []}
    for client in data:
        features = client_features(encoder, classifier.tokenizer, client.frame["item"].tolist(), kind)
        labels = client.frame["label"].to_numpy()
        train = (client.frame["split"] == "train").to_numpy()
        for name, x in features.items():
            fit = LogisticRegression(max_iter=2000).fit(x[train], labels[train])
            scores[name].append(float(fit.score(x[~train], labels[~train])))
        scores["majority"].append(float(np.bincount(labels[~train]).max() / (~train).sum()))
    print(json.dumps({name: float(np.mean(values)) for name, values in scores.items()}))


if __name__ == "__main__":
    main()
