"""Sites that keep their data: each site builds its own bundle from the items it holds.

Why: the coordinator must never hold a site's items or its teacher's outputs. The coordinator
writes what the federation agrees on (:class:`Agreement`: the feature source, the padding length
and the angle encoder fitted on the coordinator's own ``server_val`` items, ``qfl.features.fit:
server``) and its own ``server.pkl``; each site reads its own partition file and the outputs of
the teacher it fine-tuned itself (the ``distill`` stage run at the site), encodes its items with the
agreed encoder and writes its ``client_{k}.pkl``, which only its own SuperNode reads. The numbers
are those of the in-process run with the same config (``tests/e2e/test_flower_sites.py``).
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.config import derive_seed
from llmqfl.contracts import BASELINE, LLM_GUIDED, uses_llm
from llmqfl.errors import ConfigError, DataError
from llmqfl.federated.client import ClientData
from llmqfl.federated.feature_sources import SourceContext
from llmqfl.federated.features import resolve_source
from llmqfl.federated.flower.bundles import ClientBundle, ServerBundle, _dump
from llmqfl.federated.inputs import labels_of, read_checked_json
from llmqfl.federated.server import ServerData
from llmqfl.file_contract import DATA_SPLIT, PARTITION, TEACHER
from llmqfl.io import read_checked_parquet
from llmqfl.registry import get
from llmqfl.settings import Settings

AGREEMENT_FILE = "agreement.pkl"
SITE_SOURCES = ("onehot", "kmer")  # computed from the items alone; text embeddings would need the base LLM


@dataclass(frozen=True)
class Agreement:
    """What every site encodes its items with (the coordinator's choice, sent to every site)."""

    source: str
    n_qubits: int
    k: int
    length: int | None  # DNA items are padded to this many letters (meta.json's longest item)
    encoder: Any  # llmqfl.data.encoders.AngleEncoder, fitted on the coordinator's server_val items
    n_classes: int


def _check_config(settings: Settings, arm: str) -> None:
    if settings.qfl.features.fit != "server":
        raise ConfigError("config error: qfl.features.fit: sites that keep their data need 'server' "
                          "(the coordinator fits the encoder on its own server_val items)")
    if arm not in (BASELINE, LLM_GUIDED):
        raise ConfigError(f"--arm: sites that keep their data run {BASELINE} or {LLM_GUIDED}, got {arm}")
    if settings.qfl.termination.llm_threshold_quantile is not None:
        raise ConfigError("config error: qfl.termination.llm_threshold_quantile: sites that keep their data need "
                          "a fixed qfl.termination.llm_threshold")


def _raw(source: str, frame: pd.DataFrame, agreement_length: int | None, k: int, split: str) -> np.ndarray:
    context = SourceContext(split, None, Path("embeddings.parquet"), None, k, agreement_length)
    return get("encoder", source)().raw(frame.reset_index(drop=True), context)


def _transform(agreement: Agreement, frame: pd.DataFrame, split: str) -> np.ndarray:
    if len(frame) == 0:
        return np.zeros((0, agreement.n_qubits))
    raw = _raw(agreement.source, frame, agreement.length, agreement.k, split)
    return np.asarray(agreement.encoder.transform(raw), dtype=np.float64)


def agree(settings: Settings, arm: str, data_dir: Path) -> tuple[Agreement, dict[str, pd.DataFrame]]:
    """The coordinator's agreement from its own ``server_val`` items and ``meta.json``; and its own sets."""
    from llmqfl.data.encoders import AngleEncoder

    _check_config(settings, arm)
    qfl = settings.qfl
    meta = read_checked_json(data_dir / "meta.json")
    source = resolve_source(qfl.features.source, kind=meta.get("kind", "text"), feature_columns=None)
    if source not in SITE_SOURCES:
        raise ConfigError(f"config error: qfl.features.source: sites that keep their data encode their own items "
                          f"with one of {', '.join(SITE_SOURCES)}, got {source}")
    sets = {s: read_checked_parquet(data_dir / f"{s}.parquet", ("row", "item", "label"), DATA_SPLIT).sort_values("row")
            for s in ("server_val", "test")}  # fmt: skip
    longest = max(int(f["item"].astype(str).str.len().max()) for f in sets.values() if len(f))
    length = max(longest, int((meta.get("lengths") or {}).get("max", 0)))
    k = qfl.features.k
    raw = _raw(source, sets["server_val"], length, k, "server_val")
    if qfl.n_qubits > min(raw.shape):
        raise ConfigError(f"config error: qfl.n_qubits: PCA to {qfl.n_qubits} components needs n_qubits <= "
                          f"min(items, dims) = min{raw.shape} for the server_val items (qfl.features.fit=server)")
    encoder = AngleEncoder(n_components=qfl.n_qubits).fit(raw)
    return Agreement(source, qfl.n_qubits, k, length, encoder, int(meta["n_classes"])), sets


def server_bundle(settings: Settings, arm: str, seed: int, data_dir: Path) -> tuple[ServerBundle, Agreement]:
    """The coordinator's ``server.pkl`` content from its own sets only (no client's items)."""
    from llmqfl.federated.run import build_model, build_plan, fingerprint, initial_weights

    agreement, sets = agree(settings, arm, data_dir)
    n_classes = agreement.n_classes
    server = ServerData(
        val_x=_transform(agreement, sets["server_val"], "server_val"),
        val_y=labels_of(sets["server_val"], n_classes, "server_val.parquet"),
        test_x=_transform(agreement, sets["test"], "test"),
        test_y=labels_of(sets["test"], n_classes, "test.parquet"),
        llm_loss=math.nan,  # the clients' LLM losses arrive with their identities (server_app.serve)
    )
    model = build_model(settings, n_classes)
    plan = build_plan(settings, arm, None)
    base_seed = derive_seed(settings.seed, "qfl", seed)
    weights = initial_weights(settings, model.n_params, base_seed)
    digest = fingerprint(settings, arm, seed, [], server, plan, weights)
    ids = tuple(range(settings.federation.n_clients))
    bundle = ServerBundle(arm, seed, base_seed, settings, n_classes, server, plan, weights, digest, ids)
    return bundle, agreement


def write_server(settings: Settings, arm: str, seed: int, data_dir: Path, out_dir: Path) -> dict[str, Path]:
    """``server.pkl`` (kept by the coordinator) and ``agreement.pkl`` (sent to every site)."""
    from llmqfl.federated.flower.bundles import SERVER_FILE

    bundle, agreement = server_bundle(settings, arm, seed, data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {"server": _dump(out_dir / SERVER_FILE, bundle), "agreement": _dump(out_dir / AGREEMENT_FILE, agreement)}


def load_agreement(path: Path) -> Agreement:
    if not Path(path).is_file():
        raise DataError(f"{path}: missing (the coordinator writes it: flower_sites server)")
    with Path(path).open("rb") as handle:
        payload = pickle.load(handle)
    bundle = payload.get("bundle") if isinstance(payload, dict) else None
    if not isinstance(bundle, Agreement):
        raise DataError(f"{path}: not a federation agreement")
    return bundle


def site_data(settings: Settings, arm: str, client: int, agreement: Agreement,
              partition: Path, distill_dir: Path | None) -> ClientData:
    """One site's :class:`ClientData` from its own partition file and its own teacher's outputs."""
    frame = read_checked_parquet(partition, ("row", "item", "label", "split"), PARTITION)
    split = frame["split"].astype(str).to_numpy()
    train, test = frame[split == "train"], frame[split == "test"]
    if len(train) == 0:
        raise DataError(f"{partition}: client {client} has no train items")
    teacher, llm_loss = None, math.nan
    if uses_llm(arm):
        if distill_dir is None:
            raise ConfigError(f"--distill-dir: the {arm} arm needs the site's own teacher (the distill stage's out)")
        signal = settings.qfl.guidance.signal
        metrics = read_checked_json(distill_dir / "metrics.json")
        value = metrics.get(signal)
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise DataError(f"{distill_dir / 'metrics.json'}: {signal} must be a positive number, got {value!r}")
        llm_loss = float(value)
        if settings.qfl.distillation.weight > 0:
            from llmqfl.federated.inputs import _teacher_probs

            path = distill_dir / "teacher.parquet"
            table = read_checked_parquet(path, ("row", "probs"), TEACHER)
            teacher = _teacher_probs(table, train["row"].to_numpy(dtype=np.int64), agreement.n_classes, str(path))
    n = agreement.n_classes
    return ClientData(
        client=int(client),
        train_x=_transform(agreement, train, "train"),
        train_y=labels_of(train, n, str(partition)),
        test_x=_transform(agreement, test, "test"),
        test_y=labels_of(test, n, str(partition)),
        teacher_probs=teacher,
        llm_loss=llm_loss,
    )


def write_site(settings: Settings, arm: str, seed: int, client: int, agreement: Agreement,
               partition: Path, distill_dir: Path | None, out: Path) -> Path:
    """The site's ``client_{k}.pkl``, written at the site for its own SuperNode."""
    _check_config(settings, arm)
    data = site_data(settings, arm, client, agreement, partition, distill_dir)
    base_seed = derive_seed(settings.seed, "qfl", seed)
    bundle = ClientBundle(arm, base_seed, settings, agreement.n_classes, data)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _dump(out, bundle)
