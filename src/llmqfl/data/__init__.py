"""Data: sources (embedded, csv, online), the server's splits, client partitions, item encoders.

Names are imported on first use (PEP 562), so ``python -m llmqfl.stages.check`` can refuse a bad
config value before pandas is even loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AngleEncoder": "encoders",
    "kmers": "encoders",
    "onehot": "encoders",
    "LabelledData": "labelled",
    "balanced_subsample": "labelled",
    "PARTITIONERS": "partitioners",
    "build_partitions": "partitioners",
    "partition_dirichlet": "partitioners",
    "partition_iid": "partitioners",
    "partition_indices": "partitioners",
    "partition_quantity": "partitioners",
    "check_config_data": "preflight",
    "load_source": "sources",
    "split_data": "split",
    "split_sizes": "split",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"llmqfl.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'llmqfl.data' has no attribute {name!r}")
