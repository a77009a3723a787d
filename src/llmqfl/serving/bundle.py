"""A trained quantum classifier as a folder that classifies new raw items on its own.

Everything the training run fitted or chose is saved in plain formats, so nothing depends on the
pickles of one library version: ``weights.npy`` (the final global weights), ``encoder.npz`` (the
fitted angle encoder: PCA components and mean, per-component range), ``circuit.qpy`` (the
measurement-free circuit in qiskit's QPY format) and ``bundle.json`` (class names, parameter order,
readout, and how raw items become features). :meth:`Bundle.predict` runs the exact (ideal,
noise-free) simulator, which is what the pipeline scores with on ``backend: {kind: aer}``; on a
shot-based or noisy backend the pipeline's own numbers were sampled and can differ slightly.

Feature sources: every one is the class registered under the run's source name (``llmqfl.registry`` kind
``encoder``, a built-in or one of the extensions the bundle names), given the source context the run
recorded (``k``, the item ``length`` its sources padded to, the feature columns). ``onehot`` (DNA: one-hot
at the training width, then the encoder), ``kmer`` (DNA: k-mer frequencies) and ``columns``
(``data.feature_columns``) need nothing else; ``embedding`` (text) needs the base LLM that embedded
the training items: the bundle names it (``features.embedding``) and loads it from the models folder
it names, or from ``LLMQFL_MODELS_ROOT`` when that is set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.errors import DataError, LlmqflError
from llmqfl.serving.item_checks import ITEMS_KEY, check_items, spec_of

FORMAT = "llmqfl-quantum-classifier"
VERSION = 1
BUNDLE_FILE = "bundle.json"
ITEM_COLUMN = "item"
MODELS_ROOT_ENV = "LLMQFL_MODELS_ROOT"
PREDICT_SPLIT = "predict"  # the split name a feature source sees for the items of a prediction


@dataclass(frozen=True)
class EncoderArrays:
    """The fitted :class:`~llmqfl.data.encoders.AngleEncoder` as arrays; ``transform`` repeats its arithmetic."""

    components: np.ndarray  # (usable, n_raw)
    mean: np.ndarray  # (n_raw,)
    low_range: np.ndarray  # per-component min of the projected training items
    high_range: np.ndarray
    n_components: int
    low: float
    high: float

    @classmethod
    def from_encoder(cls, encoder: Any) -> EncoderArrays:
        pca = encoder.pca_
        if pca is None or getattr(pca, "whiten", False):
            raise ValueError("the angle encoder must be fitted (and not whitened) to be saved")
        return cls(
            components=np.asarray(pca.components_, dtype=np.float64),
            mean=np.asarray(pca.mean_, dtype=np.float64),
            low_range=np.asarray(encoder.min_, dtype=np.float64),
            high_range=np.asarray(encoder.max_, dtype=np.float64),
            n_components=int(encoder.n_components),
            low=float(encoder.low),
            high=float(encoder.high),
        )

    @property
    def n_raw(self) -> int:
        return int(self.mean.shape[0])

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """PCA projection, zero-padded to ``n_components``, min-max scaled and clipped into [low, high]."""
        projected = raw @ self.components.T
        projected -= self.mean.reshape(1, -1) @ self.components.T  # sklearn's order of operations
        missing = self.n_components - projected.shape[1]
        if missing:
            projected = np.pad(projected, ((0, 0), (0, missing)))
        span = self.high_range - self.low_range
        unit = np.divide(projected - self.low_range, span, out=np.zeros_like(projected), where=span > 0)
        return self.low + (self.high - self.low) * np.clip(unit, 0.0, 1.0)

    def save(self, path: Path) -> None:
        np.savez(
            path,
            components=self.components,
            mean=self.mean,
            low_range=self.low_range,
            high_range=self.high_range,
            scalars=np.array([self.n_components, self.low, self.high], dtype=np.float64),
        )

    @classmethod
    def load(cls, path: Path) -> EncoderArrays:
        with np.load(path, allow_pickle=False) as arrays:
            n_components, low, high = arrays["scalars"].tolist()
            return cls(
                components=arrays["components"],
                mean=arrays["mean"],
                low_range=arrays["low_range"],
                high_range=arrays["high_range"],
                n_components=int(n_components),
                low=float(low),
                high=float(high),
            )


def save_bundle(
    folder: str | Path,
    *,
    model: Any,
    weights: np.ndarray,
    encoder: Any,
    class_names: Sequence[str],
    features: Mapping[str, Any],
    info: Mapping[str, Any] | None = None,
    items: Mapping[str, Any] | None = None,
) -> Path:
    """Write the bundle files into ``folder`` (created); returns it.

    ``model`` is the run's :class:`~llmqfl.quantum.models.circuits.QuantumModel`, ``encoder`` the pooled fitted
    angle encoder, ``features`` how raw items become raw features (``source``, plus ``feature_columns``
    or ``embedding``), ``info`` free provenance (experiment, arm, seed, backend, the run's accuracy), ``items``
    the record of the training items that predictions are checked against (``item_checks.items_spec``).
    """
    from qiskit import qpy

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (model.n_params,):
        raise ValueError(f"weights: expected shape ({model.n_params},), got {weights.shape}")
    if len(class_names) != model.n_classes:
        raise ValueError(f"class_names: expected {model.n_classes} names, got {len(class_names)}")
    arrays = EncoderArrays.from_encoder(encoder)
    np.save(folder / "weights.npy", weights)
    arrays.save(folder / "encoder.npz")
    with (folder / "circuit.qpy").open("wb") as handle:
        qpy.dump(model.circuit, handle)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "kind": model.kind,
        "n_qubits": int(model.n_qubits),
        "n_classes": int(model.n_classes),
        "class_names": [str(c) for c in class_names],
        "input_params": [p.name for p in model.input_params],
        "weight_params": [p.name for p in model.weight_params],
        "readout": np.asarray(model.readout).astype(int).tolist(),
        "readout_qubits": [int(q) for q in model.readout_qubits],
        "readout_rule": model.readout_rule,
        "features": {"item_column": ITEM_COLUMN, "raw_width": arrays.n_raw, **dict(features)},
        "info": dict(info or {}),
    }
    if items is not None:
        meta[ITEMS_KEY] = dict(items)
    (folder / BUNDLE_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    return folder


class Bundle:
    """A loaded bundle: raw items in, class labels and probabilities out."""

    def __init__(self, folder: str | Path) -> None:
        from qiskit import qpy

        from llmqfl.quantum.models.circuits import QuantumModel

        self.folder = Path(folder)
        meta_path = self.folder / BUNDLE_FILE
        if not meta_path.is_file():
            raise DataError(f"{self.folder}: not a trained llmqfl model (no {BUNDLE_FILE})")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT or int(self.meta.get("version", 0)) > VERSION:
            found = f"{self.meta.get('format')!r} v{self.meta.get('version')}"
            raise DataError(f"{meta_path}: unknown model format {found}")
        with (self.folder / "circuit.qpy").open("rb") as handle:
            circuit = qpy.load(handle)[0]
        by_name = {p.name: p for p in circuit.parameters}
        self.weights = np.load(self.folder / "weights.npy", allow_pickle=False)
        self.encoder = EncoderArrays.load(self.folder / "encoder.npz")
        self.model = QuantumModel(
            kind=self.meta["kind"],
            n_qubits=int(self.meta["n_qubits"]),
            n_classes=int(self.meta["n_classes"]),
            circuit=circuit,
            input_params=tuple(by_name[name] for name in self.meta["input_params"]),
            weight_params=tuple(by_name[name] for name in self.meta["weight_params"]),
            readout=np.asarray(self.meta["readout"], dtype=np.float64),
            readout_qubits=tuple(self.meta["readout_qubits"]),
            readout_rule=self.meta["readout_rule"],
        )
        self.items_spec = spec_of(self.meta, raw_width=self.encoder.n_raw)  # what predict checks items against
        self._evaluator = None

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def features_meta(self) -> dict[str, Any]:
        return dict(self.meta["features"])

    # -- raw items -> angles ----------------------------------------------------------------------
    def frame(self, items: Any) -> pd.DataFrame:
        """A data frame from a frame, a sequence of items, or one item string."""
        if isinstance(items, pd.DataFrame):
            return items
        if isinstance(items, str) or not isinstance(items, Iterable):
            items = [items]
        return pd.DataFrame({ITEM_COLUMN: pd.Series(list(items), dtype=object)})  # as given: checked in _items

    @property
    def feature_columns(self) -> list[str] | None:
        """The numeric columns the model reads instead of items (a ``data.feature_columns`` run), else None."""
        if self.items_spec["kind"] != "columns":
            return None
        return list(self.features_meta.get("feature_columns") or [])

    def raw_features(self, frame: pd.DataFrame) -> np.ndarray:
        """The raw features of the input, from the feature source the run trained with (llmqfl.registry kind
        ``encoder``), given what the bundle records of the run's source context.

        The input is checked first (items: :mod:`llmqfl.serving.item_checks`; or the feature columns); a model
        whose bundle names an embedding model embeds its items with it, as the embed stage embedded the
        training items, and hands them to the source as the stage's file would.
        """
        from llmqfl.federated.feature_sources import SourceContext

        features = self.features_meta
        columns = self.feature_columns
        if columns is not None:
            table = self._columns(frame, columns)
        else:
            items = self._items(frame)
            table = pd.DataFrame({"row": np.arange(len(items)), "item": pd.Series(items, dtype=object)})
        source = self._source(features["source"])
        if len(table) == 0:
            return np.zeros((0, self.encoder.n_raw))
        embeddings = self._embed(table["item"].tolist()) if features.get("embedding") else None
        context = SourceContext(split=PREDICT_SPLIT, embeddings=embeddings, feature_columns=columns,
                                k=int(features.get("k", 3)), length=self.item_length)
        return np.asarray(source().raw(table, context), dtype=np.float64)

    @property
    def item_length(self) -> int | None:
        """The width the run's sources were given (the longest item of its splits; one-hot pads to it)."""
        recorded = self.features_meta.get("length")
        if recorded is not None:
            return int(recorded)
        # a bundle written before the length was recorded: only one-hot read it, at 4 raw features per letter
        return self.encoder.n_raw // 4 if self.features_meta["source"] == "onehot" else None

    def _source(self, source: str) -> Any:
        """The class registered as feature source ``source`` (llmqfl.registry kind ``encoder``).

        The same class the run trained with: a built-in, or one from the extensions the bundle records
        (imported here, under ``LLMQFL_TRUSTED_EXTENSIONS`` like every config's).
        """
        from llmqfl.registry import get, load_extensions, names

        extensions = list(self.features_meta.get("extensions") or ())
        try:
            if source not in names("encoder"):  # not a built-in: the run's extensions register it
                load_extensions(extensions)
            return get("encoder", source)
        except LlmqflError:
            where = f"the model's extensions ({', '.join(extensions)})" if extensions else "no extension"
            raise DataError(f"{self.folder / BUNDLE_FILE}: feature source {source!r} is not registered "
                            f"({where}); put the module that registers it on PYTHONPATH") from None

    @staticmethod
    def _columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
        """The input's feature columns, checked, as a data split (``row`` 0..n-1)."""
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"input: missing feature column(s) {', '.join(missing)}")
        values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise DataError(f"input: feature columns {columns} have non-numeric or missing values")
        return frame[columns].reset_index(drop=True).assign(row=np.arange(len(frame)))

    def _items(self, frame: pd.DataFrame) -> list[str]:
        column = self.features_meta.get("item_column", ITEM_COLUMN)
        if column not in frame.columns:
            if len(frame.columns) != 1:
                raise DataError(f"input: no column {column!r} (the raw items); columns are {list(frame.columns)}")
            column = frame.columns[0]
        return check_items(frame[column].tolist(), self.items_spec)

    def _embed(self, items: list[str]) -> pd.DataFrame:
        """The items' base-model embeddings, laid out as the embed stage's file (``split``, ``row``, ``embedding``)."""
        spec = self.features_meta.get("embedding") or {}
        if not spec.get("model"):
            raise DataError(f"{self.folder / BUNDLE_FILE}: text features, but the bundle names no embedding model")
        from llmqfl.llm.embeddings import base_embeddings

        root = os.environ.get(MODELS_ROOT_ENV) or spec.get("models_root") or "resources/models"
        try:
            vectors = base_embeddings(
                items,
                model=spec["model"],
                kind="text",
                max_length=int(spec["max_length"]),
                kmer=int(spec.get("kmer", 6)),
                models_root=root,
            )
        except (OSError, ValueError, LlmqflError) as exc:
            raise DataError(
                f"text items need the base model {spec['model']!r} (models folder {root}; set {MODELS_ROOT_ENV}): {exc}"
            ) from exc
        vectors = np.asarray(vectors, dtype=np.float64)
        return pd.DataFrame({"split": PREDICT_SPLIT, "row": np.arange(len(items)), "embedding": list(vectors)})

    def angles(self, items: Any) -> np.ndarray:
        raw = self.raw_features(self.frame(items))
        if raw.ndim != 2 or raw.shape[1] != self.encoder.n_raw:
            raise DataError(
                f"input: {raw.shape[1]} raw features per item, the model was trained on {self.encoder.n_raw}"
            )
        return self.encoder.transform(raw)

    # -- prediction ------------------------------------------------------------------------------
    def probabilities(self, items: Any) -> np.ndarray:
        """(n_items, n_classes) exact class probabilities."""
        from llmqfl.quantum.training.evaluators import ExactEvaluator

        angles = self.angles(items)
        if len(angles) == 0:
            return np.zeros((0, self.model.n_classes))
        if self._evaluator is None:
            self._evaluator = ExactEvaluator(self.model)
        return np.asarray(self._evaluator.probabilities(angles, self.weights), dtype=np.float64)

    def predict(self, items: Any) -> pd.DataFrame:
        """One row per item: ``label`` (class name), ``class_index`` and ``prob_<class>`` per class."""
        probs = self.probabilities(items)
        index = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
        names = self.class_names
        out = pd.DataFrame({"label": [names[i] for i in index], "class_index": index.astype(np.int64)})
        for c, name in enumerate(names):
            out[f"prob_{name}"] = probs[:, c]
        return out
