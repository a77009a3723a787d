"""Averaging LoRA adapters saved by different processes (each client job is its own process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llmqfl.errors import DataError
from llmqfl.llm.fedavg import ADAPTER_CONFIG, ADAPTER_WEIGHTS, average_adapters


def _adapter(folder: Path, value: float, **config: object) -> Path:
    folder.mkdir(parents=True)
    base = {"r": 8, "target_modules": ["query", "value"], "task_type": "SEQ_CLS", "modules_to_save": None}
    (folder / ADAPTER_CONFIG).write_text(json.dumps({**base, **config}))
    save_file({"lora_A.weight": torch.full((2, 3), value)}, folder / ADAPTER_WEIGHTS)
    return folder


def test_target_modules_listed_in_another_order_are_the_same_adapter(tmp_path: Path) -> None:
    # peft keeps target_modules as a set: a job with another hash seed writes ["value", "query"]
    a = _adapter(tmp_path / "a", 1.0, target_modules=["query", "value"])
    b = _adapter(tmp_path / "b", 4.0, target_modules=["value", "query"])
    result = average_adapters([a, b], [2, 1], out=tmp_path / "mean")
    assert result.n_clients == 2
    assert torch.allclose(load_file(tmp_path / "mean" / ADAPTER_WEIGHTS)["lora_A.weight"], torch.full((2, 3), 2.0))


def test_adapters_on_other_modules_or_rank_are_refused(tmp_path: Path) -> None:
    a = _adapter(tmp_path / "a", 1.0)
    for name, change in {"targets": {"target_modules": ["query", "key"]}, "rank": {"r": 4}}.items():
        other = _adapter(tmp_path / name, 1.0, **change)
        with pytest.raises(DataError, match="adapter config differs"):
            average_adapters([a, other], [1, 1], out=tmp_path / f"out_{name}")
