"""`llmqfl` subcommands: every one answers --help, `plan` is a command, `compare` takes one experiment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmqfl import cli

SUBCOMMANDS = (["plan"], ["stage"], ["stage", "plan"], ["stage", "qfl"], ["compare"], ["predict"], ["ledger"], [])


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=lambda c: " ".join(c) or "llmqfl")
def test_help_exits_zero_and_prints_usage(command: list[str], capsys) -> None:
    # Execute
    with pytest.raises(SystemExit) as done:
        cli.main([*command, "--help"])
    # Assert: usage names the command as the user typed it
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: " + " ".join(["llmqfl", *command]))


def test_plan_is_a_command_with_the_stages_options(tmp_path: Path, capsys) -> None:
    # Execute: a bad config path gets the stage's one-line error, under the plan command
    code = cli.main(["plan", "--config", str(tmp_path / "missing.yaml")])
    # Assert
    assert code == 2
    expected = f"llmqfl plan: config error: config file not found: {tmp_path}/missing.yaml"
    assert capsys.readouterr().err.strip() == expected


def _record(arm: str, seed: int, accuracy: float) -> dict:
    return {"arm": arm, "seed": seed, "rounds_run": 3, "final": {"test_accuracy": accuracy, "test_loss": 0.5},
            "totals": {"circuits": 1000 * (seed + 1), "bytes_up": 64}}


def test_compare_on_one_experiment_puts_its_arms_side_by_side_and_the_figure_under_results(
        tmp_path: Path, capsys, monkeypatch) -> None:
    # Prepare: one experiment's eval records, two arms of two seeds, and its DVC metrics (verdicts as words)
    results = tmp_path / "results"
    for arm, accuracies in (("baseline", (0.5, 0.7)), ("llm_guided", (0.75, 0.85))):
        for seed, accuracy in enumerate(accuracies):
            path = results / "exp" / "eval" / arm / f"seed_{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_record(arm, seed, accuracy)))
    (results / "exp" / "metrics.json").write_text(json.dumps({"claims": {"C1": {"verdict": "inconclusive"}}}))
    monkeypatch.chdir(tmp_path)
    # Execute
    code = cli.main(["compare", "exp", "--results", str(results)])
    # Assert: one column per arm, one row per metric, each cell the mean over seeds; the verdict in words
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["metric", "(exp)", "baseline", "llm_guided"]
    accuracy = next(line for line in lines if line.startswith("test accuracy"))
    assert accuracy.split()[-2:] == ["0.600", "0.800"]
    assert next(line for line in lines if line.startswith("claim C1")).split()[-1] == "inconclusive"
    # Assert: the figure went beside the results, not into the current folder
    assert (results / "compare" / "exp.png").stat().st_size > 1000
    assert not list(tmp_path.glob("*.png"))


def test_compare_writes_the_figure_where_o_says(tmp_path: Path, capsys) -> None:
    # Prepare
    path = tmp_path / "results" / "exp" / "eval" / "baseline" / "seed_0.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_record("baseline", 0, 0.5)))
    figure = tmp_path / "figures" / "mine.png"
    # Execute
    code = cli.main(["compare", "exp", "--results", str(tmp_path / "results"), "-o", str(figure)])
    # Assert
    assert code == 0 and figure.stat().st_size > 1000
    assert f"figure -> {figure}" in capsys.readouterr().out
