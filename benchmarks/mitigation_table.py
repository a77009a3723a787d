"""Benchmark: what error mitigation does to test accuracy and loss, and what it costs, over seeds.

    python benchmarks/mitigation_table.py [--rounds 3] [--max-items 600] [--maxiter 5] [--shots 256]
        [--seeds 0 1 2] [--out FILE.json] [--docs]

The default config (``config/config.yaml``: its data source, features, model, optimizer and
selection) made small enough for a shared 2-core machine: ``data.max_items``,
``federation.rounds``, ``qfl.optimizer.maxiter`` and ``backend.shots`` from the flags (the
runtime's local mode returns every shot: a FakeBrisbane job of the full default took ~40 s there
under load), the baseline arm (no LLM: the qfl stage alone), one run
per seed (``qfl`` seed: the quantum initial point and optimizer seeds), on:

* ``aer_noisy`` FakeManilaV2: no mitigation, readout mitigation (runtime options: n/a, the Aer
  kinds take none);
* ``fake`` FakeBrisbane (the runtime's local testing mode): no mitigation, readout mitigation, and
  the runtime Sampler's options (Pauli twirling of gates and measurements, XY4 dynamical decoupling);
* the ideal exact simulator (``aer``, shots null) as the noise-free reference.

Per setting: the final round's server test accuracy and test loss (mean and 95% t-interval over
the seeds), and the cost: jobs and shots of the run (accounting.json totals) plus the readout
calibration's jobs and shots (accounting.json ``mitigation``), and the stage's wall seconds.
``--probe`` instead times one job of the default model circuit on fake FakeBrisbane with and
without the runtime options (8 and 64 bindings). Prints one JSON object; ``--docs`` rewrites the
table between the markers of ``--table`` in docs/backends.md (``--from-json`` renders JSONs that
earlier ``--out`` runs of parts of the table wrote, without running: ``--kinds``/``--mitigations``
choose the rows, ``--parallel`` runs seeds side by side).
The data and partition stages run once into a temporary folder (MLflow tracking off).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from doc_tables import rewrite_between  # noqa: E402

from llmqfl.config import load_settings, validate_config  # noqa: E402
from llmqfl.contracts import SERVER  # noqa: E402
from llmqfl.stages import data as data_stage  # noqa: E402
from llmqfl.stages import partition as partition_stage  # noqa: E402
from llmqfl.stages import qfl as qfl_stage  # noqa: E402

DOCS = ROOT / "docs" / "backends.md"
MARKER = "<!-- mitigation-table:{name}:{end} -->"  # docs/backends.md holds one table per --table name
READOUT = {"readout": {"enable": True, "method": "full"}}
RUNTIME = {"twirling": {"gates": True, "measure": True},
           "dynamical_decoupling": {"enable": True, "sequence_type": "XY4"}}
SETTINGS: list[tuple[str, str | None, str, dict[str, Any] | None]] = [
    # (kind, device, mitigation label, backend.mitigation; None = not applicable on this kind)
    ("aer", None, "none (ideal, exact)", {}),
    ("aer_noisy", "FakeManilaV2", "none", {}),
    ("aer_noisy", "FakeManilaV2", "readout", READOUT),
    ("aer_noisy", "FakeManilaV2", "runtime options", None),
    ("fake", "FakeBrisbane", "none", {}),
    ("fake", "FakeBrisbane", "readout", READOUT),
    ("fake", "FakeBrisbane", "runtime options", RUNTIME),
]


def _config(kind: str, device: str | None, mitigation: dict[str, Any], size: dict[str, int]) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["data"]["max_items"] = size["max_items"]
    config["federation"]["rounds"] = size["rounds"]
    config["qfl"]["optimizer"]["maxiter"] = size["maxiter"]
    shots = size["shots"]
    config["backend"] = {"kind": kind, "name": device, "shots": None if kind == "aer" else shots,
                         "mitigation": mitigation}
    return config


def _qfl(work: Path, config_file: Path, seed: int, out_dir: Path) -> float:
    start = time.perf_counter()
    status = qfl_stage.main([
        "--config", str(config_file), "--arm", "baseline", "--seed", str(seed), "--data-dir", str(work / "data"),
        "--partitions-dir", str(work / "partitions"), "--distill-dir", str(work / "distill"),
        "--out-dir", str(out_dir),
    ])
    if status != 0:
        raise SystemExit(f"mitigation_table: the qfl stage failed ({config_file}, seed {seed})")
    return time.perf_counter() - start


def interval(values: list[float]) -> dict[str, Any]:
    """Mean and the 95% t-interval over the seeds (one value per seed)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "values": values}
    sem = stats.sem(values)
    half = float(stats.t.ppf(0.975, n - 1) * sem) if sem > 0 else 0.0
    return {"mean": mean, "low": mean - half, "high": mean + half, "values": values}


def _run_setting(work: Path, kind: str, device: str | None, mitigation: dict[str, Any], seeds: list[int],
                 size: dict[str, int], name: str, parallel: int) -> dict[str, Any]:
    config_file = work / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(_config(kind, device, mitigation, size)))
    accuracy, loss, seconds, jobs, run_shots, cal_jobs, cal_shots = [], [], [], [], [], [], []
    outs = [work / "qfl" / name / f"seed_{seed}" for seed in seeds]
    with ProcessPoolExecutor(max_workers=parallel) as pool:  # seeds side by side (--parallel)
        stage_seconds = list(pool.map(_qfl, [work] * len(seeds), [config_file] * len(seeds), seeds, outs))
    for out, wall in zip(outs, stage_seconds, strict=True):
        seconds.append(round(wall, 2))
        history = pd.read_parquet(out / "history.parquet")
        final = history[history["client"] == SERVER].sort_values("round").iloc[-1]
        accuracy.append(float(final["test_accuracy"]))
        loss.append(float(final["test_loss"]))
        accounting = json.loads((out / "accounting.json").read_text())
        jobs.append(int(accounting["totals"]["jobs"]))
        run_shots.append(int(accounting["totals"]["shots"]))
        readout = ((accounting.get("mitigation") or {}).get("readout")) or {}
        cal_jobs.append(int(readout.get("calibration_jobs", 0)))
        cal_shots.append(int(readout.get("calibration_shots", 0)))
    return {"test_accuracy": interval(accuracy), "test_loss": interval(loss), "seconds": seconds,
            "jobs": jobs, "shots": run_shots, "calibration_jobs": cal_jobs, "calibration_shots": cal_shots}


def run(seeds: list[int], size: dict[str, int], kinds: list[str], labels: list[str] | None, parallel: int
        ) -> dict[str, Any]:
    os.environ["LLMQFL_TRACKING"] = "off"
    rows = []
    with tempfile.TemporaryDirectory(prefix="llmqfl-mitigation-") as tmp:
        work = Path(tmp)
        base = validate_config(_config("aer", None, {}, size))
        data_stage.run(base, work / "data")
        partition_stage.run(base, work / "data", work / "partitions")
        for index, (kind, device, label, mitigation) in enumerate(SETTINGS):
            if kind not in kinds or (labels is not None and label not in labels):
                continue
            row: dict[str, Any] = {"kind": kind, "device": device, "mitigation": label,
                                   "options": mitigation}
            if mitigation is not None:
                row.update(_run_setting(work, kind, device, mitigation, seeds, size, f"s{index}", parallel))
                print(json.dumps({"done": row}), file=sys.stderr, flush=True)  # progress: each row as it ends
            rows.append(row)
    return {
        "benchmark": "mitigation_table",
        "config": f"config/config.yaml with data.max_items {size['max_items']}, federation.rounds {size['rounds']}, "
        f"qfl.optimizer.maxiter {size['maxiter']}, backend.shots {size['shots']}; baseline arm, seeds {seeds}",
        "rows": rows,
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
    }


def _cell(entry: dict[str, Any], digits: int) -> str:
    mean, low, high = entry["mean"], entry["low"], entry["high"]
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _paired(row: dict[str, Any], none: dict[str, Any] | None, key: str) -> str:
    """Per-seed difference from the same kind's unmitigated run (same seeds): mean [95% t-interval]."""
    if none is None or none is row:
        return "-"
    return _cell(interval([a - b for a, b in zip(row[key]["values"], none[key]["values"], strict=True)]), 3)


def markdown(result: dict[str, Any]) -> str:
    """The table as docs/backends.md shows it (generated; do not edit by hand)."""
    lines = [
        f"Generated by `python benchmarks/mitigation_table.py --docs` ({result['config']}); "
        "mean [95% t-interval] over the seeds; paired: per seed, minus the same kind's unmitigated run; "
        "cost per run (mean over seeds): training jobs and shots (accounting.json totals), the readout "
        f"calibration apart, the qfl stage's wall seconds on a 2-core machine ({_load(result)}).",
        "",
        "| kind | device | mitigation | test accuracy | test loss (nats) | accuracy - none (paired) "
        "| loss - none (paired) | jobs | shots | calibration jobs / shots | stage seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    plain = {row["kind"]: row for row in result["rows"] if row["mitigation"] == "none" and row["options"] is not None}
    done = {(row["kind"], row["mitigation"]) for row in result["rows"]}
    kinds = {row["kind"] for row in result["rows"]}
    for kind, device, label, _options in SETTINGS:  # a row of the table that this result did not run
        if kind in kinds and (kind, label) not in done:
            result = {**result, "rows": [*result["rows"], {"kind": kind, "device": device, "mitigation": label,
                                                           "options": None, "not_run": True}]}
    for row in result["rows"]:
        head = f"| {row['kind']} | {row['device'] or 'statevector'} | {row['mitigation']} |"
        if row.get("not_run"):
            lines.append(f"{head} not measured (see the text above the table) | | | | | | | |")
            continue
        if row["options"] is None:
            lines.append(f"{head} n/a (the Aer kinds take no runtime options) | | | | | | | |")
            continue
        mean = {key: sum(row[key]) / len(row[key]) for key in ("jobs", "shots", "calibration_jobs",
                                                                 "calibration_shots", "seconds")}
        lines.append(
            f"{head} {_cell(row['test_accuracy'], 3)} | {_cell(row['test_loss'], 3)} | "
            f"{_paired(row, plain.get(row['kind']), 'test_accuracy')} | "
            f"{_paired(row, plain.get(row['kind']), 'test_loss')} | "
            f"{mean['jobs']:.0f} | "
            f"{mean['shots']:,.0f} | {mean['calibration_jobs']:.0f} / {mean['calibration_shots']:,.0f} | "
            f"{mean['seconds']:.0f} |"
        )
    return "\n".join(lines)


def _load(result: dict[str, Any]) -> str:
    """The 1-minute load average(s) the run recorded at its end (the stage seconds depend on it)."""
    machines = result.get("machine") or []
    loads = [m["load_average_1m"] for m in (machines if isinstance(machines, list) else [machines])]
    return "load " + ", ".join(f"{x:g}" for x in loads) + " at the end" if loads else "load not recorded"


def write_docs(result: dict[str, Any], name: str, path: Path = DOCS) -> None:
    """Replace the text between the markers of table ``name`` in docs/backends.md."""
    markers = (MARKER.format(name=name, end="start"), MARKER.format(name=name, end="end"))
    rewrite_between(path, markers, f"{markdown(result)}\n", "mitigation_table")


def probe_runtime_options(bindings: tuple[int, ...] = (8, 64), shots: int = 256) -> dict[str, Any]:
    """Seconds of ONE job of the default model circuit on fake FakeBrisbane, with and without the runtime options.

    Why: a whole run with twirling + decoupling did not fit this machine; this says what a job costs.
    Each backend runs one warm-up job first (the local simulator is built on the first job).
    """
    import numpy as np

    from llmqfl.quantum.backends.backend import make_backend
    from llmqfl.quantum.models.circuits import build_model
    from llmqfl.quantum.training.primitive import measured_circuit

    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    qfl = config["qfl"]
    model = build_model(kind=qfl["model"], n_qubits=qfl["n_qubits"], n_classes=2,
                        feature_map_reps=qfl["feature_map_reps"], ansatz_reps=qfl["ansatz_reps"])
    circuit = measured_circuit(model)
    values = np.random.default_rng(0).uniform(0, np.pi, (max(bindings), circuit.num_parameters))
    seconds: dict[str, dict[str, float]] = {}
    for label, mitigation in (("none", {}), ("runtime options", RUNTIME)):
        cfg = load_settings({"backend": {"kind": "fake", "name": "FakeBrisbane", "shots": shots,
                                         "mitigation": mitigation}}).backend
        with make_backend(cfg, seed=1, n_qubits=qfl["n_qubits"]) as backend:
            isa = backend.transpile(circuit)
            backend.run_sampler([(isa, values[:1])])
            for n in bindings:
                start = time.perf_counter()
                backend.run_sampler([(isa, values[:n])])
                seconds.setdefault(label, {})[f"{n} bindings"] = round(time.perf_counter() - start, 2)
    return {"benchmark": "mitigation_table --probe", "device": "FakeBrisbane", "shots": shots,
            "runtime_options": RUNTIME, "job_seconds": seconds,
            "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}}


def merged(paths: list[Path]) -> dict[str, Any]:
    """One result from runs of parts of the table (``--kinds``/``--mitigations``) with the same config."""
    parts = [json.loads(path.read_text()) for path in paths]
    configs = {part["config"] for part in parts}
    if len(configs) != 1:
        raise SystemExit(f"mitigation_table: the JSONs were run with different configs: {sorted(configs)}")
    order = [(kind, label) for kind, _device, label, _options in SETTINGS]
    rows = sorted((row for part in parts for row in part["rows"]),
                  key=lambda row: order.index((row["kind"], row["mitigation"])))
    return {**parts[0], "rows": rows, "machine": [part["machine"] for part in parts]}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="federation.rounds")
    parser.add_argument("--max-items", type=int, default=600, help="data.max_items")
    parser.add_argument("--maxiter", type=int, default=5, help="qfl.optimizer.maxiter")
    parser.add_argument("--shots", type=int, default=256, help="backend.shots")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=["aer", "aer_noisy", "fake"], help="run only these kinds' rows")
    parser.add_argument("--table", default="small", help="which table of docs/backends.md --docs rewrites")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--docs", action="store_true", help="rewrite the table in docs/backends.md")
    parser.add_argument("--mitigations", nargs="+", default=None, help="run only these rows (none, readout, ...)")
    parser.add_argument("--parallel", type=int, default=1, help="seeds side by side (stage seconds share cores)")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None,
                        help="only render JSONs written by --out (same config; rows in the order given)")
    parser.add_argument("--probe", action="store_true", help="only time one job with and without the runtime options")
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe_runtime_options(), indent=2))
        return
    size = {"max_items": args.max_items, "rounds": args.rounds, "maxiter": args.maxiter, "shots": args.shots}
    result = merged(args.from_json) if args.from_json else run(args.seeds, size, args.kinds, args.mitigations,
                                                                args.parallel)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.docs:
        write_docs(result, args.table)


if __name__ == "__main__":
    main()
