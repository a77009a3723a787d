"""Item encoders: k-mers (LLM input), one-hot DNA, and the PCA angle encoder (quantum features)."""

from __future__ import annotations

import numpy as np
import pytest

from llmqfl.config import load_settings
from llmqfl.data import AngleEncoder, kmers, load_source, onehot


def test_kmers_are_overlapping_and_space_joined() -> None:
    assert kmers("ACGTACG", k=6) == "ACGTAC CGTACG"
    assert kmers("acgt", k=2) == "AC CG GT"
    assert kmers("ACG", k=6) == "ACG"
    assert len(kmers("A" * 200).split()) == 195
    with pytest.raises(ValueError, match="k must be >= 1"):
        kmers("ACGT", k=0)


def test_onehot_channels_padding_and_unknown_letters() -> None:
    # Execute
    encoded = onehot(["ACGT", "NGa"], length=4)
    # Assert
    assert encoded.shape == (2, 16)
    first = encoded[0].reshape(4, 4)
    np.testing.assert_array_equal(first, np.eye(4))
    second = encoded[1].reshape(4, 4)
    np.testing.assert_array_equal(second[0], 0)  # N
    np.testing.assert_array_equal(second[1], [0, 0, 1, 0])  # G
    np.testing.assert_array_equal(second[2], [1, 0, 0, 0])  # a, case-insensitive
    np.testing.assert_array_equal(second[3], 0)  # padding


def test_onehot_defaults_to_the_longest_and_truncates() -> None:
    assert onehot(["AC", "ACGTA"]).shape == (2, 20)
    assert onehot(["ACGTA"], length=2).tolist() == [[1, 0, 0, 0, 0, 1, 0, 0]]


def test_angle_encoder_maps_fitted_data_onto_zero_to_pi() -> None:
    # Prepare: real DNA one-hot
    data = load_source(load_settings({"data": {"source": "splice", "max_items": 120}}).data, seed=0)
    features = onehot(data.frame["item"].tolist())
    # Execute
    angles = AngleEncoder(4).fit_transform(features)
    # Assert
    assert angles.shape == (120, 4)
    np.testing.assert_allclose(angles.min(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(angles.max(axis=0), np.pi, atol=1e-12)


def test_angle_encoder_clips_other_data_and_is_deterministic() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    fit_on, other = rng.normal(size=(50, 10)), rng.normal(scale=5.0, size=(50, 10))
    encoder = AngleEncoder(3).fit(fit_on)
    # Execute
    angles = encoder.transform(other)
    # Assert
    assert angles.min() == 0.0 and angles.max() == pytest.approx(np.pi)
    assert ((angles == 0.0) | np.isclose(angles, np.pi)).any(axis=0).all()
    np.testing.assert_array_equal(AngleEncoder(3).fit(fit_on).transform(other), angles)


def test_angle_encoder_with_fewer_items_than_components_pads_constant_angles() -> None:
    # Prepare: a client with 2 items cannot give 4 PCA components
    features = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 2.0]])
    # Execute
    angles = AngleEncoder(4).fit_transform(features)
    # Assert
    assert angles.shape == (2, 4)
    assert sorted(angles[:, 0]) == [0.0, pytest.approx(np.pi)]
    np.testing.assert_array_equal(angles[:, 1:], 0.0)


def test_angle_encoder_validates() -> None:
    with pytest.raises(ValueError, match="n_components"):
        AngleEncoder(0)
    with pytest.raises(RuntimeError, match="before fit"):
        AngleEncoder(2).transform(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2-D"):
        AngleEncoder(2).fit(np.zeros(5))
