"""The paper experiments' configs: valid, self-contained, and set as the paper (and our notes) say."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmqfl.config import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "config" / "experiments").glob("*.yaml")))
def test_experiment_reads_the_same_alone_and_over_the_default(name: str) -> None:
    # Prepare
    path = ROOT / "config" / "experiments" / f"{name}.yaml"
    # Execute: snakemake --configfile overlays config/config.yaml
    alone = load_config(path)
    overlaid = load_config([ROOT / "config" / "config.yaml", path])
    # Assert
    assert alone == overlaid
    assert alone["experiment"] == name


@pytest.mark.parametrize("name", ["paper-genomic", "paper-tweet"])
def test_paper_experiments_run_three_seeds_of_every_arm(name: str) -> None:
    config = load_config(ROOT / "config" / "experiments" / f"{name}.yaml")
    assert config["seeds"] == [0, 1, 2]
    assert config["arms"] == ["baseline", "llm_guided", "budget_matched"]


def test_paper_genomic_matches_the_papers_genomic_path() -> None:
    config = load_config(ROOT / "config" / "experiments" / "paper-genomic.yaml")
    qfl = config["qfl"]
    assert config["federation"]["n_clients"] == 10 and config["federation"]["rounds"] == 10
    assert (qfl["model"], qfl["n_qubits"], qfl["feature_map_reps"], qfl["ansatz_reps"]) == ("vqc", 4, 1, 3)
    assert qfl["optimizer"] == {"name": "cobyla", "maxiter": 10, "max_maxiter": 100, "learning_rate": 0.1}
    assert qfl["guidance"]["rule"] == "adaptive"
    assert qfl["termination"]["llm_threshold"] == 0.4
    assert config["llm"]["lora"]["r"] == 8 and config["llm"]["lora"]["alpha"] == 16
    assert config["federation"]["selection"]["kind"] == "all"


def test_paper_tweet_runs_a_qcnn_on_llm_embeddings_of_text() -> None:
    config = load_config(ROOT / "config" / "experiments" / "paper-tweet.yaml")
    assert config["federation"]["n_clients"] == 3
    assert config["qfl"]["model"] == "qcnn"
    assert config["qfl"]["features"]["source"] == "embedding"
    assert config["data"]["source"] in {"rotten_tomatoes", "tweet_eval"}
