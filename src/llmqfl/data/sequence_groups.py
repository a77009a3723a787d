"""Groups of related DNA sequences, so that a split can keep each group on one side.

Two windows cut from the same repeat, or one window and its reverse complement, are near-copies
for a k-mer or one-hot learner: one in train and one in test inflates test accuracy. Items are
tied when they are reverse complements (or copies) of each other, or when they share at least
``min_shared_kmers`` distinct canonical k-mers (a k-mer and its reverse complement count as one,
so both strands count); groups are the connected components of that relation (union-find).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmqfl.settings import LeakageSettings

K = 20
MIN_SHARED_KMERS = 50
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


@dataclass(frozen=True)
class Leakage:
    """The ``data.leakage`` settings: k-mer length and the shared-k-mer count that ties two items."""

    k: int = K
    min_shared_kmers: int = MIN_SHARED_KMERS

    @classmethod
    def from_settings(cls, leakage: LeakageSettings) -> Leakage:
        """The config's ``data.leakage`` section."""
        return cls(k=int(leakage.k), min_shared_kmers=int(leakage.min_shared_kmers))


def reverse_complement(seq: str) -> str:
    """The other strand, read 5' to 3'."""
    return seq.translate(_COMPLEMENT)[::-1]


def canonical_kmers(seq: str, k: int) -> set[str]:
    """Distinct k-mers of ``seq``, each as min(k-mer, its reverse complement); k-mers with N are skipped.

    An N run says nothing about shared sequence, and counting it would tie unrelated windows.
    """
    seq = seq.upper()
    rc, n = reverse_complement(seq), len(seq)
    kmers = set()
    for p in range(n - k + 1):
        forward = seq[p : p + k]
        if "N" not in forward:
            kmers.add(min(forward, rc[n - p - k : n - p]))
    return kmers


def shared_kmer_pairs(items: Sequence[str], k: int) -> Counter[tuple[int, int]]:
    """Distinct canonical k-mers shared by each pair ``(i, j)``, ``i < j``, that shares any (k-mer -> items index)."""
    index: defaultdict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        for kmer in canonical_kmers(item, k):
            index[kmer].append(i)
    pairs: Counter[tuple[int, int]] = Counter()
    for members in index.values():
        for a, i in enumerate(members):
            for j in members[a + 1 :]:
                pairs[(i, j)] += 1
    return pairs


def sequence_groups(items: Sequence[str], leakage: Leakage | None = None) -> np.ndarray:
    """A group id per item (0..G-1, numbered by each group's first item), ties as in the module docstring."""
    leakage = leakage or Leakage()
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first_of: dict[str, int] = {}
    for i, item in enumerate(items):
        strand = item.upper()
        j = first_of.setdefault(min(strand, reverse_complement(strand)), i)
        union(i, j)
    for (i, j), shared in shared_kmer_pairs(items, leakage.k).items():
        if shared >= leakage.min_shared_kmers:
            union(i, j)
    roots = np.array([find(i) for i in range(len(items))], dtype=np.int64)
    return np.unique(roots, return_inverse=True)[1].astype(np.int64)


def singleton_groups(n: int) -> np.ndarray:
    """One group per item: what items that are not DNA get (nothing ties them)."""
    return np.arange(n, dtype=np.int64)


def group_summary(groups: np.ndarray, leakage: Leakage | None) -> dict[str, int | bool | None]:
    """meta.json's ``groups`` block: the settings, how many groups, the largest, how many items are tied."""
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=np.int64)
    sizes = sizes[sizes > 0]
    return {
        "grouped": leakage is not None,
        "k": leakage.k if leakage else None,
        "min_shared_kmers": leakage.min_shared_kmers if leakage else None,
        "n_items": int(sizes.sum()),
        "n_groups": len(sizes),
        "largest": int(sizes.max()) if len(sizes) else 0,
        "tied_items": int(sizes[sizes > 1].sum()),
    }
