"""Stage ``data``: load the configured source, split it (train / test / server_val), write the files.

``python -m llmqfl.stages.data --config CFG --out-dir results/{exp}/data`` writes train.parquet,
test.parquet, server_val.parquet (columns row, item, label, group, plus any data.feature_columns)
and meta.json (its ``quality`` block counts the duplicates and conflicting labels removed before
the split, see :mod:`llmqfl.data.quality`; its ``groups`` block the groups of related DNA
sequences that the split keeps whole, see :mod:`llmqfl.data.sequence_groups`). Everything is
computed before the first byte is written, and the folder is swapped in whole, so a failure leaves
no partial output.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmqfl import layout, tracking
from llmqfl.data.prepared import prepare
from llmqfl.data.split import SPLITS
from llmqfl.io import atomic_path
from llmqfl.settings import Settings
from llmqfl.stages._cli import as_settings

log = logging.getLogger(__name__)


def write_outputs(out_dir: Path, tables: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write every file into a temporary folder, then rename it onto ``out_dir`` in one step."""
    import json

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name in SPLITS:
            tables[name].to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / layout.META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def run(config: Settings | Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    """Prepare, write, and log to MLflow; returns meta.json's content."""
    settings = as_settings(config)
    with tracking.stage_run(settings, "data", tags={"llmqfl.source": settings.data.source}) as run_log:
        tables, meta = prepare(settings)
        write_outputs(out_dir, tables, meta)
        # data.kind is the setting (auto, dna, text; a config param already): the decision is data.chosen_kind
        run_log.log_params({"data.chosen_kind": meta["kind"], "data.kind_reason": meta["kind_reason"],
                            "data.classes": ",".join(meta["classes"]),
                            "data.derived_seeds": meta["derived_seeds"]})
        metrics = {f"n_{name}": c["total"] for name, c in meta["counts"].items()}
        metrics |= {f"n_{name}_class_{i}": v
                    for name, c in meta["counts"].items() for i, v in enumerate(c["per_class"])}
        quality = {f"quality_{k}": v for k, v in meta["quality"].items() if isinstance(v, int)}
        groups = {f"groups_{k}": meta["groups"][k] for k in ("n_groups", "largest", "tied_items")}
        run_log.log_metrics({**metrics, **quality, **groups, "n_classes": meta["n_classes"]})
        run_log.log_artifact(out_dir, "data")
    log.info("data kind %s: %s (data.kind=%s)", meta["kind"], meta["kind_reason"], settings.data.kind)
    lengths = meta["lengths"]
    if meta["kind"] == "dna" and lengths["variable"]:
        log.info("variable-length DNA, %d to %d bases: one-hot features pad with unknown bases (N) to %d; "
                 "k-mer features (qfl.features.source: kmer) need no padding", lengths["min"], lengths["max"],
                 lengths["max"])
    quality = meta["quality"]
    log.info("deduplicated %s: %d items in, %d duplicate(s) dropped, %d item(s) under conflicting labels "
             "(data.conflicts=%s, %d row(s) dropped), %d distinct items before data.max_items",
             meta["dataset"], quality["items_in"], quality["duplicates_dropped"], quality["conflicting_items"],
             quality["conflicts"], quality["conflicts_dropped"], quality["items_out"])
    groups = meta["groups"]
    if groups["grouped"]:
        log.info("grouped related DNA sequences (data.leakage k=%d, min_shared_kmers=%d): %d items in %d groups, "
                 "largest %d, %d item(s) tied to another; each group stays in one split", groups["k"],
                 groups["min_shared_kmers"], groups["n_items"], groups["n_groups"], groups["largest"],
                 groups["tied_items"])
    else:
        log.info("no sequence grouping for %s items: %d items, one group each", meta["kind"], groups["n_items"])
    log.info("wrote %s: %s", out_dir, {name: c["total"] for name, c in meta["counts"].items()})
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    from llmqfl.stages._cli import run_stage, stage_parser

    parser = stage_parser("data", "Load the data source and write the server's train/test/server_val split.")
    parser.add_argument("--out-dir", required=True, type=Path, help="results/{exp}/data")

    def body(args: argparse.Namespace, settings: Settings) -> None:
        run(settings, args.out_dir)

    return run_stage("data", parser, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
