"""The teacher's natural bounds: centralised and local-only fine-tuning on the federation's own splits.

*Centralised*: one adapter fine-tuned on the pooled client train items (what the data allow when they
may move). *Local only*: each client fine-tunes alone on its own train items (what a client gets without
the federation; the mean over clients). Both start from the federation's shared initial adapter, train
``rounds x epochs`` epochs (what a client trains over the federated rounds), and are scored on the
server's test set, like the federated teacher (``llm.references``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.config import derive_seed
from llmqfl.llm.client_job import ClientData, Encoded, score_server_test, train_client
from llmqfl.settings import DpSgdSettings, LlmSettings


def teacher_references(classifier: Any, llm: LlmSettings, clients: Sequence[ClientData],
                       encoded: Sequence[Encoded], *, reset: Callable[[], None], root_seed: int,
                       test: pd.DataFrame, privacy: DpSgdSettings | None = None) -> dict[str, Any]:
    """``{"centralised": {...}, "local_only": {...}}``: server-test accuracy and loss, epochs, seconds.

    ``reset()`` puts the shared initial adapter back into ``classifier`` before each fine-tuning;
    ``privacy`` (``privacy.llm``) is the federation's DP-SGD, which the references train with too."""
    epochs = int(llm.epochs) * max(1, int(llm.federated_rounds))
    alone = replace(llm, epochs=epochs)
    probe = llm.head_init == "probe"
    kind = clients[0].kind

    def fit(data: ClientData, items: Encoded, name: str, client: int) -> tuple[dict[str, Any], float]:
        began = time.perf_counter()
        reset()
        train_client(classifier, alone, data, items, client=client, seed=derive_seed(root_seed, "distill", name),
                     probe_head=probe, progress=False, privacy=privacy)
        scores = score_server_test(classifier, llm, test, kind)
        return scores, time.perf_counter() - began

    local = [fit(data, encoded[k], f"local_only_{k}", k) for k, data in enumerate(clients)]
    pooled, pooled_items = _pool(clients, encoded)
    central, central_seconds = fit(pooled, pooled_items, "centralised", -1)
    per_client = [scores["server_test_accuracy"] for scores, _ in local]
    return {
        "epochs": epochs,
        "centralised": {"server_test_accuracy": central["server_test_accuracy"],
                        "server_test_loss": central["server_test_loss"], "seconds": central_seconds,
                        "n_train": len(pooled.train)},
        "local_only": {"server_test_accuracy": float(np.mean(per_client)),
                       "server_test_loss": float(np.mean([s["server_test_loss"] for s, _ in local])),
                       "per_client": per_client, "seconds": float(sum(s for _, s in local))},
    }


def _pool(clients: Sequence[ClientData], encoded: Sequence[Encoded]) -> tuple[ClientData, Encoded]:
    """Every client's items as one client (train items: the union of theirs)."""
    frame = pd.concat([c.frame for c in clients], ignore_index=True)
    offsets = np.cumsum([0] + [len(c.frame) for c in clients[:-1]])
    features = [f for items in encoded for f in items.features]
    train_idx = np.concatenate([items.train_idx + o for items, o in zip(encoded, offsets, strict=True)])
    eval_idx = np.concatenate([items.eval_idx + o for items, o in zip(encoded, offsets, strict=True)])
    data = ClientData(frame, frame[frame["split"] == "train"], frame[frame["split"] == "test"], clients[0].kind,
                      list(clients[0].classes))
    return data, Encoded(features, train_idx, eval_idx, "test")
