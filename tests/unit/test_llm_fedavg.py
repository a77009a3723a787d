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


MODULES = ("base_model.model.h.0.attn.c_attn", "base_model.model.h.1.attn.c_attn")


def _lora_client(folder: Path, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], head: torch.Tensor) -> Path:
    """A saved peft adapter with LoRA factors on two modules and a head (modules_to_save)."""
    folder.mkdir(parents=True)
    config = {"r": 4, "target_modules": ["c_attn"], "task_type": "SEQ_CLS", "modules_to_save": ["score"]}
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config))
    tensors = {"base_model.model.score.modules_to_save.weight": head}
    for module in MODULES:
        tensors[f"{module}.lora_A.weight"] = a[module]
        tensors[f"{module}.lora_B.weight"] = b[module]
    save_file(tensors, folder / ADAPTER_WEIGHTS)
    return folder


def _clients(tmp: Path, *, shared_a: bool) -> list[Path]:
    generator = torch.Generator().manual_seed(0)
    shared = {m: torch.randn(4, 6, generator=generator) for m in MODULES}
    paths = []
    for k in range(3):
        a = shared if shared_a else {m: torch.randn(4, 6, generator=generator) for m in MODULES}
        b = {m: torch.randn(18, 4, generator=generator) for m in MODULES}
        paths.append(_lora_client(tmp / f"client_{k}", a, b, torch.randn(3, 6, generator=generator)))
    return paths


def test_ffa_aggregation_is_the_exact_mean_of_the_clients_lora_products(tmp_path: Path) -> None:
    # Prepare: three clients of sizes 2:1:3, one shared A (FFA-LoRA: A frozen at the shared init), their own B
    sizes = [2, 1, 3]
    paths = _clients(tmp_path, shared_a=True)
    weights = [s / sum(sizes) for s in sizes]

    # Execute
    result = average_adapters(paths, sizes, out=tmp_path / "ffa", method="ffa")

    # Assert: the global adapter's B·A equals sum_k w_k B_k·A_k to float tolerance, module by module
    merged = load_file(tmp_path / "ffa" / ADAPTER_WEIGHTS)
    clients = [load_file(p / ADAPTER_WEIGHTS) for p in paths]
    for module in MODULES:
        a, b = f"{module}.lora_A.weight", f"{module}.lora_B.weight"
        exact = sum(w * (c[b].double() @ c[a].double()) for w, c in zip(weights, clients, strict=True))
        assert torch.allclose(merged[b].double() @ merged[a].double(), exact, rtol=1e-6, atol=1e-6)
        assert torch.equal(merged[a], clients[0][a])  # A is the shared init, untouched
    assert result.product_error < 1e-6
    # the head (not a product) is the size-weighted mean
    head = "base_model.model.score.modules_to_save.weight"
    assert torch.allclose(merged[head], sum(w * c[head] for w, c in zip(weights, clients, strict=True)), atol=1e-6)
    # A never travels: a client sends B and the head only
    b_and_head = sum(t.numel() * 4 for n, t in merged.items() if "lora_A" not in n)
    assert result.bytes_per_client == b_and_head


def test_factorwise_aggregation_is_not_the_mean_of_products_and_says_by_how_much(tmp_path: Path) -> None:
    # Prepare: clients with their own A and B (what factor-wise FedAvg on LoRA averages)
    sizes = [2, 1, 3]
    paths = _clients(tmp_path, shared_a=False)

    # Execute
    factorwise = average_adapters(paths, sizes, out=tmp_path / "fw")

    # Assert: mean(B)·mean(A) misses the mean of the products, and the recorded error is that distance
    merged = load_file(tmp_path / "fw" / ADAPTER_WEIGHTS)
    clients = [load_file(p / ADAPTER_WEIGHTS) for p in paths]
    weights = [s / sum(sizes) for s in sizes]
    num = den = 0.0
    for module in MODULES:
        a, b = f"{module}.lora_A.weight", f"{module}.lora_B.weight"
        exact = sum(w * (c[b].double() @ c[a].double()) for w, c in zip(weights, clients, strict=True))
        num += float(((merged[b].double() @ merged[a].double() - exact) ** 2).sum())
        den += float((exact**2).sum())
    assert factorwise.method == "factorwise"
    assert factorwise.product_error == pytest.approx((num / den) ** 0.5, rel=1e-5) and factorwise.product_error > 0.1
    # every tensor travels under factorwise
    assert factorwise.bytes_per_client == sum(t.numel() * 4 for t in merged.values())


def test_ffa_refuses_clients_whose_a_moved(tmp_path: Path) -> None:
    paths = _clients(tmp_path, shared_a=False)
    with pytest.raises(DataError, match=r"ffa: the clients' .*lora_A\.weight differ"):
        average_adapters(paths, [1, 1, 1], out=tmp_path / "out", method="ffa")
    with pytest.raises(DataError, match=r"llm\.adapter_aggregation: 'stack' is not one of: factorwise, ffa"):
        average_adapters(paths, [1, 1, 1], out=tmp_path / "out", method="stack")


def test_adapters_and_quantum_weights_share_one_fedavg(tmp_path: Path) -> None:
    # Prepare: the same numbers as two adapters' tensors and as two clients' quantum weight vectors
    from llmqfl.federated.aggregation import fedavg

    values = [torch.tensor([[0.1, 0.7, -2.0]]), torch.tensor([[0.4, -0.3, 5.0]])]
    a = _adapter(tmp_path / "a", 0.0)
    b = _adapter(tmp_path / "b", 0.0)
    for folder, value in zip((a, b), values, strict=True):
        save_file({"lora_A.weight": value}, folder / ADAPTER_WEIGHTS)

    # Execute
    average_adapters([a, b], [3, 5], out=tmp_path / "mean")
    quantum = fedavg({0: values[0].double().numpy(), 1: values[1].double().numpy()}, {0: 3, 1: 5})

    # Assert: one weighted mean (float64, then stored in the adapter's dtype)
    adapter = load_file(tmp_path / "mean" / ADAPTER_WEIGHTS)["lora_A.weight"]
    assert torch.equal(adapter, torch.from_numpy(quantum).float())
