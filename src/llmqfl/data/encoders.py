"""Item encoders: DNA k-mers for the LLM, one-hot and k-mer spectra for quantum features, the angle encoder.

The paper tokenises DNA as overlapping 6-mers joined by spaces (stride 1), and feeds the VQC with
one-hot DNA reduced by PCA to ``n_qubits`` dimensions and min-max scaled to angles. The k-mer
spectrum (each window's overlapping k-mer frequencies) is the alternative raw feature: it is what
separates coding from intergenic DNA (codon usage), where one-hot PCA keeps mostly per-position noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_BASES = {"A": 0, "C": 1, "G": 2, "T": 3}


def kmers(sequence: str, k: int = 6) -> str:
    """Overlapping ``k``-mers of ``sequence`` (stride 1), space-joined; a shorter sequence is one token."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    sequence = sequence.strip().upper()
    if len(sequence) <= k:
        return sequence
    return " ".join(sequence[i : i + k] for i in range(len(sequence) - k + 1))


def onehot(sequences: Sequence[str], *, length: int | None = None) -> np.ndarray:
    """One-hot DNA as an ``(n, 4 * length)`` float array, channels A, C, G, T per position.

    N or any other letter is all zeros; sequences are cut or zero-padded to ``length`` (default: the
    longest), so every row has the same width.
    """
    sequences = [s.strip().upper() for s in sequences]
    width = max((len(s) for s in sequences), default=0) if length is None else length
    if width < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    table = np.full(256, -1, dtype=np.int64)
    for base, channel in _BASES.items():
        table[ord(base)] = channel
    out = np.zeros((len(sequences), width, 4), dtype=np.float64)
    for i, seq in enumerate(sequences):
        codes = table[np.frombuffer(seq[:width].encode("ascii", "replace"), dtype=np.uint8)]
        positions = np.flatnonzero(codes >= 0)
        out[i, positions, codes[positions]] = 1.0
    return out.reshape(len(sequences), 4 * width)


def kmer_spectrum(sequences: Sequence[str], k: int = 3) -> np.ndarray:
    """Overlapping ``k``-mer frequencies as an ``(n, 4**k)`` float array (columns in ACGT order).

    A k-mer with any letter other than A/C/G/T is skipped; each row sums to 1 (0 when no k-mer counts),
    so windows of different lengths are comparable.
    """
    if not 1 <= k <= 8:
        raise ValueError(f"k must be 1..8, got {k}")
    table = np.full(256, -1, dtype=np.int64)
    for base, channel in _BASES.items():
        table[ord(base)] = channel
    out = np.zeros((len(sequences), 4**k), dtype=np.float64)
    for i, seq in enumerate(sequences):
        codes = table[np.frombuffer(str(seq).strip().upper().encode("ascii", "replace"), dtype=np.uint8)]
        n = len(codes) - k + 1
        if n < 1:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(codes, k)
        valid = (windows >= 0).all(axis=1)
        index = windows[valid] @ (4 ** np.arange(k - 1, -1, -1))
        counts = np.bincount(index, minlength=4**k).astype(np.float64)
        total = counts.sum()
        out[i] = counts / total if total else counts
    return out


class AngleEncoder:
    """PCA to ``n_components`` then min-max scaling to ``[0, pi]``: rotation angles for a feature map.

    Fit on the data the config names (pooled training items, or one client's items); ``transform``
    clips other data into ``[0, pi]``. With fewer items or features than components, the missing
    components are constant 0 (the PCA cannot produce them).
    """

    def __init__(self, n_components: int, *, low: float = 0.0, high: float = float(np.pi)) -> None:
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if not high > low:
            raise ValueError("high must be > low")
        self.n_components = n_components
        self.low, self.high = low, high
        self.pca_ = None
        self.min_: np.ndarray | None = None
        self.max_: np.ndarray | None = None

    def fit(self, features: np.ndarray) -> AngleEncoder:
        """Learn the PCA and the per-component range from ``features`` (n_items x n_features)."""
        features = self._check(features)
        if len(features) < 1:
            raise ValueError("AngleEncoder.fit needs at least one item")
        from sklearn.decomposition import PCA
        from threadpoolctl import threadpool_limits

        # n centred items span at most n - 1 directions: a further component is rounding noise
        usable = min(self.n_components, max(len(features) - 1, 1), features.shape[1])
        # one BLAS thread: an SVD of ~1,000 x 64 takes ~0.03 s so, but seconds with OpenBLAS's
        # threads spinning on a busy machine (measured 3.4 s on the shared 2-core machine)
        with threadpool_limits(limits=1, user_api="blas"):
            self.pca_ = PCA(n_components=usable, svd_solver="full").fit(features)
        projected = self._project(features)
        self.min_, self.max_ = projected.min(axis=0), projected.max(axis=0)
        span = self.max_ - self.min_
        flat = span <= 1e-9 * max(float(span.max()), 1e-300)  # rounding noise, not a direction
        self.max_ = np.where(flat, self.min_, self.max_)
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Angles in ``[low, high]`` for each item; values outside the fitted range are clipped."""
        if self.pca_ is None or self.min_ is None or self.max_ is None:
            raise RuntimeError("AngleEncoder.transform called before fit")
        projected = self._project(self._check(features))
        span = self.max_ - self.min_
        unit = np.divide(projected - self.min_, span, out=np.zeros_like(projected), where=span > 0)
        return self.low + (self.high - self.low) * np.clip(unit, 0.0, 1.0)

    def fit_transform(self, features: np.ndarray) -> np.ndarray:
        return self.fit(features).transform(features)

    def _project(self, features: np.ndarray) -> np.ndarray:
        projected = self.pca_.transform(features)
        missing = self.n_components - projected.shape[1]
        return np.pad(projected, ((0, 0), (0, missing))) if missing else projected

    @staticmethod
    def _check(features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2:
            raise ValueError(f"features must be 2-D (items x features), got shape {features.shape}")
        return features
