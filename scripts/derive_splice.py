"""Re-derive ``data/splice.csv``: the UCI primate splice-junction set (StatLog ``dna``), balanced.

Source: Debian's ``r-cran-mlbench`` package, file ``mlbench/data/DNA.rda`` (read with ``pyreadr``).
mlbench stores each 60 bp sequence as 180 binary indicators, 3 per position: A = 100, C = 010,
G = 001, T = 000 (the StatLog encoding; the EI class's GT and the IE class's AG at the junction
confirm it). This script rebuilds the 60-letter sequence and keeps the class names EI, IE, N,
balanced (seeded) to the smallest class. Usage: ``apt-get update && python scripts/derive_splice.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadr
from derive_common import balanced_sample, fetch_deb_member, write_csv

PACKAGE = "r-cran-mlbench"
MEMBER = "usr/lib/R/site-library/mlbench/data/DNA.rda"
SEED = 0
LETTERS = {(1, 0, 0): "A", (0, 1, 0): "C", (0, 0, 1): "G", (0, 0, 0): "T"}


def decode(indicators: np.ndarray) -> list[str]:
    """Rows of 180 indicators -> 60-letter sequences."""
    triples = indicators.reshape(len(indicators), -1, 3)
    return ["".join(LETTERS[tuple(int(v) for v in code)] for code in row) for row in triples]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        frame = pyreadr.read_r(str(fetch_deb_member(PACKAGE, MEMBER, Path(tmp))))["DNA"]
    indicators = frame.drop(columns="Class").astype(int).to_numpy()
    if indicators.shape != (3186, 180):
        raise SystemExit(f"unexpected DNA.rda shape {indicators.shape}")
    table = pd.DataFrame({"item": decode(indicators), "label": frame["Class"].astype(str).str.upper().to_numpy()})
    print("source classes", table["label"].value_counts().to_dict())
    write_csv(balanced_sample(table, per_class=None, seed=SEED), "splice")


if __name__ == "__main__":
    main()
