"""The sweep's equal-cost arm E: one per L point, run with that point's histories as its cost reference, and
compared with L (L - E) beside L - B0, Holm-adjusted over both comparisons of every row together."""

from __future__ import annotations

import logging
import math
import runpy
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from llmqfl.evaluation.stats import holm, paired_t_test
from llmqfl.evaluation.sweep_table import COLUMNS, Point, family_size, point_rows, with_holm

ROOT = Path(__file__).resolve().parents[2]
SEEDS = (0, 1, 2)


def record(seed: int, accuracy: float, circuits: float = 100.0) -> dict:
    return {"seed": seed, "final": {"test_accuracy": accuracy}, "totals": {"circuits": circuits}}


def records_of(accuracies: dict[Point, tuple[float, ...]]) -> dict[str, list[dict]]:
    return {p.id: [record(s, a, 200.0 if p.arm != "baseline" else 100.0) for s, a in zip(SEEDS, acc, strict=True)]
            for p, acc in accuracies.items()}


def test_point_rows_pair_each_l_point_with_its_own_e_by_replicate() -> None:
    # Arrange: two L points of one selection, their B0 and their E points (E of w0.5 listed in reverse seed order)
    l0, l5, b0 = Point("all", "adaptive", 0.0), Point("all", "adaptive", 0.5), Point("all", "baseline", 0.0)
    accuracies = {l0: (0.60, 0.62, 0.64), l5: (0.70, 0.71, 0.72), b0: (0.55, 0.56, 0.57),
                  l0.matched: (0.62, 0.60, 0.64), l5.matched: (0.60, 0.65, 0.63)}
    records = records_of(accuracies)
    records[l5.matched.id] = records[l5.matched.id][::-1]
    # Act
    rows = {row["weight"]: row for row in point_rows("t", [l0, l5, b0, l0.matched, l5.matched], records)}
    # Assert: one row per L point; L - E paired by seed, not by position
    assert set(rows) == {0.0, 0.5}
    diffs = [0.70 - 0.60, 0.71 - 0.65, 0.72 - 0.63]
    test = paired_t_test(diffs)
    assert rows[0.5]["acc_diff_e"] == pytest.approx(test.mean)
    assert (rows[0.5]["acc_diff_e_low"], rows[0.5]["acc_diff_e_high"]) == pytest.approx((test.low, test.high))
    assert rows[0.5]["p_e"] == pytest.approx(test.p) and rows[0.5]["n_e"] == 3
    assert rows[0.5]["acc_e"] == pytest.approx((0.60 + 0.65 + 0.63) / 3) and rows[0.5]["circuits_e"] == 200.0
    assert rows[0.0]["acc_diff_e"] == pytest.approx(0.0) and rows[0.0]["verdict_e"] == "inconclusive"
    assert rows[0.5]["acc_diff"] == pytest.approx(0.15)  # L - B0 unchanged by E
    # Holm: one family of 2 comparisons per L point (4 here)
    family = [rows[w][p] for p in ("p", "p_e") for w in (0.0, 0.5)]
    adjusted = holm(family)
    assert [rows[w][p] for p in ("p_holm", "p_holm_e") for w in (0.0, 0.5)] == pytest.approx(adjusted)
    assert family_size(pd.DataFrame(list(rows.values()), columns=list(COLUMNS))) == 4
    for w in (0.0, 0.5):
        assert rows[w]["holds_after_holm"] == (rows[w]["p_holm"] < 0.05)
        assert rows[w]["holds_after_holm_e"] == (rows[w]["p_holm_e"] < 0.05)


def test_an_l_point_without_e_records_has_an_empty_l_minus_e_and_is_one_test() -> None:
    l0, b0 = Point("all", "adaptive", 0.0), Point("all", "baseline", 0.0)
    rows = point_rows("t", [l0, b0], records_of({l0: (0.60, 0.65, 0.70), b0: (0.55, 0.56, 0.57)}))
    assert math.isnan(rows[0]["acc_diff_e"]) and math.isnan(rows[0]["p_e"]) and math.isnan(rows[0]["p_holm_e"])
    assert rows[0]["verdict_e"] == "not run" and not rows[0]["holds_after_holm_e"]
    assert rows[0]["p_holm"] == pytest.approx(rows[0]["p"])  # a family of one
    assert family_size(pd.DataFrame(rows, columns=list(COLUMNS))) == 1


def test_with_holm_counts_l_minus_b0_and_l_minus_e_of_every_row() -> None:
    rows = [{"p": 0.01, "p_e": 0.04}, {"p": 0.02, "p_e": math.nan}, {"p": 0.5}]
    out = with_holm(rows)
    expected = holm([0.01, 0.02, 0.5, 0.04, math.nan, math.nan])  # 4 comparisons
    assert [r["p_holm"] for r in out] == pytest.approx(expected[:3])
    assert out[0]["p_holm_e"] == pytest.approx(expected[3]) and math.isnan(out[1]["p_holm_e"])
    assert out[0]["p_holm"] == pytest.approx(4 * 0.01) and out[0]["holds_after_holm"]
    assert [r["holds_after_holm_e"] for r in out] == [False, False, False]  # 0.04 * 2 = 0.08
    assert "p_holm" not in rows[0]  # the input rows are left as they were


def test_an_e_point_names_its_l_point_and_is_never_a_baseline() -> None:
    point = Point("closest_to_server", "hybrid", 0.5, equal_cost=True)
    assert point.id == "closest_to_server__hybrid__w0.5__equal_cost" and point.arm == "equal_cost"
    assert point.guided == Point("closest_to_server", "hybrid", 0.5) and point.guided.matched == point
    assert point.baseline.id == "closest_to_server__baseline"
    with pytest.raises(ValueError, match="equal_cost"):
        Point("all", "baseline", 0.0, equal_cost=True)


def run_sweep_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **params: object) -> list[list[str]]:
    """workflow/scripts/sweep_point.py with a stand-in for Snakemake's object; the qfl argv of each seed."""
    from llmqfl.stages import evaluate, qfl

    calls: list[list[str]] = []
    monkeypatch.setattr(qfl, "main", lambda argv: calls.append(list(argv)) or 0)
    monkeypatch.setattr(evaluate, "main", lambda argv: 0)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)  # leave pytest's logging alone
    monkeypatch.setenv("LLMQFL_TRACKING", "on")  # restored afterwards; the script turns it off
    out = [tmp_path / "qfl" / f"seed_{s}" for s in SEEDS]
    smk = SimpleNamespace(
        params=SimpleNamespace(**{"qfl_cfg": "q.json", "evaluate_cfg": "e.json", "arm": "equal_cost",
                                  "seeds": list(SEEDS), "data_dir": "d", "partitions_dir": "p", "distill_dir": "d",
                                  "embeddings": "", "tau_references": [], "cost_references": [], **params}),
        output=SimpleNamespace(history=[str(o / "history.parquet") for o in out],
                               accounting=[str(o / "accounting.json") for o in out],
                               evals=[str(tmp_path / f"seed_{s}.json") for s in SEEDS]),
        log=[str(tmp_path / "point.log")],
    )
    runpy.run_path(str(ROOT / "workflow" / "scripts" / "sweep_point.py"), init_globals={"snakemake": smk})
    return calls


def test_the_sweep_job_passes_each_seed_its_l_points_history_as_cost_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    references = [f"results/x/sweep/qfl/all__adaptive__w0.5/seed_{s}/history.parquet" for s in SEEDS]
    calls = run_sweep_point(tmp_path, monkeypatch, cost_references=references)
    assert len(calls) == len(SEEDS)
    for seed, argv, reference in zip(SEEDS, calls, references, strict=True):
        assert argv[argv.index("--seed") + 1] == str(seed) and argv[argv.index("--arm") + 1] == "equal_cost"
        assert argv[argv.index("--cost-reference") + 1] == reference
        assert "--tau-reference" not in argv
    guided = run_sweep_point(tmp_path, monkeypatch, arm="llm_guided")
    assert not any("--cost-reference" in argv for argv in guided)
