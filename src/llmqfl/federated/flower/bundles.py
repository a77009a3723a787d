"""Site bundles: what the server and each client are allowed to hold, one file each.

Why: over Flower the server must never see a client's items. The launcher splits one prepared run
(:func:`llmqfl.federated.run.prepare`) into ``server.pkl`` (the server's own validation and test
sets, the plan, the initial weights) and ``client_{k}.pkl`` (client k's partition, its teacher
outputs, its LLM loss and its backend settings). A SuperNode is pointed at exactly one client file.
Bundles are pickles written by the site itself for its own processes; never load one you did not write.
A bundle's config is stored as the plain dict (``Settings.as_config()``) and rebuilt on load with
:func:`llmqfl.config.load_settings` (validated, defaults filled): the process that reads a bundle (a
ServerApp, a ClientApp) gets typed :class:`llmqfl.settings.Settings` and never holds the raw dict.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmqfl.errors import DataError
from llmqfl.federated.client import ClientData
from llmqfl.federated.server import FederationPlan, ServerData
from llmqfl.io import atomic_path
from llmqfl.settings import Settings

SERVER_FILE = "server.pkl"
FORMAT = 1


@dataclass(frozen=True)
class ServerBundle:
    """The server's share of a run: no client items, only how many clients to expect."""

    arm: str
    seed: int
    base_seed: int
    config: Settings
    n_classes: int
    server: ServerData
    plan: FederationPlan
    weights: np.ndarray
    fingerprint: str
    client_ids: tuple[int, ...]


@dataclass(frozen=True)
class ClientBundle:
    """One site's share: its own partition and LLM outputs, and the settings to train on them."""

    arm: str
    base_seed: int
    config: Settings
    n_classes: int
    data: ClientData


def client_file(client: int) -> str:
    return f"client_{int(client)}.pkl"


_BUNDLES = (ServerBundle, ClientBundle)  # the pickles that carry the run's config


def _dump(path: Path, obj: Any) -> Path:
    """``obj`` pickled; a bundle with its config as the plain dict (what :func:`_load` rebuilds)."""
    if isinstance(obj, _BUNDLES):
        obj = replace(obj, config=obj.config.as_config())
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        pickle.dump({"format": FORMAT, "bundle": obj}, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _load(path: Path, kind: type) -> Any:
    if not path.is_file():
        raise DataError(f"flower bundle {path}: missing (write it with llmqfl.federated.flower.bundles.write_bundles)")
    with path.open("rb") as handle:
        payload = pickle.load(handle)
    bundle = payload.get("bundle") if isinstance(payload, dict) else None
    if payload.get("format") != FORMAT or not isinstance(bundle, kind):
        raise DataError(f"flower bundle {path}: not a {kind.__name__} of format {FORMAT}")
    if isinstance(bundle, _BUNDLES):  # the reading process's stage layer: its config as Settings, built once
        from llmqfl.config import load_settings

        bundle = replace(bundle, config=load_settings(bundle.config))
    return bundle


def write_bundles(prepared: Any, out_dir: Path) -> dict[str, Path]:
    """Split a :class:`llmqfl.federated.run.Prepared` into the server file and one file per client."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n_classes = int(prepared.model.n_classes)
    ids = tuple(sorted(c.client for c in prepared.clients))
    server = ServerBundle(
        arm=prepared.arm,
        seed=prepared.seed,
        base_seed=prepared.base_seed,
        config=prepared.config,
        n_classes=n_classes,
        server=prepared.server,
        plan=prepared.plan,
        weights=np.asarray(prepared.weights, dtype=np.float64),
        fingerprint=prepared.fingerprint,
        client_ids=ids,
    )
    paths = {"server": _dump(out_dir / SERVER_FILE, server)}
    for data in prepared.clients:
        bundle = ClientBundle(prepared.arm, prepared.base_seed, prepared.config, n_classes, data)
        paths[f"client_{data.client}"] = _dump(out_dir / client_file(data.client), bundle)
    return paths


def load_server(bundle_dir: Path) -> ServerBundle:
    return _load(Path(bundle_dir) / SERVER_FILE, ServerBundle)


def load_client(path: Path) -> ClientBundle:
    return _load(Path(path), ClientBundle)
