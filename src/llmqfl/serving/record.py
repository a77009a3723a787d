"""What the qfl stage records about the model it trained: the model itself and the data it saw.

One call from the stage, :func:`record_qfl_model`, writes ``{out_dir}/model/`` (the model's files,
:mod:`llmqfl.serving.bundle`; ``llmqfl.load_model`` and ``llmqfl predict`` read it) and, when tracking
is on, logs the same files as an MLflow pyfunc model of the stage's run (``mlflow.pyfunc.load_model``
reads it) and each data split as a dataset input of that run.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmqfl import layout
from llmqfl.io import atomic_path, read_json, read_parquet
from llmqfl.serving.bundle import save_bundle
from llmqfl.serving.item_checks import items_spec
from llmqfl.settings import Settings

log = logging.getLogger("llmqfl.serving")
SPLIT_CONTEXT = {"train": "training", "server_val": "validation", "test": "test"}
EXAMPLE_ITEMS = 2  # training items saved as the logged model's input example


def feature_spec(
    settings: Settings, source: str, feature_columns: Sequence[str] | None, length: int | None = None
) -> dict[str, Any]:
    """How a raw item becomes raw features for the feature source the run resolved: what the source's context
    held in training (``k``, the item ``length`` the sources were given, the feature columns), the extensions
    that register it, and for embedding features the base model that embedded the items."""
    spec: dict[str, Any] = {"source": source, "k": settings.qfl.features.k}
    if length is not None:
        spec["length"] = int(length)
    if source == "columns":
        spec["feature_columns"] = list(feature_columns or [])
    if settings.extensions:  # a source of theirs is found again where the model is served
        spec["extensions"] = list(settings.extensions)
    if source == "embedding":  # the embed stage's base model embeds a prediction's items
        from llmqfl.llm.model_assets import DEFAULT_MODELS_ROOT

        llm = settings.llm
        spec["embedding"] = {
            "model": llm.model,
            "max_length": llm.max_length,
            "kmer": llm.kmer,
            "models_root": str(Path(DEFAULT_MODELS_ROOT).resolve()),
        }
    return spec


def item_length(splits: Sequence[Any]) -> int | None:
    """The longest item of the data splits: the ``length`` every feature source was given in training
    (:func:`llmqfl.federated.features.build_features`; one-hot pads each item to it)."""
    longest = max((int(frame["item"].astype(str).str.len().max()) for frame in splits
                   if "item" in frame.columns and len(frame)), default=0)
    return longest or None


def record_qfl_model(
    run_log: Any,
    *,
    config: Settings,
    data_dir: str | Path,
    out_dir: str | Path,
    model: Any,
    weights: np.ndarray,
    features: Any,
    info: Mapping[str, Any],
) -> Path:
    """Save the trained model to ``out_dir/model`` and log it and the data splits to ``run_log``'s run.

    ``config`` is the run's validated settings; ``features`` is the run's
    :class:`~llmqfl.federated.features.FeatureSets` (it carries the pooled fitted encoder the server's sets were
    transformed with); ``info`` is provenance for the bundle.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    meta = read_json(data_dir / layout.META)
    feature_columns = config.data.feature_columns or meta.get("feature_columns") or None
    kind = "columns" if features.source == "columns" else str(meta.get("kind", "text"))
    splits = {split: read_parquet(data_dir / layout.split_name(split)) for split in layout.SPLITS}
    # what predictions are checked against: for DNA the letters and lengths of the items the model trained on
    train_items = splits["train"]["item"] if kind == "dna" else ()
    target = out_dir / layout.MODEL
    with atomic_path(target) as tmp:
        save_bundle(
            tmp,
            model=model,
            weights=weights,
            encoder=features.encoder,
            class_names=meta["classes"],
            features=feature_spec(config, features.source, feature_columns, item_length(splits.values())),
            info={"experiment": config.experiment, **dict(info)},
            items=items_spec(kind, train_items),
        )
    run_id = getattr(run_log, "run_id", None)
    if run_id:
        import mlflow

        from llmqfl.serving.pyfunc import log_pyfunc, model_name

        # MLflow's advice (type hints, integer columns, ambiguous local sources) and progress bars: noise in job logs
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _log_splits(run_log, data_dir, config.experiment)
            experiment_id = mlflow.MlflowClient().get_run(run_id).info.experiment_id
            mlflow.set_experiment(experiment_id=experiment_id)  # the logged model belongs to the run's experiment
            tags = {"llmqfl.arm": str(info.get("arm", "")), "llmqfl.seed": str(info.get("seed", ""))}
            name = model_name(config.experiment, info.get("arm", ""), info.get("seed"))
            example = input_example(data_dir, feature_columns if kind == "columns" else None)
            logged = log_pyfunc(run_id, target, name=name, tags=tags, input_example=example)
        run_log.set_tags({"llmqfl.model_uri": logged.model_uri})
        log.info("logged the trained model: %s", logged.model_uri)
    return target


def input_example(data_dir: Path, feature_columns: Sequence[str] | None, n: int = EXAMPLE_ITEMS) -> Any:
    """The model's input for the first ``n`` training items: the ``item`` column, or the feature columns."""
    train = read_parquet(data_dir / layout.split_name("train")).sort_values("row").head(n)
    columns = list(feature_columns) if feature_columns else ["item"]
    if not set(columns) <= set(train.columns):
        return None
    return train[columns].reset_index(drop=True)


def _log_splits(run_log: Any, data_dir: Path, experiment: str) -> None:
    """Each split as an MLflow dataset input (name ``{experiment}/{split}``, digest of its content)."""
    for split, context in SPLIT_CONTEXT.items():
        path = data_dir / layout.split_name(split)
        run_log.log_input(read_parquet(path), name=f"{experiment}/{split}", source=path, context=context)
