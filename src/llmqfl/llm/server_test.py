"""The teacher on the server's test set (``data/test.parquet``): the number the project reports.

A client's own held-out items are the validation split on which the teacher's settings were chosen
(docs/teacher.md); the server's test set is what no setting was chosen on, and what the student's
claims are scored on, so each client's final teacher is scored there too. Inference only, batched
like the client's own evaluation: ~300 items cost a few seconds on one thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.errors import DataError
from llmqfl.file_contract import DATA_SPLIT
from llmqfl.io import read_checked_parquet
from llmqfl.llm import dna, finetune, token_inputs
from llmqfl.settings import LlmSettings

COLUMNS = ("row", "item", "label")
DEFAULT_NAME = "test.parquet"  # the data stage writes it beside meta.json


def default_path(meta: str | Path) -> Path:
    """Where the data stage puts the server's test set: beside ``meta.json``."""
    return Path(meta).parent / DEFAULT_NAME


def load_server_test(path: str | Path, classes: Sequence[str]) -> pd.DataFrame:
    """Read and check the server's test set; :class:`DataError` names the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (the server's test set, written by the data stage)")
    frame = read_checked_parquet(path, COLUMNS, DATA_SPLIT)
    if len(frame) == 0:
        raise DataError(f"{path}: the server's test set has no items")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    if labels.isna().any() or not labels.between(0, len(classes) - 1).all() or (labels % 1 != 0).any():
        raise DataError(f"{path}: labels must be integers in 0..{len(classes) - 1}")
    return pd.DataFrame({"row": frame["row"].to_numpy(), "item": frame["item"].astype(str).to_numpy(),
                         "label": labels.astype("int64").to_numpy()})


def server_test_metrics(classifier: Any, llm: LlmSettings, test: pd.DataFrame, *, kind: str,
                        batch_size: int) -> dict[str, Any]:
    """``server_test_accuracy``, ``server_test_loss`` (natural-log CE), ``server_test_n`` of the model as it is."""
    began = time.perf_counter()
    scheme, k = dna.settings(llm)
    labels = test["label"].to_numpy()
    features = token_inputs.encode_items(classifier.tokenizer, test["item"].tolist(), labels.tolist(), kind=kind,
                                         scheme=scheme, k=k, max_length=int(llm.max_length),
                                         vocab=classifier.dna_vocab)
    ordered, order = token_inputs.length_sorted_loader(features, classifier.tokenizer, batch_size=batch_size)
    predictions = finetune.predict(classifier.model, ordered, order)
    return {
        "server_test_accuracy": float((predictions.logits.argmax(axis=1) == labels).mean()),
        "server_test_loss": float(np.mean(predictions.losses)),
        "server_test_n": len(test),
        "server_test_seconds": time.perf_counter() - began,
    }
