"""The qfl and evaluate stages run every seed of an arm in one process ({seed} path templates), with the
same numbers as one process per seed; the controls equal_cost and loss_stopping through the stage CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from qfl_stage_inputs import _argv, _config, make_results

from llmqfl.federated.accounting import TIMING_COLUMNS
from llmqfl.stages import evaluate
from llmqfl.stages import qfl as stage


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMQFL_TRACKING", "off")
    return make_results(tmp_path)


def _untimed(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).drop(columns=list(TIMING_COLUMNS))


def _seeds_argv(results: Path, arm: str, config: dict, seeds: list[int], *extra: str) -> list[str]:
    argv = _argv(results, arm, config, *extra, out=str(results / "qfl" / arm / "seed_{seed}"))
    at = argv.index("--seed")
    del argv[at : at + 2]
    return argv + [item for s in seeds for item in ("--seed", str(s))]


def test_one_process_for_several_seeds_equals_one_process_per_seed(results: Path, tmp_path: Path) -> None:
    config = _config()
    assert stage.main(_seeds_argv(results, "baseline", config, [0, 1])) == 0
    for seed in (0, 1):  # the same seed alone, in its own folder
        argv = _seeds_argv(results, "baseline", config, [seed])
        argv[argv.index("--out-dir") + 1] = str(tmp_path / f"alone_{seed}")
        assert stage.main(argv) == 0
        pd.testing.assert_frame_equal(_untimed(results / "qfl" / "baseline" / f"seed_{seed}" / "history.parquet"),
                                      _untimed(tmp_path / f"alone_{seed}" / "history.parquet"))
    a, b = (_untimed(results / "qfl" / "baseline" / f"seed_{s}" / "history.parquet") for s in (0, 1))
    assert not a.equals(b)  # the seeds really differ
    # evaluate: every seed's record from the templates
    folder = results / "qfl" / "baseline" / "seed_{seed}"
    code = evaluate.main(["--config", json.dumps(config), "--seed", "0", "--seed", "1",
                          "--history", str(folder / "history.parquet"), "--accounting", str(folder / "accounting.json"),
                          "--out", str(results / "eval" / "baseline" / "seed_{seed}.json")])
    assert code == 0
    records = [json.loads((results / "eval" / "baseline" / f"seed_{s}.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in records] == [0, 1]


def test_several_seeds_need_a_seed_field_in_the_output(results: Path, capsys) -> None:
    argv = _seeds_argv(results, "baseline", _config(), [0, 1])
    argv[argv.index("--out-dir") + 1] = str(results / "qfl" / "baseline" / "flat")
    assert stage.main(argv) == 2
    assert "--out-dir: with several --seed, write {seed} in the path" in capsys.readouterr().err
    assert not (results / "qfl" / "baseline" / "flat").exists()


def test_a_bad_input_of_a_later_seed_stops_before_any_output(results: Path, capsys) -> None:
    config = _config()
    guided = results / "qfl" / "llm_guided" / "seed_{seed}" / "history.parquet"
    assert stage.main(_seeds_argv(results, "llm_guided", config, [0])) == 0  # seed 1's reference is missing
    argv = _seeds_argv(results, "equal_cost", config, [0, 1], "--cost-reference", str(guided))
    assert stage.main(argv) == 2
    assert "cost reference not found" in capsys.readouterr().err
    assert not (results / "qfl" / "equal_cost").exists()


def test_equal_cost_and_loss_stopping_through_the_stage(results: Path) -> None:
    config = _config(termination={"loss_delta_quantile": 0.5})
    config["federation"]["rounds"] = 4
    baseline = results / "qfl" / "baseline" / "seed_{seed}" / "history.parquet"
    guided = results / "qfl" / "llm_guided" / "seed_{seed}" / "history.parquet"
    assert stage.main(_seeds_argv(results, "baseline", config, [0])) == 0
    assert stage.main(_seeds_argv(results, "llm_guided", config, [0])) == 0
    assert stage.main(_seeds_argv(results, "equal_cost", config, [0], "--cost-reference", str(guided))) == 0
    assert stage.main(_seeds_argv(results, "loss_stopping", config, [0], "--tau-reference", str(baseline))) == 0
    frames = {arm: pd.read_parquet(results / "qfl" / arm / "seed_0" / "history.parquet")
              for arm in ("baseline", "llm_guided", "equal_cost", "loss_stopping")}
    spent_l, spent_e = frames["llm_guided"]["circuits"].sum(), frames["equal_cost"]["circuits"].sum()
    one_round = frames["equal_cost"].query("round == 1")["circuits"].sum()
    assert spent_e <= spent_l < spent_e + one_round
    server = frames["loss_stopping"].query("client == -1")
    assert server["llm_loss"].isna().all()  # no LLM
    stopped = server["stop_reason"].iloc[-1]
    assert stopped in ("", "loss_delta") and (stopped == "loss_delta") == (len(server) < 4)
    accounting = json.loads((results / "qfl" / "equal_cost" / "seed_0" / "accounting.json").read_text())
    assert 0 <= accounting["references"]["feature_ceiling"] <= 1
