"""Benchmark: the hardware path's costs on the default config, as one JSON object of ratios from one run.

    python benchmarks/hardware_path.py [--part all|noisy|batching] [--repeats 3] [--aer-repeats 2]
        [--rounds N] [--fake-shots S] [--out FILE] [--docs docs/backends.md] [--from-json FILE]

* ``noisy_speedup``: the default config's qfl stage (baseline arm, seed 0) on ``aer_noisy``
  FakeManilaV2 at 1024 shots, Aer's density-matrix path (``backend.noisy_engine: aer``) over the
  numpy engine (``auto``, :mod:`llmqfl.quantum.simulators.noisy_exact`), median wall seconds of the repeats
  (the whole stage: start-up, features and outputs included, after one untimed 1-round run that
  pays the process's first imports); ``noisy_speedup_federation`` the
  same for the jobs' seconds the run's accounting.json records (``totals.wall_seconds``, submit to
  result; the client and server seconds would count a lockstep job once per client waiting on it);
  ``identical_results`` says whether both wrote the same weights and history losses (same
  distributions, same seeded draws).
* ``jobs_per_arm``: the jobs the run recorded (accounting.json) and what ``llmqfl.stages.plan``
  plans for every arm of the default config (expected, and the bound if guidance raises maxiter).
* ``jobs_ratio`` (``--part batching``): jobs the baseline run (seed 0) records on ``fake`` FakeManilaV2
  with ``backend.batching: sequential`` (clients one after another, one job per call) over ``lockstep``
  (:mod:`llmqfl.federated.lockstep`), with the wall seconds of both; ``jobs_ratio_all_selected`` the
  same with ``federation.selection: all`` (every client trains every round; the default selects 2
  of 4 after round 1); ``batching_identical_results`` whether sequential and lockstep wrote the same
  weights and losses on ``aer_noisy`` FakeManilaV2 (the seeded simulator: the same draws), and
  ``batching_planned`` what the cost plan predicts for every arm in both modes. ``--fake-shots``
  sets the ``fake`` runs' shots (default 1024): the job count does not depend on it, the time does
  (the runtime's sampler returns every shot: ~25 min per 10-round run at 1024 shots on the shared
  2-core machine).
* ``--docs FILE`` rewrites the table between the ``<!-- BATCHING_TABLE -->`` markers of FILE from
  the batching part's numbers (``--from-json`` renders a saved result instead of running).

The data and partition stages run once into a temporary folder (MLflow tracking off).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmqfl.config import load_settings, validate_config  # noqa: E402
from llmqfl.planning import plan_config, sizes_from_files  # noqa: E402
from llmqfl.settings import Settings  # noqa: E402
from llmqfl.stages import data as data_stage  # noqa: E402
from llmqfl.stages import partition as partition_stage  # noqa: E402
from llmqfl.stages import qfl as qfl_stage  # noqa: E402

DEVICE = "FakeManilaV2"
SHOTS = 1024


def _config(engine: str, rounds: int | None) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["backend"] = {"kind": "aer_noisy", "name": DEVICE, "shots": SHOTS, "noisy_engine": engine}
    if rounds is not None:
        config["federation"]["rounds"] = rounds
    return config


def _qfl(work: Path, config_file: Path, out_dir: Path) -> float:
    start = time.perf_counter()
    status = qfl_stage.main([
        "--config", str(config_file), "--arm", "baseline", "--seed", "0", "--data-dir", str(work / "data"),
        "--partitions-dir", str(work / "partitions"), "--distill-dir", str(work / "distill"),
        "--out-dir", str(out_dir),
    ])
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"hardware_path: the qfl stage failed ({config_file})")
    return seconds


def _same_results(a: Path, b: Path) -> bool:
    same_weights = np.array_equal(np.load(a / "weights.npy"), np.load(b / "weights.npy"))
    losses = [pd.read_parquet(p / "history.parquet")["loss"].to_numpy() for p in (a, b)]
    return bool(same_weights and np.array_equal(losses[0], losses[1], equal_nan=True))


def run(repeats: int, aer_repeats: int, rounds: int | None) -> dict[str, Any]:
    os.environ["LLMQFL_TRACKING"] = "off"
    with tempfile.TemporaryDirectory(prefix="llmqfl-hw-") as tmp:
        work = Path(tmp)
        base = validate_config(_config("auto", rounds))
        data_stage.run(base, work / "data")
        partition_stage.run(base, work / "data", work / "partitions")
        seconds: dict[str, list[float]] = {"auto": [], "aer": []}
        federation: dict[str, list[float]] = {"auto": [], "aer": []}
        outputs: dict[str, Path] = {}
        for engine in ("auto", "aer"):
            (work / f"{engine}.yaml").write_text(yaml.safe_dump(_config(engine, rounds)))
        # untimed warm-up (1 round): the first stage run in a process imports the runtime's fake
        # provider and the stage's modules (~6-15 s here), which would otherwise count against the engine run first
        (work / "warmup.yaml").write_text(yaml.safe_dump(_config("auto", 1)))
        _qfl(work, work / "warmup.yaml", work / "qfl" / "warmup")
        # interleaved (auto, aer, auto, ...) so that both engines see the same machine load
        order = [e for i in range(max(repeats, aer_repeats)) for e, n in (("auto", repeats), ("aer", aer_repeats))
                 if i < n]
        for index, engine in enumerate(order):
            out_dir = work / "qfl" / engine / str(index)
            seconds[engine].append(round(_qfl(work, work / f"{engine}.yaml", out_dir), 3))
            totals = json.loads((out_dir / "accounting.json").read_text())["totals"]
            federation[engine].append(round(totals["wall_seconds"], 3))
            outputs[engine] = out_dir
        accounting = json.loads((outputs["auto"] / "accounting.json").read_text())["totals"]
        meta = json.loads((work / "data" / "meta.json").read_text())
        sizes = sizes_from_files(meta, json.loads((work / "partitions" / "partitions.json").read_text()))
        plan = plan_config(Settings.from_config(base), sizes, int(meta["n_classes"]), seeds=[0])
        identical = _same_results(outputs["auto"], outputs["aer"])
    medians = {engine: statistics.median(values) for engine, values in seconds.items()}
    fed = {engine: statistics.median(values) for engine, values in federation.items()}
    return {
        "benchmark": "hardware_path",
        "config": "config/config.yaml, baseline arm, seed 0"
        + (f", {rounds} rounds" if rounds else f", {base['federation']['rounds']} rounds"),
        "backend": {"kind": "aer_noisy", "name": DEVICE, "shots": SHOTS},
        "noisy_speedup": round(medians["aer"] / medians["auto"], 2),
        "noisy_seconds": {"numpy_engine": seconds["auto"], "aer_density_matrix": seconds["aer"],
                          "median_numpy_engine": medians["auto"], "median_aer_density_matrix": medians["aer"]},
        "noisy_speedup_federation": round(fed["aer"] / fed["auto"], 2),
        "federation_seconds": {"numpy_engine": federation["auto"], "aer_density_matrix": federation["aer"]},
        "identical_results": identical,
        "jobs_per_arm": {
            "recorded_baseline": int(accounting["jobs"]),
            "recorded_baseline_shots": int(accounting["shots"]),
            "planned": {run["arm"]: {"expected": run["expected"]["jobs"], "bound": run["bound"]["jobs"]}
                        for run in plan["runs"]},
        },
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
    }


def _batching_config(kind: str, batching: str, rounds: int | None, selection: str | None = None,
                     shots: int = SHOTS) -> dict[str, Any]:
    config = _config("auto", rounds)
    config["backend"] = {"kind": kind, "name": DEVICE, "shots": shots, "batching": batching}
    if selection is not None:
        config["federation"]["selection"] = {"kind": selection}
    return config


def run_batching(rounds: int | None, fake_shots: int = SHOTS, all_selected: bool = True) -> dict[str, Any]:
    """Jobs per run, sequential vs lockstep batching, on ``fake``; identical results on ``aer_noisy``."""
    os.environ["LLMQFL_TRACKING"] = "off"
    with tempfile.TemporaryDirectory(prefix="llmqfl-batching-") as tmp:
        work = Path(tmp)
        base = validate_config(_config("auto", rounds))
        data_stage.run(base, work / "data")
        partition_stage.run(base, work / "data", work / "partitions")
        recorded: dict[str, dict[str, Any]] = {}
        outputs: dict[str, Path] = {}
        runs = [("fake", None), ("fake", "all"), ("aer_noisy", None)] if all_selected else [("fake", None),
                                                                                          ("aer_noisy", None)]
        for kind, selection in runs:
            for batching in ("sequential", "lockstep"):
                name = f"{kind}{'_all' if selection else ''}_{batching}"
                config_file = work / f"{name}.yaml"
                shots = fake_shots if kind == "fake" else SHOTS
                config_file.write_text(yaml.safe_dump(_batching_config(kind, batching, rounds, selection, shots)))
                outputs[name] = work / "qfl" / name
                seconds = _qfl(work, config_file, outputs[name])
                accounting = json.loads((outputs[name] / "accounting.json").read_text())
                totals = accounting["totals"]
                recorded[name] = {"jobs": int(totals["jobs"]), "shots": int(totals["shots"]),
                                  "circuits": int(totals["circuits"]), "seconds": round(seconds, 2),
                                  "jobs_per_round": [int(row["jobs"]) for row in accounting["per_round"]]}
        meta = json.loads((work / "data" / "meta.json").read_text())
        sizes = sizes_from_files(meta, json.loads((work / "partitions" / "partitions.json").read_text()))
        # mode -> arm -> expected / bound jobs, for the rounds run and for the config's own rounds
        planned: dict[str, dict[str, dict[str, int]]] = {}
        for label, plan_rounds in (("", rounds), ("config_rounds_", None)):
            for selection in (None, "all"):
                for batching in ("sequential", "lockstep"):
                    config = _batching_config("fake", batching, plan_rounds, selection, fake_shots)
                    plan = plan_config(load_settings(config), sizes, int(meta["n_classes"]), seeds=[0])
                    name = f"{label}{'all_' if selection else ''}{batching}"
                    planned[name] = {run["arm"]: {"expected": run["expected"]["jobs"], "bound": run["bound"]["jobs"]}
                                     for run in plan["runs"]}
        identical = _same_results(outputs["aer_noisy_sequential"], outputs["aer_noisy_lockstep"])
        identical_fake_weights = _same_results(outputs["fake_sequential"], outputs["fake_lockstep"])
    return {
        "batching_config": "config/config.yaml, baseline arm, seed 0"
        + (f", {rounds} rounds" if rounds else f", {base['federation']['rounds']} rounds"),
        "batching_backend": {"kind": "fake", "name": DEVICE, "shots": fake_shots},
        "batching_identical_backend": {"kind": "aer_noisy", "name": DEVICE, "shots": SHOTS},
        "jobs_ratio": round(recorded["fake_sequential"]["jobs"] / recorded["fake_lockstep"]["jobs"], 2),
        # round 1 selects every client whatever the selection rule (nothing to compare with yet)
        "jobs_ratio_round_1": round(recorded["fake_sequential"]["jobs_per_round"][0]
                                    / recorded["fake_lockstep"]["jobs_per_round"][0], 2),
        "jobs_ratio_all_selected": round(
            recorded["fake_all_sequential"]["jobs"] / recorded["fake_all_lockstep"]["jobs"], 2) if all_selected
        else None,
        "jobs_ratio_planned_config_rounds": round(planned["config_rounds_sequential"]["baseline"]["expected"]
                                                  / planned["config_rounds_lockstep"]["baseline"]["expected"], 2),
        "jobs_ratio_all_selected_planned_config_rounds": round(
            planned["config_rounds_all_sequential"]["baseline"]["expected"]
            / planned["config_rounds_all_lockstep"]["baseline"]["expected"], 2),
        "batching_recorded": recorded,
        "batching_planned": planned,
        "batching_identical_results": identical,
        "batching_identical_results_fake": identical_fake_weights,
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
    }


_MARKERS = ("<!-- BATCHING_TABLE -->", "<!-- /BATCHING_TABLE -->")


def batching_markdown(result: dict[str, Any]) -> str:
    """The docs' table of the batching part: jobs recorded and planned per mode, the ratios, identity."""
    recorded, planned = result["batching_recorded"], result["batching_planned"]
    rounds_run = len(recorded["fake_sequential"]["jobs_per_round"])
    match = all(row["jobs"] == planned[name.removeprefix("fake_")]["baseline"]["expected"]
                for name, row in recorded.items() if name.startswith("fake_"))
    lines = [
        "| selection | batching | jobs recorded, baseline (per round) | planned | circuits | shots | stage s |",
        "|---|---|---|---|---|---|---|",
    ]
    for selection, label in (("", "`closest_to_server` 0.5 (default)"), ("all_", "`all`")):
        for batching in ("sequential", "lockstep"):
            row = recorded.get(f"fake_{selection}{batching}")
            if row is None:
                continue
            per_round = " + ".join(str(n) for n in row["jobs_per_round"])
            lines.append(
                f"| {label} | `{batching}` | {row['jobs']:,} ({per_round}) | "
                f"{planned[f'{selection}{batching}']['baseline']['expected']:,} | {row['circuits']:,} | "
                f"{row['shots']:,} | {row['seconds']:.0f} |")
    lines += [
        "",
        f"Recorded: {result['batching_config']}, `fake` {result['batching_backend']['name']} at "
        f"{result['batching_backend']['shots']} shots (jobs do not depend on shots; on this shared machine a "
        f"`fake` round takes minutes), load average {result['machine']['load_average_1m']} on "
        f"{result['machine']['cpus']} cores. Round 1 selects all 4 clients (nothing to compare with yet), "
        f"later rounds 2 of them: `jobs_ratio` **{result['jobs_ratio']}** over {rounds_run} rounds, "
        f"**{result['jobs_ratio_round_1']}** in round 1 (4 clients)"
        + (f", **{result['jobs_ratio_all_selected']}** with `selection: all`" if result.get(
            "jobs_ratio_all_selected") else "")
        + ". Same final weights and history losses, sequential vs lockstep, on `aer_noisy` "
        f"{result['batching_identical_backend']['name']} ({result['batching_identical_backend']['shots']} shots, "
        f"seeded): {'yes' if result['batching_identical_results'] else 'NO'}.",
        "",
        f"Planned (`llmqfl.planning`, {'equal to' if match else 'NOT equal to'} the recorded jobs above) for the "
        "config's own "
        "rounds, baseline arm and, for the guided arms, the bound (maxiter raised to `max_maxiter` every round):",
        "",
        "| selection | `sequential` jobs | `lockstep` jobs | ratio | guided bound, `sequential` / `lockstep` |",
        "|---|---|---|---|---|",
    ]
    for selection, label in (("", "`closest_to_server` 0.5 (default)"), ("all_", "`all` (4 clients every round)")):
        seq, lock = planned[f"config_rounds_{selection}sequential"], planned[f"config_rounds_{selection}lockstep"]
        ratio = seq["baseline"]["expected"] / lock["baseline"]["expected"]
        lines.append(
            f"| {label} | {seq['baseline']['expected']:,} | {lock['baseline']['expected']:,} | {ratio:.2f} | "
            f"{seq['llm_guided']['bound']:,} / {lock['llm_guided']['bound']:,} |")
    return "\n".join(lines)


def write_docs(path: Path, result: dict[str, Any]) -> None:
    """Replace the text between the batching markers of ``path`` with :func:`batching_markdown`."""
    text = path.read_text()
    start, end = text.find(_MARKERS[0]), text.find(_MARKERS[1])
    if start < 0 or end < start:
        raise SystemExit(f"hardware_path: {path} has no {_MARKERS[0]} ... {_MARKERS[1]} block")
    block = f"{_MARKERS[0]}\n{batching_markdown(result)}\n"
    path.write_text(text[:start] + block + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of the numpy engine (median)")
    parser.add_argument("--aer-repeats", type=int, default=2, help="runs of Aer's density-matrix path (median)")
    parser.add_argument("--rounds", type=int, default=None, help="fewer federation rounds (default: the config's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--part", choices=("all", "noisy", "batching"), default="all",
                        help="noisy: the noisy engine's speed-up; batching: lockstep's jobs ratio; all: both")
    parser.add_argument("--fake-shots", type=int, default=SHOTS, help="shots of the batching part's fake runs")
    parser.add_argument("--no-all-selected", action="store_true",
                        help="batching part: skip the fake runs with federation.selection all (plan only)")
    parser.add_argument("--docs", type=Path, default=None, help="rewrite this file's batching table")
    parser.add_argument("--from-json", type=Path, default=None, help="render a saved result (with --docs)")
    args = parser.parse_args()
    if args.from_json is not None:
        result = json.loads(args.from_json.read_text())
        if args.docs is not None:
            write_docs(args.docs, result)
        print(batching_markdown(result))
        return
    result = {}
    if args.part in ("all", "noisy"):
        result.update(run(args.repeats, args.aer_repeats, args.rounds))
    if args.part in ("all", "batching"):
        result.update(run_batching(args.rounds, args.fake_shots, not args.no_all_selected))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.docs is not None and "jobs_ratio" in result:
        write_docs(args.docs, result)


if __name__ == "__main__":
    main()
