"""Stage ``partition``: share the server's training items out over the federated clients.

``python -m llmqfl.stages.partition --config CFG --data-dir results/{exp}/data --out-dir
results/{exp}/partitions`` writes client_{k}.parquet (row in train.parquet, item, label, split =
the client's local train/test) and partitions.json. The folder is swapped in whole on success.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from llmqfl import layout, tracking
from llmqfl.data.partitioners import partition_as_configured
from llmqfl.errors import DataError
from llmqfl.file_contract import DATA_SPLIT
from llmqfl.io import atomic_path, read_checked_parquet, read_json
from llmqfl.settings import Settings
from llmqfl.stages._cli import as_settings

log = logging.getLogger(__name__)


def read_train(data_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """train.parquet and meta.json of the data stage; a missing file is a :class:`DataError` naming it."""
    train_path, meta_path = data_dir / layout.split_name("train"), data_dir / layout.META
    for path in (train_path, meta_path):
        if not path.is_file():
            raise DataError(f"--data-dir: {path} not found (run the data stage first)")
    try:
        return read_checked_parquet(train_path, ("row", "label"), DATA_SPLIT), read_json(meta_path)
    except OSError as exc:
        raise DataError(f"--data-dir: cannot read {data_dir}: {str(exc).splitlines()[0]}") from exc


def prepare(config: Settings | Mapping[str, Any], data_dir: Path) -> tuple[list[pd.DataFrame], dict[str, Any]]:
    """Client tables and partitions.json's content (no file output)."""
    train, meta = read_train(data_dir)
    return partition_as_configured(train, as_settings(config), meta["n_classes"])


def write_outputs(out_dir: Path, tables: list[pd.DataFrame], summary: dict[str, Any]) -> None:
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for k, table in enumerate(tables):
            table.to_parquet(tmp / layout.partition_name(k), index=False)
        (tmp / layout.PARTITION_SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def run(config: Settings | Mapping[str, Any], data_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Partition, write, log to MLflow; returns partitions.json's content."""
    settings = as_settings(config)
    kind = settings.federation.partition.kind
    with tracking.stage_run(settings, "partition", tags={"llmqfl.partition": kind}) as run_log:
        tables, summary = prepare(settings, data_dir)
        write_outputs(out_dir, tables, summary)
        run_log.log_params({"partition.seed": summary["partition_seed"]})
        sizes = [c["size"] for c in summary["clients"]]
        run_log.log_metrics({"n_clients": len(sizes), "min_client_size": min(sizes), "max_client_size": max(sizes),
                             **{f"client_{c['client']}_size": c["size"] for c in summary["clients"]},
                             **{f"client_{c['client']}_n_test": c["n_test"] for c in summary["clients"]}})
        run_log.log_artifact(out_dir, "partitions")
    log.info("wrote %d clients to %s, sizes %s", len(tables), out_dir, [len(t) for t in tables])
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    from llmqfl.stages._cli import run_stage, stage_parser

    parser = stage_parser("partition", "Partition the training set over the federated clients.")
    parser.add_argument("--data-dir", required=True, type=Path, help="results/{exp}/data")
    parser.add_argument("--out-dir", required=True, type=Path, help="results/{exp}/partitions")

    def body(args: argparse.Namespace, settings: Settings) -> None:
        run(settings, args.data_dir, args.out_dir)

    return run_stage("partition", parser, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
