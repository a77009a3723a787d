"""Stage CLI: base-model embeddings of every train, test and server_val item.

    python -m llmqfl.stages.embed --config CFG --data-dir results/EXP/data --out results/EXP/features/embeddings.parquet
Output columns: split (train|test|server_val), row, embedding (list<float>).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from llmqfl import layout
from llmqfl.config import derive_seed
from llmqfl.errors import ConfigError, DataError
from llmqfl.file_contract import DATA_SPLIT
from llmqfl.io import read_checked_parquet, read_json, write_parquet
from llmqfl.llm.embeddings import base_embeddings
from llmqfl.llm.model_assets import DEFAULT_MODELS_ROOT
from llmqfl.llm.token_inputs import MIN_MAX_LENGTH
from llmqfl.settings import Settings
from llmqfl.stages._cli import run_stage, stage_parser
from llmqfl.tracking import stage_run

SPLITS = ("train", "test", "server_val")


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("embed", __doc__ or "")
    p.add_argument("--data-dir", required=True, help="folder with train/test/server_val.parquet and meta.json")
    p.add_argument("--out", required=True)
    p.add_argument("--models-root", default=str(DEFAULT_MODELS_ROOT))
    return p


def body(args: argparse.Namespace, settings: Settings) -> None:
    llm = settings.llm
    if llm.max_length < MIN_MAX_LENGTH:
        raise ConfigError(f"config error: llm.max_length: {llm.max_length} is less than the minimum of 8")
    data_dir = Path(args.data_dir)
    meta_path = data_dir / layout.META
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: file not found")
    kind = read_json(meta_path).get("kind")
    frames = {split: _read(data_dir / layout.split_name(split)) for split in SPLITS}
    torch.set_num_threads(int(llm.threads))
    with stage_run(settings, "embed", name="embed") as tracker:
        items = [item for frame in frames.values() for item in frame["item"].astype(str)]
        vectors = base_embeddings(items, model=llm.model, kind=kind, max_length=llm.max_length,
                                  kmer=llm.kmer, batch_size=64, models_root=args.models_root,
                                  dna_tokens=llm.dna_tokens,
                                  seed=derive_seed(settings.seed, "distill", "init"))
        parts, offset = [], 0
        for split, frame in frames.items():
            block = vectors[offset : offset + len(frame)]
            offset += len(frame)
            parts.append(pd.DataFrame({"split": split, "row": frame["row"].astype("int64").to_numpy(),
                                       "embedding": list(block.astype(np.float32))}))
        table = pd.concat(parts, ignore_index=True)
        write_parquet(args.out, table)
        dims = len(table["embedding"].iloc[0]) if len(table) else 0
        tracker.log_metrics({"items": len(table), "dims": dims})


def _read(path: Path) -> pd.DataFrame:
    return read_checked_parquet(path, ("row", "item"), DATA_SPLIT)


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("embed", build_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
