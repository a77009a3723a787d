"""The guidance sweep's table and figure: each grid point's L against the baseline of its selection kind and
against its equal-cost point E."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from llmqfl.config import load_settings
from llmqfl.evaluation.stats import holm, paired_t_test
from llmqfl.evaluation.sweep_table import (
    COLUMNS,
    E_COLUMNS,
    Point,
    combine_figure,
    combine_markdown,
    grid_points,
    point_config,
    point_rows,
    read_tables,
)
from llmqfl.settings import as_plain
from llmqfl.stages import sweep as sweep_stage

GRID = {"guidance_rules": ["adaptive"], "distillation_weights": [0.0, 0.5], "selections": ["all"], "fraction": 0.5}
SEEDS = (0, 1, 2)


def eval_record(seed: int, accuracy: float, circuits: float) -> dict:
    return {"seed": seed, "final": {"test_accuracy": accuracy + 0.002 * seed}, "totals": {"circuits": circuits + seed}}


def write_evals(root: Path) -> Path:
    """B0 at 60%; L with weight 0 at 60% +- noise (inconclusive), with weight 0.5 at 70% (helps). Their E
    points: at 60% (L - E inconclusive for weight 0) and at 65% +- noise (L - E helps for weight 0.5)."""
    accuracy = {"all__baseline": 0.60, "all__adaptive__w0": 0.60, "all__adaptive__w0.5": 0.70,
                "all__adaptive__w0__equal_cost": 0.60, "all__adaptive__w0.5__equal_cost": 0.65}
    noise = {"all__adaptive__w0": (-0.02, 0.02, 0.0), "all__adaptive__w0.5__equal_cost": (0.01, -0.01, 0.0)}
    for point, value in accuracy.items():
        for seed in SEEDS:
            path = root / "eval" / point / f"seed_{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            circuits = 100.0 if "baseline" in point else 150.0  # E spends L's circuits
            record = eval_record(seed, value + noise.get(point, (0, 0, 0))[seed], circuits)
            path.write_text(json.dumps(record))
    return root / "eval"


def test_each_point_is_compared_with_the_baseline_of_its_selection(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMQFL_TRACKING", "off")
    config = json.dumps({"experiment": "sweep-unit", "seeds": list(SEEDS), "sweep": GRID})
    out = tmp_path / "sweep.csv"
    assert sweep_stage.main(["--config", config, "--eval-dir", str(write_evals(tmp_path)), "--out", str(out)]) == 0
    table = pd.read_csv(out).set_index("weight")
    assert table.loc[0.5, "verdict"] == "helps" and table.loc[0.5, "acc_diff"] == pytest.approx(0.10)
    assert table.loc[0.0, "verdict"] == "inconclusive"
    assert table.loc[0.5, "circuits_ratio"] == pytest.approx((150 + 151 + 152) / 3 / 101, rel=0.01)
    # L - E: weight 0.5 gains 5 points at equal cost, weight 0 none
    assert table.loc[0.5, "acc_diff_e"] == pytest.approx(0.05) and table.loc[0.5, "verdict_e"] == "helps"
    assert table.loc[0.0, "acc_diff_e"] == pytest.approx(0.0) and table.loc[0.0, "verdict_e"] == "inconclusive"
    assert table.loc[0.5, "circuits_e"] == pytest.approx(table.loc[0.5, "circuits_l"])
    p_e = paired_t_test([0.04, 0.06, 0.05]).p
    assert table.loc[0.5, "p_e"] == pytest.approx(p_e) and table.loc[0.0, "p_e"] == pytest.approx(1.0)
    # Holm over the task's 4 comparisons (L - B0 and L - E of 2 points): weight 0.5 (p ~ 0) still holds,
    # weight 0 (p = 1) does not; weight 0.5's L - E is the second smallest p, so it is multiplied by 3
    assert table.loc[0.0, "p"] == pytest.approx(1.0) and table.loc[0.5, "p"] < 1e-6
    family = holm(table["p"].tolist() + table["p_e"].tolist())
    assert table["p_holm"].tolist() + table["p_holm_e"].tolist() == pytest.approx(family)
    assert table.loc[0.5, "p_holm_e"] == pytest.approx(3 * p_e)
    assert table.loc[0.5, "holds_after_holm"] and not table.loc[0.0, "holds_after_holm"]
    assert table.loc[0.5, "holds_after_holm_e"] and not table.loc[0.0, "holds_after_holm_e"]
    markdown = combine_markdown(read_tables([out]))
    assert markdown.count("\n| sweep-unit | all | adaptive |") == 2 and "+10.0 [" in markdown and "+5.0 [" in markdown
    assert "| p | p Holm (4 comparisons: L - B0 and L - E together) | holds after Holm |" in markdown
    assert "| p Holm (L - E, of the same 4) | holds after Holm (L - E) |" in markdown
    assert "| helps | <0.001 | <0.001 | yes |" in markdown and "| inconclusive | 1 | 1 | no |" in markdown
    assert f"| 3 | helps | {p_e:.2g} | {3 * p_e:.2g} | yes |" in markdown
    figure = combine_figure(read_tables([out]), tmp_path / "sweep.png")
    assert figure.stat().st_size > 10_000


def sweep_csv(path: Path, task: str, gains: dict[float, tuple[float, float, float]]) -> Path:
    """One task's sweep.csv: B0 at 60%, the guided point of each weight at 60% + its per-replicate gains."""
    points = [Point("all", "adaptive", w) for w in gains] + [Point("all", "baseline", 0.0)]
    records = {p.id: [eval_record(s, 0.60 + gains.get(p.weight, (0, 0, 0))[s] * (p.rule != "baseline"), 100.0)
                      for s in SEEDS] for p in points}
    pd.DataFrame(point_rows(task, points, records), columns=list(COLUMNS)).to_csv(path, index=False)
    return path


def test_joining_tasks_adjusts_p_over_every_tasks_comparisons(tmp_path: Path) -> None:
    # Each task alone: its one clear point holds after Holm over 2 comparisons; joined, 4 comparisons
    gains = {0.0: (0.03, 0.05, 0.07), 0.5: (-0.02, 0.02, 0.01)}
    one = sweep_csv(tmp_path / "dna.csv", "dna", gains)
    two = sweep_csv(tmp_path / "text.csv", "text", gains)
    alone = pd.read_csv(one)
    p = paired_t_test([0.03, 0.05, 0.07]).p
    assert alone.loc[0, "p"] == pytest.approx(p) and alone.loc[0, "p_holm"] == pytest.approx(2 * p)
    joined = read_tables([one, two])
    assert list(joined.columns) == list(COLUMNS)
    assert joined["p_holm"].tolist() == pytest.approx(holm(joined["p"].tolist()))
    assert joined.loc[0, "p_holm"] == pytest.approx(min(1.0, 4 * p))
    assert joined["holds_after_holm"].tolist() == [bool(x < 0.05) for x in joined["p_holm"]]
    assert "p Holm (4 comparisons" in combine_markdown(joined)  # no E points: 2 L - B0 per task


def test_a_sweep_csv_without_the_equal_cost_columns_still_reads(tmp_path: Path) -> None:
    # Arrange: a sweep.csv written before the L - E columns existed (and one before p existed)
    path = sweep_csv(tmp_path / "dna.csv", "dna", {0.0: (0.03, 0.05, 0.07), 0.5: (-0.02, 0.02, 0.01)})
    written = pd.read_csv(path)
    written.drop(columns=list(E_COLUMNS)).to_csv(path, index=False)
    older = tmp_path / "text.csv"
    written.drop(columns=[*E_COLUMNS, "p", "p_holm", "holds_after_holm"]).to_csv(older, index=False)
    # Act
    table = read_tables([path, older])
    # Assert: the E columns are empty and no test: Holm counts the 4 L - B0 comparisons only
    assert list(table.columns) == list(COLUMNS)
    assert table["acc_diff_e"].isna().all() and table["p_e"].isna().all() and table["p_holm_e"].isna().all()
    assert table["p_holm"].tolist() == pytest.approx(holm(table["p"].tolist()))
    assert table.loc[0, "p_holm"] == pytest.approx(min(1.0, 4 * written.loc[0, "p"]))
    markdown = combine_markdown(table)
    assert "p Holm (4 comparisons: L - B0 and L - E together)" in markdown
    assert markdown.rstrip().endswith("| - | - | - | - | - | - | - | - |")
    assert combine_figure(table, tmp_path / "sweep.png").is_file()


def test_a_sweep_csv_without_p_gets_it_back_from_its_interval(tmp_path: Path) -> None:
    path = sweep_csv(tmp_path / "dna.csv", "dna", {0.0: (0.03, 0.05, 0.07), 0.5: (0.0, 0.0, 0.0)})
    written = pd.read_csv(path)
    written.drop(columns=["p", "p_holm", "holds_after_holm"]).to_csv(path, index=False)
    table = read_tables([path])
    assert table["p"].tolist() == pytest.approx(written["p"].tolist())
    assert table["p_holm"].tolist() == pytest.approx(written["p_holm"].tolist())
    mixed = read_tables([path, sweep_csv(tmp_path / "text.csv", "text", {0.0: (0.03, 0.05, 0.07)})])
    assert mixed["p"].notna().all() and mixed["p_holm"].tolist() == pytest.approx(holm(mixed["p"].tolist()))


def test_a_missing_point_ends_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LLMQFL_TRACKING", "off")
    config = json.dumps({"experiment": "sweep-unit", "seeds": [0], "sweep": GRID})
    assert sweep_stage.main(["--config", config, "--eval-dir", str(tmp_path), "--out", str(tmp_path / "x.csv")]) != 0
    assert "llmqfl sweep: eval record not found" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_a_grid_point_sets_selection_rule_and_weight_and_the_baseline_keeps_the_config() -> None:
    config = load_settings({"sweep": {**GRID, "selections": ["all", "closest_to_server"]}})
    points = grid_points(config.sweep)
    guided_ids = ["all__adaptive__w0", "all__adaptive__w0.5", "closest_to_server__adaptive__w0",
                  "closest_to_server__adaptive__w0.5"]
    assert [p.id for p in points] == guided_ids + ["all__baseline", "closest_to_server__baseline"] + [
        f"{i}__equal_cost" for i in guided_ids]
    assert [p.arm for p in points] == ["llm_guided"] * 4 + ["baseline"] * 2 + ["equal_cost"] * 4
    guided = point_config(config, points[3], 0.5)
    assert as_plain(guided.federation.selection) == {"kind": "closest_to_server", "fraction": 0.5}
    assert guided.qfl.distillation.weight == 0.5 and guided.qfl.guidance.rule == "adaptive"
    assert point_config(config, points[5], 0.5).qfl == config.qfl
    # E: the selection kind and fraction of its L point, the config's qfl (no guidance, no teacher)
    matched = point_config(config, points[-1], 0.5)
    assert points[-1].guided == points[3] and points[3].matched == points[-1]
    assert matched.federation.selection == guided.federation.selection
    assert matched.qfl == config.qfl
    # the plain config of a point is the config with those values changed, nothing else
    changed = config.as_config()
    changed["federation"]["selection"] = {"kind": "closest_to_server", "fraction": 0.5}
    changed["qfl"]["guidance"]["rule"], changed["qfl"]["distillation"]["weight"] = "adaptive", 0.5
    assert guided.as_config() == changed


@pytest.mark.parametrize("task", ["sweep-dna", "sweep-text"])
def test_the_sweep_workflow_runs_one_job_per_grid_point_with_every_replicate(tmp_path: Path, task: str) -> None:
    # Execute: a dry run of sweep.smk on the committed sweep config, in an empty work directory
    root = Path(__file__).resolve().parents[2]
    experiment = root / "config" / "experiments" / f"{task}.yaml"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "-s", str(root / "sweep.smk"), "-d", str(tmp_path),
         "-n", "--quiet", "host", "--configfile", str(root / "config" / "config.yaml"), str(experiment)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # Assert: one sweep_point job per grid point (rule x weight x selection, plus a baseline per selection,
    # plus an equal_cost point per guided point), each writing the evaluation of every replicate
    config = yaml.safe_load(experiment.read_text())
    grid = load_settings(config).sweep
    points = grid_points(grid)
    guided = len(grid.selections) * len(grid.guidance_rules) * len(grid.distillation_weights)
    assert len(points) == guided + len(grid.selections) + guided
    assert re.search(rf"^sweep_point\s+{len(points)}$", done.stdout, re.M), done.stdout[-2000:]
    for point in points:
        for seed in config["seeds"]:
            assert f"results/{task}/sweep/eval/{point.id}/seed_{seed}.json" in done.stdout
    # each E job takes as input its L point's history of every replicate (its --cost-reference), and no teacher
    jobs = {m["point"]: m["input"] for m in re.finditer(
        r"^rule sweep_point:\n\s+input: (?P<input>[^\n]*)\n(?:\s+\w+: [^\n]*\n)*?\s+wildcards: point=(?P<point>\S+)$",
        done.stdout, re.M)}
    assert set(jobs) == {p.id for p in points}
    sweep = f"results/{task}/sweep/qfl"
    for point in points:
        inputs = jobs[point.id].split(", ")
        references = [f for f in inputs if f.startswith(f"{sweep}/")]
        if point.arm == "equal_cost":
            assert references == [f"{sweep}/{point.guided.id}/seed_{s}/history.parquet" for s in config["seeds"]]
            assert not any("/distill/" in f for f in inputs)
        elif point.arm == "baseline":
            assert references == []
