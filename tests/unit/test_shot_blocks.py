"""Shot draws and counts run a block of rows at a time; the block size never changes a draw or a count."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.primitives import BitArray

from llmqfl.quantum.simulators import aer_sampler
from llmqfl.quantum.training import primitive


def _distributions(rng: np.random.Generator, rows: int, n_outcomes: int) -> np.ndarray:
    probabilities = rng.random((rows, n_outcomes)) ** 3
    probabilities[rng.random(probabilities.shape) < 0.2] = 0.0  # impossible outcomes, repeated boundaries
    probabilities[:, -1] += 1e-3
    return probabilities / probabilities.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(("n_outcomes", "shots"), [(2, 7), (16, 100), (64, 33), (100, 50)])
def test_sample_outcomes_are_the_same_draws_whatever_the_block(monkeypatch: pytest.MonkeyPatch, n_outcomes: int,
                                                              shots: int) -> None:
    # Prepare: 2 x 9 distributions; one row per block vs every row in one block
    probabilities = _distributions(np.random.default_rng(4), 18, n_outcomes).reshape(2, 9, n_outcomes)
    monkeypatch.setattr(aer_sampler, "_SAMPLE_BLOCK", 1)
    # Act
    small = aer_sampler.sample_outcomes(probabilities, shots, np.random.default_rng(9))
    monkeypatch.setattr(aer_sampler, "_SAMPLE_BLOCK", 1 << 30)
    whole = aer_sampler.sample_outcomes(probabilities, shots, np.random.default_rng(9))
    # Assert: identical draws, and each is the inverse CDF of the generator's uniforms in row order
    uniforms = np.random.default_rng(9).random((18, shots))
    cdf = np.cumsum(probabilities.reshape(18, n_outcomes), axis=1)
    cdf /= cdf[:, -1:]
    expected = np.array([np.searchsorted(cdf[r, :-1], uniforms[r], side="right") for r in range(18)])
    assert small.shape == (2, 9, shots) and np.array_equal(small, whole)
    np.testing.assert_array_equal(small.reshape(18, shots), expected)
    assert probabilities.reshape(18, -1)[np.arange(18)[:, None], small.reshape(18, shots)].min() > 0


@pytest.mark.parametrize(("n_bits", "shots"), [(1, 5), (4, 1024), (10, 33), (16, 20)])
def test_bitstring_counts_are_the_same_whatever_the_block(monkeypatch: pytest.MonkeyPatch, n_bits: int,
                                                          shots: int) -> None:
    # Prepare: (3, 4) pubs of random registers, big-endian bytes as BitArray stores them
    rng = np.random.default_rng(n_bits)
    values = rng.integers(0, 2**n_bits, (3, 4, shots))
    n_bytes = -(-n_bits // 8)
    packed = ((values[..., None] >> (8 * np.arange(n_bytes - 1, -1, -1))) & 0xFF).astype(np.uint8)
    bits = BitArray(packed, n_bits)
    monkeypatch.setattr(primitive, "_COUNT_BLOCK", 1)
    # Act
    small = primitive.bitstring_counts(bits, n_bits)
    monkeypatch.setattr(primitive, "_COUNT_BLOCK", 1 << 30)
    whole = primitive.bitstring_counts(bits, n_bits)
    # Assert: per-row histograms of the register values
    expected = np.array([np.bincount(row, minlength=2**n_bits) for row in values.reshape(12, shots)])
    assert small.shape == (3, 4, 2**n_bits)
    np.testing.assert_array_equal(small.reshape(12, -1), expected)
    np.testing.assert_array_equal(whole, small)
