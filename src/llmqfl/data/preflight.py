"""Cheap checks the Snakefile runs at parse time, so bad data or a bad model stops before any job starts.

The data check repeats exactly what the data and partition stages will compute (same loader, same
deduplication, same seeded split and partition draw; only labels are touched), so a config that
passes here cannot fail there for a data reason, and one that fails here fails with the stage's own
message.
"""

from __future__ import annotations

import re
from pathlib import Path

from llmqfl.config import derive_seed
from llmqfl.data.hub import hub_reachable
from llmqfl.data.labelled import LabelledData
from llmqfl.data.partitioners import MIN_CLIENT_ITEMS, partition_indices
from llmqfl.data.sequence_groups import Leakage
from llmqfl.data.sources import load_source
from llmqfl.data.split import split_data, split_sizes
from llmqfl.errors import ConfigError, DataError, OfflineError
from llmqfl.registry import trait
from llmqfl.settings import Settings

# A Hugging Face hub id: "name" or "owner/name" of letters, digits, '-', '_', '.' (no '..', no leading '.').
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def preflight(settings: Settings) -> None:
    """Everything the Snakefile checks before the DAG, on a validated config.

    The schema and cross-field rules were checked when ``settings`` were built
    (:func:`llmqfl.config.load_settings`); here the data (:func:`check_config_data`), ``llm.model``
    (:func:`check_model`) and, for a kind with ``device_checks``, the backend's device and account.
    """
    check_config_inputs(settings)
    if trait("backend", settings.backend.kind, "device_checks"):  # the ideal aer has none: no qiskit import
        from llmqfl.quantum.backends.backend_config import check_backend_config

        check_backend_config(settings)


def check_config_inputs(settings: Settings) -> None:
    """The data (:func:`check_config_data`) and ``llm.model`` (:func:`check_model`) of a config."""
    check_config_data(settings)
    check_model(settings.llm.model)


def check_config_data(settings: Settings) -> None:
    """Raise :class:`DataError` / :class:`ConfigError` if the configured data cannot feed the pipeline.

    Reads only local files (embedded CSVs, ``data.path`` for the csv source or a local copy of an
    online source); an online source without ``data.path`` is only checked for a reachable hub
    (the download itself happens in the data stage). Catches: unreadable csv, missing column, one
    class, empty items, non-finite feature values, conflicting labels, a class too small for the
    test/server_val/train split, fewer training items than ``2 x federation.n_clients``, and a
    partition draw (Dirichlet label skew) that cannot give every client its minimum.
    """
    settings_data = settings.data
    if trait("data_source", settings_data.source, "online") and not settings_data.path:
        if not hub_reachable():
            raise OfflineError(f"data.source {settings_data.source}: the Hugging Face hub is not reachable (offline "
                               f"or HF_HUB_OFFLINE set) and data.path is not set; set data.path to a local copy")
        return
    data = load_source(settings_data, seed=derive_seed(settings.seed, "data", "subsample"))
    if data.n_classes < 2 or min(data.class_counts()) == 0:
        raise DataError(f"data.source {settings_data.source}: fewer than 2 classes after data.max_items")
    sizes = split_sizes(len(data.frame), test_fraction=settings_data.test_fraction,
                        server_val_fraction=settings_data.server_val_fraction)
    federation = settings.federation
    n_clients = federation.n_clients
    if sizes.train < MIN_CLIENT_ITEMS * n_clients:
        raise DataError(f"more clients than items: federation.n_clients={n_clients} needs at least "
                        f"{MIN_CLIENT_ITEMS * n_clients} training items ({MIN_CLIENT_ITEMS} each), but "
                        f"{len(data.frame)} items (data.max_items={settings_data.max_items}) leave {sizes.train} "
                        f"after the test and server_val splits")
    tables = split_data(data, test_fraction=settings_data.test_fraction,
                        server_val_fraction=settings_data.server_val_fraction,
                        seed=derive_seed(settings.seed, "data", "split"),
                        leakage=Leakage.from_settings(settings_data.leakage))
    partition_indices(tables["train"]["label"].to_numpy(), kind=federation.partition.kind,
                      n_clients=n_clients, alpha=federation.partition.alpha,
                      seed=derive_seed(settings.seed, "partition"))
    check_feature_source(settings, data)


def check_feature_source(settings: Settings, data: LabelledData) -> None:
    """A DNA-only quantum feature source (onehot, kmer) on text data stops here, not in the qfl stage."""
    source = settings.qfl.features.source
    if source == "auto" or data.kind == "dna":
        return
    from llmqfl.registry import get

    if getattr(get("encoder", source), "dna_only", False):
        raise ConfigError(f"config error: qfl.features.source: {source} needs DNA items, but the data are "
                          f"{data.kind} ({data.kind_reason}); use auto or embedding, or set data.kind: dna")


def check_model(model: str) -> None:
    """``llm.model`` must be an embedded name, a local Hugging Face folder, or a hub id the machine can get.

    No network call unless the name is a well-formed hub id that is not cached (then one short TCP
    probe, as the distill stage would make), so a typo stops the run at parse time, not after the
    data and partition stages.
    """
    from llmqfl.llm import model_assets

    if model_assets.is_embedded(model):
        return
    local = Path(model).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise DataError(f"llm.model: directory {local} has no config.json (not a Hugging Face model folder)")
        return
    embedded = ", ".join(model_assets.EMBEDDED)
    if not _HUB_ID.match(model) or ".." in model:
        raise ConfigError(f"config error: llm.model: {model!r} is neither an embedded model ({embedded}), "
                          f"an existing local folder, nor a Hugging Face hub id (owner/name)")
    if not (model_assets._hub_cached(model) or model_assets._hub_reachable()):
        raise ConfigError(f"config error: llm.model: {model!r} is not an embedded model ({embedded}) or a local "
                          f"folder, and the Hugging Face hub is not reachable (offline) nor is it cached")

