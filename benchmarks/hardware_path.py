"""Benchmark: the hardware path's costs on the default config, as one JSON object of ratios from one run.

    python benchmarks/hardware_path.py [--repeats 3] [--aer-repeats 2] [--rounds N] [--out FILE]

* ``noisy_speedup``: the default config's qfl stage (baseline arm, seed 0) on ``aer_noisy``
  FakeManilaV2 at 1024 shots, Aer's density-matrix path (``backend.noisy_engine: aer``) over the
  numpy engine (``auto``, :mod:`llmqfl.quantum.noisy_exact`), median wall seconds of the repeats
  (the whole stage: start-up, features and outputs included); ``noisy_speedup_federation`` the
  same for the federation's own compute seconds (accounting.json client + server seconds);
  ``identical_results`` says whether both wrote the same weights and history losses (same
  distributions, same seeded draws).
* ``jobs_per_arm``: the jobs the run recorded (accounting.json) and what ``llmqfl.stages.plan``
  plans for every arm of the default config (expected, and the bound if guidance raises maxiter).
* ``jobs_ratio``: null; lockstep job batching is not part of this code yet.

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

from llmqfl.config import validate_config  # noqa: E402
from llmqfl.planning import plan_config, sizes_from_files  # noqa: E402
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
        # interleaved (auto, aer, auto, ...) so that both engines see the same machine load
        order = [e for i in range(max(repeats, aer_repeats)) for e, n in (("auto", repeats), ("aer", aer_repeats))
                 if i < n]
        for index, engine in enumerate(order):
            out_dir = work / "qfl" / engine / str(index)
            seconds[engine].append(round(_qfl(work, work / f"{engine}.yaml", out_dir), 3))
            totals = json.loads((out_dir / "accounting.json").read_text())["totals"]
            federation[engine].append(round(totals["client_seconds"] + totals["server_seconds"], 3))
            outputs[engine] = out_dir
        accounting = json.loads((outputs["auto"] / "accounting.json").read_text())["totals"]
        meta = json.loads((work / "data" / "meta.json").read_text())
        sizes = sizes_from_files(meta, json.loads((work / "partitions" / "partitions.json").read_text()))
        plan = plan_config(base, sizes, int(meta["n_classes"]), seeds=[0])
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
        "jobs_ratio": None,
        "jobs_ratio_reason": "lockstep job batching is not implemented yet: one job per client per optimizer "
        "evaluation, clients one after another",
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of the numpy engine (median)")
    parser.add_argument("--aer-repeats", type=int, default=2, help="runs of Aer's density-matrix path (median)")
    parser.add_argument("--rounds", type=int, default=None, help="fewer federation rounds (default: the config's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    result = run(args.repeats, args.aer_repeats, args.rounds)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
