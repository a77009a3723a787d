"""Federated averaging of LoRA adapters (and the SEQ_CLS head saved with them), weighted by client size.

``llm.adapter_aggregation`` picks how the LoRA factors are combined (docs/teacher.md, aggregation methods):

* ``factorwise`` (the default): A and B are averaged separately (FedIT-style FedAvg on LoRA). The
  global update mean(B)·mean(A) is not the mean of the clients' updates B·A; :func:`product_error`
  measures by how much, and every round records it.
* ``ffa`` (FFA-LoRA, Sun et al. 2024): A stays frozen at the shared initialisation (every client builds
  it from the same seed) and only B, the head and the token rows are trained and averaged; with one A,
  mean(B)·A is exactly the mean of the clients' B·A. A never travels: the bytes on the wire are B's.

Tensors that are not LoRA factors (the head, the trainable token rows) are averaged as they are, which is
exact for them in both methods.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from llmqfl.averaging import size_weights, weighted_mean
from llmqfl.errors import DataError
from llmqfl.integrity import check_manifest

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
METHODS = ("factorwise", "ffa")
LORA_A, LORA_B = "lora_A", "lora_B"


@dataclass(frozen=True)
class AverageResult:
    n_clients: int
    weights: list[float]
    tensors: int
    parameters: int
    bytes_per_client: int  # adapter payload one client uploads (and downloads)
    method: str = "factorwise"
    product_error: float = 0.0  # ||global B·A - mean of the clients' B·A|| / ||mean of the clients' B·A||


def check_method(method: str) -> str:
    if method not in METHODS:
        raise DataError(f"llm.adapter_aggregation: {method!r} is not one of: {', '.join(METHODS)}")
    return method


def freeze_shared_factors(model: torch.nn.Module, method: str) -> int:
    """Under ``ffa``, stop training every LoRA A (they stay at the shared init); returns how many were frozen."""
    if check_method(method) != "ffa":
        return 0
    frozen = 0
    for name, parameter in model.named_parameters():
        if f".{LORA_A}." in name and parameter.requires_grad:
            parameter.requires_grad_(False)
            frozen += 1
    if not frozen:
        raise DataError("llm.adapter_aggregation ffa: the model has no trainable LoRA A matrix to freeze")
    return frozen


def on_the_wire(name: str, method: str) -> bool:
    """Whether a client uploads (and the server sends back) this tensor: under ``ffa`` A never changes."""
    return not (method == "ffa" and f".{LORA_A}." in f".{name}")


def lora_pairs(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[str, str]]:
    """Each LoRA-adapted module's (A name, B name) in a saved adapter's tensors (an A without a B is no pair)."""
    pairs = {}
    for name in tensors:
        partner = name.replace(LORA_A, LORA_B)
        if f".{LORA_A}." in f".{name}" and partner in tensors:
            pairs[name.split(LORA_A)[0].rstrip(".")] = (name, partner)
    return pairs


def lora_products(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """B·A of every adapted module (float64): the update the adapter adds to the base weight, up to scaling."""
    return {module: tensors[b].to(torch.float64) @ tensors[a].to(torch.float64)
            for module, (a, b) in sorted(lora_pairs(tensors).items())}


def product_error(merged: Mapping[str, torch.Tensor], clients: Sequence[Mapping[str, torch.Tensor]],
                  weights: Sequence[float]) -> float:
    """Relative Frobenius distance of the merged adapter's B·A from the weighted mean of the clients' B·A."""
    target = [lora_products(c) for c in clients]
    got = lora_products(merged)
    num = den = 0.0
    for module, value in got.items():
        mean = sum(w * t[module] for w, t in zip(weights, target, strict=True))
        num += float(torch.sum((value - mean) ** 2))
        den += float(torch.sum(mean**2))
    return (num / den) ** 0.5 if den > 0 else 0.0


def average_adapters(adapters: Sequence[str | Path], sizes: Sequence[int], *, out: str | Path,
                     method: str = "factorwise") -> AverageResult:
    """Write to ``out`` the size-weighted mean of the adapters; they must share config and tensor shapes."""
    check_method(method)
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
    return _average(paths, [int(s) for s in sizes], Path(out), method)


def _load_all(paths: list[Path]) -> list[dict[str, torch.Tensor]]:
    reference_config = json.loads((paths[0] / ADAPTER_CONFIG).read_text())
    loaded: list[dict[str, torch.Tensor]] = []
    for path in paths:
        config = json.loads((path / ADAPTER_CONFIG).read_text())
        if _shape_keys(config) != _shape_keys(reference_config):
            raise DataError(f"{path}: adapter config differs from {paths[0]} (r, targets or task)")
        tensors = load_file(path / ADAPTER_WEIGHTS)
        if loaded and set(tensors) != set(loaded[0]):
            raise DataError(f"{path}: adapter tensors differ from {paths[0]}")
        for name, tensor in tensors.items():
            if loaded and loaded[0][name].shape != tensor.shape:
                expected = tuple(loaded[0][name].shape)
                raise DataError(f"{path}: tensor {name} has shape {tuple(tensor.shape)}, expected {expected}")
        loaded.append(tensors)
    return loaded


def _average(paths: list[Path], sizes: list[int], out: Path, method: str) -> AverageResult:
    weights = [float(w) for w in size_weights(sizes)]
    clients = _load_all(paths)
    averaged: dict[str, torch.Tensor] = {}
    for name in sorted(clients[0]):
        if not on_the_wire(name, method):  # ffa: one shared A, kept as it is (no float round trip)
            if any(not torch.equal(c[name], clients[0][name]) for c in clients[1:]):
                raise DataError(f"llm.adapter_aggregation ffa: the clients' {name} differ; FFA-LoRA needs every "
                                "client's A frozen at the shared init")
            averaged[name] = clients[0][name].contiguous()
            continue
        mean = weighted_mean([c[name].to(torch.float64).numpy() for c in clients], sizes)  # FedAvg's one mean
        averaged[name] = torch.from_numpy(mean).to(clients[0][name].dtype).contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(averaged, out / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    shutil.copy(paths[0] / ADAPTER_CONFIG, out / ADAPTER_CONFIG)
    payload = sum(t.numel() * t.element_size() for n, t in averaged.items() if on_the_wire(n, method))
    return AverageResult(len(paths), weights, len(averaged), sum(t.numel() for t in averaged.values()), payload,
                         method, product_error(averaged, clients, weights))


def _shape_keys(adapter_config: dict) -> tuple:
    """What two adapters must share, from peft's ``adapter_config.json`` (not the project's config)."""
    # peft keeps target_modules as a set and writes it in the saving process's hash order: compare as sets
    def canonical(value: object) -> object:
        return sorted(value) if isinstance(value, list) else value

    return tuple(json.dumps(canonical(adapter_config.get(k)), sort_keys=True)
                 for k in ("r", "target_modules", "task_type", "modules_to_save", "base_model_name_or_path"))
