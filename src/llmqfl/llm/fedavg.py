"""Federated averaging of LoRA adapters (and the SEQ_CLS head saved with them), weighted by client size.

Averaging A and B separately is what FedAvg on LoRA means in practice (FedIT-style); the product
of the averages is not the average of the products, which is a known property, not a bug.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from llmqfl.errors import DataError
from llmqfl.integrity import check_manifest

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class AverageResult:
    n_clients: int
    weights: list[float]
    tensors: int
    parameters: int
    bytes_per_client: int  # adapter payload one client sends (and receives)


def average_adapters(adapters: Sequence[str | Path], sizes: Sequence[int], *, out: str | Path) -> AverageResult:
    """Write to ``out`` the size-weighted mean of the adapters; they must share config and tensor shapes."""
    if not adapters:
        raise DataError("no client adapters to average")
    if len(adapters) != len(sizes):
        raise DataError(f"{len(adapters)} adapters but {len(sizes)} client sizes")
    if any(int(s) < 0 for s in sizes) or sum(int(s) for s in sizes) <= 0:
        raise DataError(f"client sizes must be >= 0 with a positive total, got {list(sizes)}")
    paths = [Path(a) for a in adapters]
    for path in paths:
        if not (path / ADAPTER_WEIGHTS).is_file() or not (path / ADAPTER_CONFIG).is_file():
            raise DataError(f"{path}: not a peft adapter folder ({ADAPTER_WEIGHTS} and {ADAPTER_CONFIG} needed)")
        check_manifest(path, required=False)  # an adapter saved by llmqfl: its files as they were written
    return _average(paths, [int(s) for s in sizes], Path(out))


def _average(paths: list[Path], sizes: list[int], out: Path) -> AverageResult:
    total = float(sum(sizes))
    weights = [s / total for s in sizes]
    reference_config = json.loads((paths[0] / ADAPTER_CONFIG).read_text())
    mean: dict[str, torch.Tensor] = {}
    for path, weight in zip(paths, weights, strict=True):
        config = json.loads((path / ADAPTER_CONFIG).read_text())
        if _shape_keys(config) != _shape_keys(reference_config):
            raise DataError(f"{path}: adapter config differs from {paths[0]} (r, targets or task)")
        tensors = load_file(path / ADAPTER_WEIGHTS)
        if mean and set(tensors) != set(mean):
            raise DataError(f"{path}: adapter tensors differ from {paths[0]}")
        for name, tensor in tensors.items():
            if name in mean and mean[name].shape != tensor.shape:
                expected = tuple(mean[name].shape)
                raise DataError(f"{path}: tensor {name} has shape {tuple(tensor.shape)}, expected {expected}")
            contribution = tensor.to(torch.float64) * weight
            mean[name] = mean[name] + contribution if name in mean else contribution
    dtypes = load_file(paths[0] / ADAPTER_WEIGHTS)
    averaged = {name: value.to(dtypes[name].dtype).contiguous() for name, value in sorted(mean.items())}
    out.mkdir(parents=True, exist_ok=True)
    save_file(averaged, out / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    shutil.copy(paths[0] / ADAPTER_CONFIG, out / ADAPTER_CONFIG)
    payload = sum(t.numel() * t.element_size() for t in averaged.values())
    return AverageResult(len(paths), weights, len(averaged), sum(t.numel() for t in averaged.values()), payload)


def _shape_keys(config: dict) -> tuple:
    # peft keeps target_modules as a set and writes it in the saving process's hash order: compare as sets
    def canonical(value: object) -> object:
        return sorted(value) if isinstance(value, list) else value

    return tuple(json.dumps(canonical(config.get(k)), sort_keys=True)
                 for k in ("r", "target_modules", "task_type", "modules_to_save", "base_model_name_or_path"))

