"""The statistics a decisive claims table needs: Holm's correction, paired t-tests, the minimal detectable
effect of a replicate count, and bootstrap intervals for counts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from llmqfl.evaluation import stats as llmqfl_stats
from llmqfl.evaluation.stats import (
    bootstrap_ci,
    holm,
    minimal_detectable_effect,
    normal_mde,
    paired_t_test,
    summarise,
)


def holm_by_definition(p_values: list[float]) -> list[float]:
    """Holm written from its definition, loop by loop: adj p_(i) = max_{j<=i} min(1, (m - j + 1) p_(j))."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order, start=1):
        running = max(running, min(1.0, (m - rank + 1) * p_values[index]))
        adjusted[index] = running
    return adjusted


# --- holm ---------------------------------------------------------------------------------------------------

def test_holm_matches_a_hand_computed_example_in_the_input_order() -> None:
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_is_monotone_in_the_raw_p() -> None:
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = rng.uniform(0, 0.2, size=int(rng.integers(1, 12))).tolist()
        adjusted = holm(p)
        assert adjusted == pytest.approx(holm_by_definition(p))
        ranked = sorted(zip(p, adjusted, strict=True))
        assert all(a[1] <= b[1] for a, b in itertools.pairwise(ranked))
        assert all(raw <= adj <= 1.0 for raw, adj in zip(p, adjusted, strict=True))


def test_holm_leaves_nan_as_nan_and_does_not_count_it() -> None:
    with_nan = holm([0.01, math.nan, 0.04, None, 0.03, 0.005])
    assert math.isnan(with_nan[1]) and math.isnan(with_nan[3])
    assert [with_nan[i] for i in (0, 2, 4, 5)] == pytest.approx(holm([0.01, 0.04, 0.03, 0.005]))
    assert holm([]) == [] and all(math.isnan(v) for v in holm([math.nan, math.nan]))


def test_holm_is_not_benjamini_hochberg_and_is_never_below_it() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    bh = stats.false_discovery_control(p, method="bh")
    assert bh == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert holm(p) != pytest.approx(bh.tolist())
    assert all(h >= b for h, b in zip(holm(p), bh, strict=True))


def test_holm_refuses_p_values_outside_0_1() -> None:
    with pytest.raises(ValueError, match="p_values"):
        holm([0.2, 1.5])


# --- paired_t_test ------------------------------------------------------------------------------------------

def test_paired_t_test_is_scipys_paired_test_with_the_summary_interval() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.7, 0.05, 5), rng.normal(0.65, 0.05, 5)
    mean, low, high, p, n = paired_t_test((a - b).tolist())
    summary = summarise((a - b).tolist())
    assert n == 5 and mean == pytest.approx(float(np.mean(a - b)))
    assert (low, high) == pytest.approx((summary.low, summary.high))
    assert p == pytest.approx(float(stats.ttest_rel(a, b).pvalue))


def test_paired_t_test_p_below_005_exactly_when_the_interval_excludes_0() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        result = paired_t_test(rng.normal(0.3, 1.0, 4).tolist())
        assert (result.p < 0.05) == (result.low > 0 or result.high < 0)


def test_paired_t_test_degenerate_samples() -> None:
    assert paired_t_test([0.0, 0.0, 0.0]).p == 1.0  # L equals B0 on every replicate
    assert paired_t_test([0.25, 0.25, 0.25]).p == 0.0 and paired_t_test([0.1, 0.1, 0.1]).p < 1e-12
    one = paired_t_test([0.2, math.nan, None])
    assert one.n == 1 and one.mean == 0.2 and math.isnan(one.p) and math.isnan(one.low)
    assert paired_t_test([]).n == 0


# --- minimal_detectable_effect ------------------------------------------------------------------------------

def test_mde_matches_published_power_tables() -> None:
    # G*Power: paired (one-sample) t-test, alpha 0.05 two-sided, power 0.8: n=10 -> dz 0.9959, n=20 -> 0.6604;
    # two-sample with 10 per group -> d 1.3249
    assert minimal_detectable_effect(1.0, 10) == pytest.approx(0.9959, abs=2e-4)
    assert minimal_detectable_effect(1.0, 20) == pytest.approx(0.6604, abs=2e-4)
    assert minimal_detectable_effect(1.0, 10, paired=False) == pytest.approx(1.3249, abs=2e-4)
    assert minimal_detectable_effect(0.05, 10) == pytest.approx(0.05 * minimal_detectable_effect(1.0, 10))


def test_mde_has_the_requested_power_by_simulation() -> None:
    sd, n = 0.04, 5
    effect = minimal_detectable_effect(sd, n)
    rng = np.random.default_rng(7)
    diffs = rng.normal(effect, sd, size=(40_000, n))
    rejected = stats.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05
    assert float(rejected.mean()) == pytest.approx(0.8, abs=0.01)


def test_mde_is_above_the_normal_approximation_for_few_replicates_and_converges_to_it() -> None:
    for n in range(2, 31):
        assert minimal_detectable_effect(1.0, n) > normal_mde(1.0, n)
    assert minimal_detectable_effect(1.0, 3) > 1.8 * normal_mde(1.0, 3)
    assert minimal_detectable_effect(1.0, 100_000) == pytest.approx(normal_mde(1.0, 100_000), rel=1e-4)
    ratios = [minimal_detectable_effect(1.0, n) / normal_mde(1.0, n) for n in (5, 50, 500, 5000)]
    assert ratios == sorted(ratios, reverse=True)


def test_mde_with_three_replicates_is_much_larger_than_with_twenty() -> None:
    assert minimal_detectable_effect(0.03, 3) > 4 * minimal_detectable_effect(0.03, 20)
    assert math.isfinite(minimal_detectable_effect(0.03, 2))


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"sd": 1.0, "n": 1}, "n"), ({"sd": 1.0, "n": 0}, "n"), ({"sd": 1.0, "n": 2.5}, "n"),
    ({"sd": 0.0, "n": 5}, "sd"), ({"sd": -1.0, "n": 5}, "sd"), ({"sd": math.nan, "n": 5}, "sd"),
    ({"sd": 1.0, "n": 5, "alpha": 0.0}, "alpha"), ({"sd": 1.0, "n": 5, "power": 0.01}, "power"),
])
def test_mde_refuses_bad_arguments_naming_them(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} "):
        minimal_detectable_effect(**kwargs)


# --- bootstrap_ci -------------------------------------------------------------------------------------------

def test_bootstrap_interval_of_counts_stays_in_the_support_unlike_a_t_interval() -> None:
    rounds = [7, 7, 2]
    low, high = bootstrap_ci(rounds)
    assert 2 <= low <= high <= 7
    assert summarise(rounds).low < 0  # the t-interval claims a negative number of rounds
    rng = np.random.default_rng(2)
    for seed in range(20):
        counts = rng.integers(0, 50, size=int(rng.integers(2, 8))).tolist()
        low, high = bootstrap_ci(counts, seed=seed, n_resamples=2000)
        assert min(counts) <= low <= high <= max(counts)
        low, high = bootstrap_ci(counts, statistic=np.median, seed=seed, n_resamples=2000)
        assert min(counts) <= low <= high <= max(counts)


def test_bootstrap_interval_is_deterministic_from_the_seed() -> None:
    values = [3, 9, 4, 12, 5, 7, 30, 2]
    assert bootstrap_ci(values, seed=4) == bootstrap_ci(values, seed=4)
    assert bootstrap_ci(values, seed=4) != bootstrap_ci(values, seed=5)
    low, high = bootstrap_ci(values, confidence=0.5)
    wide_low, wide_high = bootstrap_ci(values, confidence=0.99)
    assert wide_low <= low <= np.mean(values) <= high <= wide_high


def test_bootstrap_of_a_constant_sample_does_not_call_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("scipy.stats.bootstrap called on a constant sample")

    monkeypatch.setattr(llmqfl_stats.stats, "bootstrap", refuse)
    assert bootstrap_ci([120, 120, 120]) == (120.0, 120.0)
    assert bootstrap_ci([5, math.nan]) == (5.0, 5.0)
    with pytest.raises(ValueError, match="values"):
        bootstrap_ci([math.nan])
