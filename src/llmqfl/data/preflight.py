"""A cheap data check the Snakefile runs at parse time, so bad data fails before any job starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmqfl.config import derive_seed, validate_config
from llmqfl.data.partition import MIN_CLIENT_ITEMS
from llmqfl.data.sources import ONLINE_SOURCES, load_source
from llmqfl.data.split import split_sizes
from llmqfl.errors import DataError


def check_config_data(config: Mapping[str, Any]) -> None:
    """Raise :class:`DataError` / :class:`ConfigError` if the configured data cannot feed the pipeline.

    Reads only local files (embedded CSVs or ``data.path`` for the csv source); online sources are
    skipped (their check happens in the data stage). Catches: unreadable csv, missing column, one
    class, empty items, and fewer training items than ``2 x federation.n_clients``.
    """
    config = validate_config(config)
    data_cfg = config["data"]
    if data_cfg["source"] in ONLINE_SOURCES:
        return
    data = load_source(data_cfg, seed=derive_seed(config["seed"], "data", "subsample"))
    if data.n_classes < 2 or min(data.class_counts()) == 0:
        raise DataError(f"data.source {data_cfg['source']}: fewer than 2 classes after data.max_items")
    sizes = split_sizes(len(data.frame), test_fraction=data_cfg["test_fraction"],
                        server_val_fraction=data_cfg["server_val_fraction"])
    n_clients = config["federation"]["n_clients"]
    if sizes.train < MIN_CLIENT_ITEMS * n_clients:
        raise DataError(f"more clients than items: federation.n_clients={n_clients} needs at least "
                        f"{MIN_CLIENT_ITEMS * n_clients} training items ({MIN_CLIENT_ITEMS} each), but "
                        f"{len(data.frame)} items (data.max_items={data_cfg['max_items']}) leave {sizes.train} "
                        f"after the test and server_val splits")
