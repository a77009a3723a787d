"""Trained quantum models outside the pipeline: save, log to MLflow, load, predict on raw items."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["load_model"]


def load_model(source: str | Path) -> Any:
    """A trained model from a bundle folder, an MLflow model folder, or an MLflow URI (``runs:/``, ``models:/``).

    The result's ``predict(items)`` takes raw items (a list of strings or a data frame with an ``item``
    column) and returns a data frame: ``label``, ``class_index``, ``prob_<class>``.
    """
    from llmqfl.errors import DataError
    from llmqfl.serving.bundle import BUNDLE_FILE, Bundle

    text = str(source)
    local = Path(text).expanduser()
    if local.is_dir():
        if (local / BUNDLE_FILE).is_file():
            return Bundle(local)
        if (local / "MLmodel").is_file():  # an MLflow model: the bundle is its one artifact folder
            inner = sorted(local.glob(f"artifacts/*/{BUNDLE_FILE}"))
            if len(inner) == 1:
                return Bundle(inner[0].parent)
        raise DataError(f"{local}: neither an llmqfl model folder nor an MLflow model folder")
    if "://" not in text and ":/" not in text:
        raise DataError(f"model not found: {text} (a folder, or an MLflow URI such as models:/MODEL_ID)")
    import mlflow

    from llmqfl.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    try:
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
    except Exception as exc:  # MlflowException and friends: one clear line
        raise DataError(f"cannot load model {text}: {str(exc).splitlines()[0]}") from exc
    return load_model(folder)
