"""One client's LLM job: fine-tune on its own train items, evaluate on its own test items, teacher outputs.

Given the server's test set, the final teacher is scored there too (``llmqfl.llm.server_test``): the
client's own test items are the validation split the teacher's settings were chosen on.

Everything is computed before anything is written; the adapter folder appears atomically, and
``metrics.json`` is written last, so a failed job leaves no partial adapter behind.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmqfl import layout
from llmqfl.config import derive_seed
from llmqfl.errors import ConfigError, DataError
from llmqfl.file_contract import PARTITION, check_frame
from llmqfl.integrity import write_manifest
from llmqfl.io import atomic_path, read_json, read_parquet, write_json, write_parquet
from llmqfl.llm import dna, finetune, probe, server_test, token_inputs
from llmqfl.llm.dp_sgd import DpSgd, train_private
from llmqfl.llm.model_assets import DEFAULT_MODELS_ROOT
from llmqfl.llm.modeling import Classifier, build_classifier, head_learning_rates
from llmqfl.settings import DpSgdSettings, LlmSettings, Settings

log = logging.getLogger(__name__)
PARTITION_COLUMNS = ("row", "item", "label", "split")
INFERENCE_BATCH = 64


@dataclass(frozen=True)
class ClientData:
    """A client's items, split into its own train and test parts."""

    frame: pd.DataFrame  # every item of the client, partition order
    train: pd.DataFrame
    test: pd.DataFrame
    kind: str
    classes: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def load_client(partition: str | Path, meta: str | Path, *, client: int) -> ClientData:
    """Read and check ``client_{k}.parquet`` and ``meta.json``; :class:`DataError` names what is wrong."""
    partition, meta = Path(partition), Path(meta)
    for path in (partition, meta):
        if not path.is_file():
            raise DataError(f"{path}: file not found")
    info = read_json(meta)
    if not isinstance(info, dict) or info.get("kind") not in {"dna", "text"} or not info.get("classes"):
        raise DataError(f"{meta}: needs kind dna|text and a classes list")
    frame = read_parquet(partition)
    missing = [c for c in PARTITION_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{partition}: missing column {missing[0]!r}")
    check_frame(frame, PARTITION, str(partition))
    n_classes = len(info["classes"])
    if len(frame) and not frame["label"].between(0, n_classes - 1).all():
        raise DataError(f"{partition}: labels must be in 0..{n_classes - 1}")
    train = frame[frame["split"] == "train"]
    test = frame[frame["split"] == "test"]
    if len(frame) == 0:
        raise DataError(f"{partition}: client {client} has no items (empty client); use fewer clients or a milder skew")
    if len(train) == 0:
        raise DataError(f"{partition}: client {client} has no train items; use fewer clients or a milder skew")
    return ClientData(frame.reset_index(drop=True), train, test, info["kind"], list(info["classes"]))


def run_client(
    settings: Settings,
    data: ClientData,
    *,
    root_seed: int,
    client: int,
    out: str | Path,
    init_adapter: str | Path | None = None,
    train: bool = True,
    teacher: bool = True,
    models_root: str | Path = DEFAULT_MODELS_ROOT,
    tracker: Any = None,
    progress: bool = True,
    test: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Fine-tune (unless ``train`` is false), evaluate, write ``out/{adapter, teacher.parquet, metrics.json}``.

    ``settings.llm`` is the fine-tuning, ``settings.privacy.llm`` its DP-SGD (when enabled).
    ``init_adapter`` starts from a saved adapter (with ``train`` false: the outputs of that adapter).
    ``test`` (``server_test.load_server_test``) adds the final model's ``server_test_*`` metrics.
    """
    check_llm(settings.llm)
    if not train and init_adapter is None:
        raise ConfigError("config error: evaluating without training needs an adapter to start from")
    return _run(settings.llm, settings.privacy.llm, data, root_seed, client, Path(out), init_adapter, train, teacher,
                models_root, tracker, progress, test)


def check_llm(llm: LlmSettings) -> None:
    if int(llm.max_length) < token_inputs.MIN_MAX_LENGTH:
        raise ConfigError(f"config error: llm.max_length: {llm.max_length} is less than the minimum of 8")
    if int(llm.federated_rounds) > 0 and llm.peft == "full":
        raise ConfigError("config error: llm.federated_rounds: federated averaging needs llm.peft lora or qlora")


@dataclass(frozen=True)
class Encoded:
    """A client's items as token ids, and which of them it trains on and is evaluated on."""

    features: list[dict[str, Any]]
    train_idx: np.ndarray
    eval_idx: np.ndarray
    eval_split: str


def encode_client(classifier: Classifier, llm: LlmSettings, data: ClientData, client: int) -> Encoded:
    """Token ids of every item of the client (train, then evaluated on its test items, else its train items)."""
    scheme, k = dna.settings(llm)
    features = token_inputs.encode_items(classifier.tokenizer, data.frame["item"].tolist(),
                                         data.frame["label"].tolist(), kind=data.kind, scheme=scheme, k=k,
                                         max_length=int(llm.max_length), vocab=classifier.dna_vocab)
    train_idx = np.flatnonzero((data.frame["split"] == "train").to_numpy())
    eval_split = "test" if len(data.test) else "train"
    eval_idx = np.flatnonzero((data.frame["split"] == eval_split).to_numpy())
    if eval_split == "train":
        log.warning("client %s has no test items: evaluating on its train items", client)
    return Encoded(features, train_idx, eval_idx, eval_split)


def train_client(classifier: Classifier, llm: LlmSettings, data: ClientData, encoded: Encoded, *,
                 client: int, seed: int, probe_head: bool, tracker: Any = None,
                 progress: bool = True, privacy: DpSgdSettings | None = None) -> finetune.TrainResult:
    """Fine-tune ``classifier`` in place on the client's train items (``probe_head``: fit the head first).

    ``privacy`` (``privacy.llm``): DP-SGD through Opacus when it is enabled."""
    tokenizer, train_idx = classifier.tokenizer, encoded.train_idx
    if probe_head:
        probe_batches, probe_order = token_inputs.length_sorted_loader([encoded.features[i] for i in train_idx],
                                                                       tokenizer, batch_size=INFERENCE_BATCH)
        fitted = probe.fit_head(classifier.model, probe_batches, probe_order,
                                data.frame["label"].to_numpy()[train_idx], data.n_classes)
        log.info("client %s: linear probe head, train accuracy %.3f", client, fitted)
    torch.manual_seed(seed)
    batches = token_inputs.loader([encoded.features[i] for i in train_idx], tokenizer,
                                  batch_size=int(llm.batch_size), shuffle=True, seed=seed)
    on_step = (lambda step, values: tracker.log_metrics(values, step=step)) if tracker is not None else None
    dp = DpSgd.from_settings(privacy)
    if dp is not None:  # DP-SGD through Opacus (privacy.llm)
        return train_private(classifier.model, batches, dp, epochs=int(llm.epochs),
                             learning_rate=float(llm.learning_rate), seed=seed, on_step=on_step,
                             group_learning_rates={**dna.token_learning_rates(llm, classifier.dna_vocab),
                                                   **head_learning_rates(llm)}).train
    return finetune.train(classifier.model, batches, epochs=int(llm.epochs),
                          learning_rate=float(llm.learning_rate), on_step=on_step, progress=progress,
                          group_learning_rates={**dna.token_learning_rates(llm, classifier.dna_vocab),
                                                **head_learning_rates(llm)})


def evaluate_client(classifier: Classifier, llm: LlmSettings, data: ClientData, encoded: Encoded, *,
                    client: int, seed: int, result: finetune.TrainResult | None,
                    teacher: bool) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """The client's metrics (evaluated on its own items) and, if ``teacher``, its teacher outputs for every item."""
    ordered, order = token_inputs.length_sorted_loader(encoded.features, classifier.tokenizer,
                                                       batch_size=INFERENCE_BATCH)
    predictions = finetune.predict(classifier.model, ordered, order)
    probs = finetune.softmax(predictions.logits)
    labels = data.frame["label"].to_numpy()
    train_idx, eval_idx = encoded.train_idx, encoded.eval_idx
    trainable, total = classifier.parameter_counts()
    metrics = {
        "client": client,
        "round": None,
        "model": llm.model,
        "peft": llm.peft,
        "seed": seed,
        "train_loss": result.train_loss if result else float(predictions.losses[train_idx].mean()),
        "train_loss_kind": "running mean over the last epoch" if result else "evaluated after training",
        **_eval_metrics(labels[eval_idx], probs[eval_idx], predictions.losses[eval_idx]),
        "eval_split": encoded.eval_split,
        "n_train": len(train_idx),
        "n_eval": len(eval_idx),
        "trainable_params": trainable,
        "total_params": total,
        "trainable_fraction": trainable / total,
        "train_items_per_second": result.items_per_second if result else None,
        "train_steps": result.steps if result else 0,
        "peak_memory_mb": finetune.peak_memory_mb(),
        **(result.privacy if result is not None and result.privacy else {}),  # dp_epsilon, dp_delta, ...
    }
    frame = None
    if teacher:
        frame = pd.DataFrame({
            "row": data.frame["row"].astype("int64").to_numpy(),
            "probs": list(probs.astype(np.float32)),
        })
    return metrics, frame


def build_client_model(llm: LlmSettings, kind: str, n_classes: int, *, root_seed: int,
                       init_adapter: str | Path | None = None, models_root: str | Path = DEFAULT_MODELS_ROOT,
                       classes: list[str] | None = None) -> Classifier:
    """The configured model for ``n_classes``; every client starts from the same one (one init seed)."""
    classifier = build_classifier(
        model=llm.model, n_classes=n_classes, peft=llm.peft, lora=llm.lora,
        init_seed=derive_seed(root_seed, "distill", "init"), init_adapter=init_adapter, models_root=models_root,
        dna_tokens=dna.settings(llm) if kind == "dna" else None, pooling=llm.pooling, device=llm.device,
    )
    classifier.recipe.update(kind=kind, max_length=int(llm.max_length), kmer=int(llm.kmer),
                             classes=[str(c) for c in classes] if classes is not None else None)
    return classifier


def _run(llm: LlmSettings, privacy: DpSgdSettings, data: ClientData, root_seed: int, client: int, out: Path,
         init_adapter: str | Path | None, train: bool, teacher: bool, models_root: str | Path, tracker: Any,
         progress: bool, test: pd.DataFrame | None) -> dict[str, Any]:
    start = time.perf_counter()
    torch.set_num_threads(int(llm.threads))
    train_seed = derive_seed(root_seed, "distill", client)
    classifier = build_client_model(llm, data.kind, data.n_classes, root_seed=root_seed, init_adapter=init_adapter,
                                    models_root=models_root, classes=data.classes)
    encoded = encode_client(classifier, llm, data, client)
    result = None
    if train:
        probe_head = init_adapter is None and llm.head_init == "probe"
        result = train_client(classifier, llm, data, encoded, client=client, seed=train_seed, probe_head=probe_head,
                              tracker=tracker, progress=progress, privacy=privacy)
    metrics, frame = evaluate_client(classifier, llm, data, encoded, client=client, seed=train_seed, result=result,
                                     teacher=teacher)
    metrics["seconds"] = time.perf_counter() - start  # the server-test scoring has its own seconds
    if test is not None:
        metrics.update(score_server_test(classifier, llm, test, data.kind))
    write_outputs(classifier, out, frame, metrics, tracker)
    return metrics


def score_server_test(classifier: Classifier, llm: LlmSettings, test: pd.DataFrame, kind: str) -> dict[str, Any]:
    """The model's ``server_test_*`` metrics, logged like the client's own."""
    metrics = server_test.server_test_metrics(classifier, llm, test, kind=kind, batch_size=INFERENCE_BATCH)
    log.info("server test set: accuracy %.4f, loss %.4f nats on %d items", metrics["server_test_accuracy"],
             metrics["server_test_loss"], metrics["server_test_n"])
    return metrics


def _eval_metrics(labels: np.ndarray, probs: np.ndarray, losses: np.ndarray) -> dict[str, float]:
    """Natural-log CE, accuracy, weighted F1, and the best constant predictor's accuracy on the same items."""
    from sklearn.metrics import f1_score

    predicted = probs.argmax(axis=1)
    majority = np.bincount(labels).max() / len(labels)
    return {
        "eval_loss": float(losses.mean()),
        "eval_accuracy": float((predicted == labels).mean()),
        "eval_f1": float(f1_score(labels, predicted, average="weighted", zero_division=0)),
        "majority_rate": float(majority),
    }


def save_adapter(classifier: Classifier, folder: Path) -> None:
    """Save the model's adapter (or, under full fine-tuning, the model) to ``folder``, atomically.

    The folder's manifest (``llmqfl.integrity``) holds every file's digest, checked where the adapter is read,
    and the classifier's recipe (model, classes, DNA tokens), what ``llmqfl.llm.reload`` rebuilds it from.
    """
    model = classifier.model
    with atomic_path(folder) as tmp:
        # peft: the added DNA rows travel as trainable tokens, never the whole resized embedding matrix
        extra = {"save_embedding_layers": False} if hasattr(model, "peft_config") else {}
        model.save_pretrained(tmp, safe_serialization=True, **extra)
        write_manifest(tmp, {"llmqfl": classifier.recipe})


def write_outputs(classifier: Classifier, out: Path, teacher: pd.DataFrame | None, metrics: dict[str, Any],
                  tracker: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_adapter(classifier, out / layout.ADAPTER)
    if teacher is not None:
        write_parquet(out / layout.TEACHER, teacher)
    write_json(out / layout.CLIENT_METRICS, metrics)
    if tracker is not None:
        numeric = {k: v for k, v in metrics.items() if isinstance(v, float | int) and not isinstance(v, bool)}
        tracker.log_metrics({k: v for k, v in numeric.items() if k not in {"client", "round", "seed"}})
        tracker.log_artifact(out / layout.ADAPTER)
        tracker.log_artifact(out / layout.CLIENT_METRICS)
