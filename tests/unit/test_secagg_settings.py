"""SecAgg+ settings (``federation.flower.secagg``): off by default, refused in one line when Flower's
protocol cannot honour them, and the tolerance the docs state.

What a user relies on: a SecAgg+ config that cannot work fails at validation, naming the field, not
after the SuperNodes started; the stated tolerance follows from the clipping and quantisation ranges.
"""

from __future__ import annotations

import pytest

from llmqfl.config import load_settings
from llmqfl.errors import ConfigError
from llmqfl.federated.flower.secagg import secagg_settings, tolerance, weight_ratios
from llmqfl.settings import SecAggSettings, Settings


def _config(secagg: dict, privacy: dict | None = None, **federation) -> Settings:
    fed = {"transport": "flower", "n_clients": 5, "flower": {"secagg": {"enabled": True, **secagg}}, **federation}
    return load_settings({"federation": fed, "privacy": privacy or {}})


def _secagg(num_shares: int, reconstruction_threshold: int, clipping_range: float,
            quantization_range: int) -> SecAggSettings:
    return SecAggSettings(True, num_shares, reconstruction_threshold, clipping_range, quantization_range)


def test_secagg_is_off_by_default_and_filled_from_the_schema_when_on() -> None:
    assert secagg_settings(load_settings({"federation": {"transport": "flower"}})) is None
    assert secagg_settings(_config({})) == _secagg(3, 2, 8.0, 2**22)


def test_an_integer_clipping_range_reaches_flower_as_a_float() -> None:
    # Flower's SecAgg+ mod refuses a setup message whose clipping range is not exactly a float
    settings = secagg_settings(_config({"clipping_range": 8}))
    assert settings is not None and type(settings.clipping_range) is float and settings.clipping_range == 8.0


@pytest.mark.parametrize(
    ("secagg", "federation", "message"),
    [
        ({}, {"transport": "inprocess"}, "secagg.enabled: SecAgg+ runs only over federation.transport flower"),
        ({"num_shares": 6}, {}, "federation.flower.secagg.num_shares: 6 exceeds federation.n_clients (5)"),
        ({"num_shares": 4, "reconstruction_threshold": 4}, {},
         "federation.flower.secagg.reconstruction_threshold: 4 must be below num_shares (4)"),
        ({"quantization_range": 2**30}, {}, "secagg.quantization_range: times federation.n_clients (5)"),
        ({}, {"aggregator": "median"}, "federation.aggregator must be fedavg or mean"),
        ({}, {"privacy": {"quantum": {"enabled": True}}}, "privacy.quantum clips and noises each client's update"),
    ],
)
def test_secagg_settings_flower_cannot_honour_are_one_line(secagg: dict, federation: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(secagg, **federation)
    text = str(info.value)
    assert message in text and "\n" not in text and text.startswith("config error: ")


def test_tolerance_is_three_steps_per_client_over_the_summed_weight_ratios() -> None:
    settings = _secagg(3, 2, clipping_range=8.0, quantization_range=2**22)
    step = 2 * 8.0 / 2**22
    # equal weights: r_i = 1, so 3 N c / (Q N) = 1.5 steps whatever N
    assert tolerance(settings, [1, 1, 1, 1]) == pytest.approx(1.5 * step)
    # train sizes 6..9: r_i = n_i / 9 rounded to 1/Q, so the bound grows by 9 * 4 / 30
    assert weight_ratios([6, 9], 2**22)[1] == 1.0
    assert tolerance(settings, [6, 7, 8, 9]) == pytest.approx(1.5 * step * 4 * 9 / 30, rel=1e-6)
    # a wider clipping range or a coarser grid loosens it in proportion
    assert tolerance(_secagg(3, 2, 16.0, 2**22), [1, 1]) == pytest.approx(2 * tolerance(settings, [1, 1]))
    assert tolerance(_secagg(3, 2, 8.0, 2**21), [1, 1]) == pytest.approx(2 * tolerance(settings, [1, 1]))
