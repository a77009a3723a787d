"""Student capacity: what the quantum student reaches per embedded task, against classical references.

    .venv/bin/python benchmarks/student_capacity.py                 # every task, 5 seeds (5-9 min on 2 shared cores)
    .venv/bin/python benchmarks/student_capacity.py --tasks splice --seeds 2 --no-docs --out /tmp/s.json

For each embedded task (DNA ``coding_vs_intergenic`` = ``config/config.yaml``; DNA ``splice`` =
``config/config.yaml`` + ``config/experiments/qfl-accuracy-splice.yaml``; text ``rotten_tomatoes`` =
``config/config.yaml`` + ``config/experiments/sweep-text.yaml``) the data and partition stages run into a
scratch folder (the text task's embed stage too: its quantum features are the base LLM's embeddings), and
``llmqfl.federated.run.prepare`` gives the student's own features: every client's train items and the
server's ``server_val`` and test sets. Nothing federated runs: the rows bracket federated training.

Rows (accuracy on the SERVER TEST set; every choice is made on ``server_val``):

* ``majority``: the pooled client train items' most frequent class, predicted for every test item;
* ``feature_ceiling``: a logistic regression on the student's own angles (C chosen on server_val);
* ``raw_classical``: the best classical model on the raw items (DNA: logistic regression on k-mer
  frequencies, k = 2, 3, 4, or on one-hot; text: TF-IDF word or character n-grams + logistic
  regression; model and C chosen on server_val);
* ``quantum:<setting>:<optimizer>:<budget>``: the quantum student trained centrally on the pooled client
  train items from a seeded initial point (Adam's learning rate chosen on server_val from
  ``--learning-rates``; COBYLA has none). A row is skipped when one timed optimizer step on the exact
  engine projects more than ``--skip-limit-s`` seconds per fit (reuploading: no precomputed feature
  state, ~100x slower than the VQC);
* ``local_only``: the quantum row with the best server_val accuracy, trained by each client alone on its
  own train items (mean over clients); ``centralised``: the same setting on the pooled items (the
  chosen quantum row again). The two bracket federated training.

Seeds re-draw the quantum initial point and the optimizer seed (``derive_seed(seed, "qfl", s)``, as
``prepare`` does); the split and partition stay those of the config's root seed. Intervals are 95%
Student-t intervals over seeds; the classical rows are deterministic (n=1). Cost is circuit
executions (items x weight sets) of training, from ``LocalResult.stats``; seconds are one fit's wall
time. Prints one JSON object, writes it to ``--out`` and rewrites the table between the markers of
``--docs`` (docs/student.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # a shared 2-core machine
    os.environ.setdefault(_var, "1")
os.environ.setdefault("LLMQFL_TRACKING", "off")  # the stages log nothing to mlflow.db

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from doc_tables import rewrite_between  # noqa: E402

from llmqfl.config import derive_seed, load_config, stage_config_json  # noqa: E402
from llmqfl.evaluation.stats import summarise  # noqa: E402
from llmqfl.federated.inputs import RunPaths  # noqa: E402
from llmqfl.federated.run import build_model, initial_weights, prepare  # noqa: E402
from llmqfl.quantum import accuracy, make_evaluator, train_local  # noqa: E402
from llmqfl.quantum.training.local_training import parameter_shift_sets  # noqa: E402
from llmqfl.settings import Settings  # noqa: E402

DOCS = ROOT / "docs" / "student.md"
OUT = ROOT / "benchmarks" / "measured" / "student_capacity.json"
MARKERS = ("<!-- student-capacity:start -->", "<!-- student-capacity:end -->")
BASE = "config/config.yaml"
TASKS: dict[str, tuple[str, ...]] = {
    "coding_vs_intergenic": (BASE,),
    "splice": (BASE, "config/experiments/qfl-accuracy-splice.yaml"),
    "rotten_tomatoes": (BASE, "config/experiments/sweep-text.yaml"),
}


def _circuit(model: str, feature_map: str, ansatz: str) -> dict[str, Any]:
    return {"model": model, "feature_map": {"name": feature_map, "reps": 1}, "ansatz": {"name": ansatz, "reps": 3}}


MODELS: dict[str, tuple[str, dict[str, Any]]] = {  # label, qfl overrides
    "paper": ("ZZ + RealAmplitudes (paper)", _circuit("vqc", "zz", "real_amplitudes")),
    "default": ("Z + EfficientSU2 (default)", _circuit("vqc", "z", "efficient_su2")),
    "z_ra": ("Z + RealAmplitudes", _circuit("vqc", "z", "real_amplitudes")),
    "reuploading": ("reuploading Z + EfficientSU2", _circuit("reuploading", "z", "efficient_su2")),
}
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
LEARNING_RATES = (0.03, 0.1, 0.3)


@dataclass(frozen=True)
class Setting:
    """One quantum row: a model setting, an optimizer and its budget (COBYLA evaluations, Adam steps)."""

    model: str
    optimizer: str
    budget: int

    @property
    def key(self) -> str:
        return f"quantum:{self.model}:{self.optimizer}:{self.budget}"


SETTINGS = (
    Setting("paper", "cobyla", 10), Setting("paper", "cobyla", 18), Setting("paper", "cobyla", 100),
    Setting("paper", "adam", 50), Setting("paper", "adam", 200),  # 200: the circuit against z_ra and default
    Setting("default", "adam", 5), Setting("default", "adam", 20), Setting("default", "adam", 50),
    Setting("default", "adam", 200), Setting("default", "cobyla", 100),
    Setting("z_ra", "adam", 200),
    Setting("reuploading", "adam", 50),
)


def say(message: str) -> None:
    print(f"student_capacity: {message}", file=sys.stderr, flush=True)


# -- the task's data, through the package's own stages --------------------------------------------------
@dataclass
class Task:
    name: str
    config: dict[str, Any]
    prepared: Any
    raw: dict[str, Any]  # pooled train / server_val / test raw items and labels
    kind: str
    n_classes: int


class Skip(Exception):
    """A task that cannot run here (e.g. text without its embedded model asset): its reason goes in the table."""


def stage(module: Any, argv: list[str]) -> None:
    rc = module.main(argv)
    if rc != 0:
        raise RuntimeError(f"{module.__name__} exited with {rc} (its one-line error is on stderr)")


def build_task(name: str, scratch: Path, max_items: int | None) -> Task:
    """Data (+ embed for text) and partition stages into ``scratch``, then the student's features."""
    import pandas as pd

    from llmqfl.stages import data as data_stage
    from llmqfl.stages import partition as partition_stage

    overrides = {"data": {"max_items": max_items}} if max_items else {}
    config = load_config([ROOT / f for f in TASKS[name]], overrides)
    folder = scratch / name
    data_dir, partitions_dir = folder / "data", folder / "partitions"
    stage(data_stage, ["--config", stage_config_json(config, "data"), "--out-dir", str(data_dir)])
    stage(partition_stage, ["--config", stage_config_json(config, "partition"), "--data-dir", str(data_dir),
                            "--out-dir", str(partitions_dir)])
    meta = json.loads((data_dir / "meta.json").read_text())
    embeddings = None
    if meta["kind"] != "dna" and config["qfl"]["features"]["source"] in ("auto", "embedding"):
        from llmqfl.stages import embed as embed_stage

        embeddings = folder / "embeddings.parquet"
        started = time.perf_counter()
        try:
            stage(embed_stage, ["--config", stage_config_json(config, "embed"), "--data-dir", str(data_dir),
                                "--out", str(embeddings), "--models-root", str(ROOT / "resources" / "models")])
        except Exception as exc:  # no model asset offline, or the stage failed: say why in the table
            raise Skip(f"the embed stage (base-LLM features, llm.model {config['llm']['model']}) failed: "
                       f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
        say(f"{name}: embed stage {time.perf_counter() - started:.0f} s")
    paths = RunPaths(data_dir, partitions_dir, folder / "distill", folder / "out", embeddings=embeddings)
    prepared = prepare(paths, Settings.from_config(config), "baseline", 0)
    train = pd.read_parquet(data_dir / "train.parquet").set_index("row")
    rows = []
    for k in range(config["federation"]["n_clients"]):
        part = pd.read_parquet(partitions_dir / f"client_{k}.parquet")
        rows.append(part.loc[part["split"].astype(str) == "train", "row"].to_numpy(dtype=np.int64))
    pooled = np.concatenate(rows)
    raw = {"train_items": train.loc[pooled, "item"].astype(str).tolist(),
           "train_y": train.loc[pooled, "label"].to_numpy(dtype=np.int64)}
    for split in ("server_val", "test"):
        frame = pd.read_parquet(data_dir / f"{split}.parquet").sort_values("row")
        raw[f"{split}_items"] = frame["item"].astype(str).tolist()
        raw[f"{split}_y"] = frame["label"].to_numpy(dtype=np.int64)
    pooled_y = np.concatenate([c.train_y for c in prepared.clients])
    if not np.array_equal(pooled_y, raw["train_y"]) or not np.array_equal(raw["test_y"], prepared.server.test_y):
        raise RuntimeError(f"{name}: raw items and the student's features are not in the same order")
    return Task(name, config, prepared, raw, meta["kind"], int(meta["n_classes"]))


# -- classical rows ------------------------------------------------------------------------------------
def stat(values: Sequence[float]) -> dict[str, Any]:
    summary = summarise(list(values))
    assert summary is not None
    return {"mean": summary.mean, "low": summary.low, "high": summary.high, "n": summary.n,
            "values": list(summary.values)}


def select_on_val(candidates: Sequence[tuple[str, Callable[[], Any]]], x_of: Callable[[str, str], Any],
                  y: dict[str, np.ndarray]) -> dict[str, Any]:
    """Fit every (description, factory) on train; keep the best server_val accuracy (first on ties); score test."""
    best: dict[str, Any] | None = None
    for description, factory in candidates:
        started = time.perf_counter()
        model = factory().fit(x_of(description, "train"), y["train"])
        seconds = time.perf_counter() - started
        val = float(model.score(x_of(description, "server_val"), y["server_val"]))
        if best is None or val > best["val"]:
            best = {"model": model, "description": description, "val": val, "seconds": seconds}
    assert best is not None
    test = float(best["model"].score(x_of(best["description"], "test"), y["test"]))
    return {"chosen": best["description"], "val": stat([best["val"]]), "test": stat([test]),
            "seconds": best["seconds"]}


def lr_factory(c: float) -> Callable[[], Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return lambda: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))


def classical_rows(task: Task) -> list[dict[str, Any]]:
    server, raw = task.prepared.server, task.raw
    y = {"train": raw["train_y"], "server_val": raw["server_val_y"], "test": raw["test_y"]}
    majority = int(np.bincount(y["train"], minlength=task.n_classes).argmax())
    rows = [{"key": "majority", "label": "majority class", "kind": "classical",
             "setting": f"always class {majority} (the pooled train items' most frequent)",
             "val": stat([float(np.mean(y["server_val"] == majority))]),
             "test": stat([float(np.mean(y["test"] == majority))]), "circuits": None, "seconds": 0.0}]
    angles = {"train": np.vstack([c.train_x for c in task.prepared.clients]), "server_val": server.val_x,
              "test": server.test_x}
    ceiling = select_on_val([(f"C={c:g}", lr_factory(c)) for c in C_GRID], lambda _, s: angles[s], y)
    rows.append({"key": "feature_ceiling", "label": "logistic regression on the student's features",
                 "kind": "classical", "setting": f"{angles['train'].shape[1]} angles, {ceiling['chosen']}",
                 "val": ceiling["val"], "test": ceiling["test"], "circuits": None, "seconds": ceiling["seconds"]})
    rows.append(raw_classical(task, y))
    return rows


def raw_classical(task: Task, y: dict[str, np.ndarray]) -> dict[str, Any]:
    raw = task.raw
    splits = ("train", "server_val", "test")
    if task.kind == "dna":
        from llmqfl.data.encoders import kmer_spectrum, onehot

        width = max(len(s) for s in raw["train_items"])
        encodings = {f"{k}-mer frequencies": (lambda items, k=k: kmer_spectrum(items, k)) for k in (2, 3, 4)}
        encodings["one-hot"] = lambda items: onehot(items, length=width)
        matrices = {name: {s: encode(raw[f"{s}_items"]) for s in splits} for name, encode in encodings.items()}
        candidates = [(f"LR on {name}, C={c:g}", lr_factory(c)) for name in encodings for c in C_GRID]
        chosen = select_on_val(candidates, lambda d, s: matrices[d.split(", C=")[0][len("LR on "):]][s], y)
    else:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        vectorizers = {"word 1-2-grams": {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 1},
                       "char 2-5-grams": {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True}}

        def factory(options: dict[str, Any], c: float) -> Callable[[], Any]:
            return lambda: make_pipeline(TfidfVectorizer(**options), LogisticRegression(C=c, max_iter=5000))

        candidates = [(f"TF-IDF {name} + LR, C={c:g}", factory(opts, c))
                      for name, opts in vectorizers.items() for c in C_GRID]
        chosen = select_on_val(candidates, lambda _, s: raw[f"{s}_items"], y)
    return {"key": "raw_classical", "label": "best classical model on the raw items", "kind": "classical",
            "setting": chosen["chosen"], "val": chosen["val"], "test": chosen["test"], "circuits": None,
            "seconds": chosen["seconds"]}


# -- quantum rows --------------------------------------------------------------------------------------
def model_config(task: Task, model: str) -> Settings:
    from llmqfl.config import deep_merge, load_settings

    return load_settings(deep_merge(task.config, {"qfl": MODELS[model][1]}))


def fit(evaluator: Any, x: np.ndarray, y: np.ndarray, x0: np.ndarray, setting: Setting, seed: int,
        lr: float) -> Any:
    return train_local(evaluator, x, y, x0=x0, optimizer=setting.optimizer, maxiter=setting.budget, seed=seed,
                       learning_rate=lr)


def score(evaluator: Any, weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(accuracy(evaluator.probabilities(x, weights[None])[0], y))


def seeds_of(task: Task, n_seeds: int, n_params: int, config: Settings) -> list[tuple[int, np.ndarray]]:
    """(optimizer seed, initial point) per replicate s, drawn as ``prepare`` draws them for seed s."""
    out = []
    for s in range(n_seeds):
        base = derive_seed(task.config["seed"], "qfl", s)
        out.append((derive_seed(base, "optimizer"), initial_weights(config, n_params, base)))
    return out


def projected_seconds(evaluator: Any, setting: Setting, x: np.ndarray, x0: np.ndarray) -> float:
    """One fit's seconds, from the time of one optimizer call (an Adam step, a COBYLA evaluation) on every item.

    Timed on all the items: per-call overheads make a few items a poor guide (10x either way).
    """
    sets = parameter_shift_sets(x0) if setting.optimizer == "adam" else x0[None, :]
    evaluator.probabilities(x[:1], sets[:1])  # warm-up (circuit compilation, caches)
    started = time.perf_counter()
    evaluator.probabilities(x, sets)
    return (time.perf_counter() - started) * (setting.budget + 1)


def quantum_row(task: Task, setting: Setting, n_seeds: int, learning_rates: Sequence[float],
                skip_limit_s: float) -> dict[str, Any]:
    config = model_config(task, setting.model)
    model = build_model(config, task.n_classes)
    evaluator = make_evaluator(model, backend=None, seed=0)
    clients, server = task.prepared.clients, task.prepared.server
    x = np.vstack([c.train_x for c in clients])
    y = np.concatenate([c.train_y for c in clients])
    label, _ = MODELS[setting.model]
    row: dict[str, Any] = {
        "key": setting.key, "label": f"{label}, {model.n_params} weights", "kind": "quantum",
        "model": setting.model, "optimizer": setting.optimizer, "budget": setting.budget,
        "n_params": int(model.n_params),
    }
    replicates = seeds_of(task, n_seeds, model.n_params, config)
    rates = tuple(learning_rates) if setting.optimizer == "adam" else (None,)
    projected = projected_seconds(evaluator, setting, x, replicates[0][1])
    row["projected_seconds_per_fit"] = projected
    if projected > skip_limit_s:
        row["skipped"] = (f"the exact engine projects {projected:.0f} s per fit ({len(replicates) * len(rates)} fits: "
                          f"{len(replicates)} seeds x {len(rates)} learning rates), over the {skip_limit_s:g} s limit")
        return row
    runs: dict[Any, list[dict[str, float]]] = {}
    for rate in rates:
        runs[rate] = []
        for optimizer_seed, x0 in replicates:
            result = fit(evaluator, x, y, x0, setting, optimizer_seed, rate if rate is not None else 0.1)
            runs[rate].append({"val": score(evaluator, result.weights, server.val_x, server.val_y),
                               "test": score(evaluator, result.weights, server.test_x, server.test_y),
                               "circuits": float(result.stats.circuits), "seconds": float(result.seconds)})
    # the learning rate with the best mean server_val accuracy (first in the grid on ties)
    chosen = max(rates, key=lambda r: (np.mean([run["val"] for run in runs[r]]), -rates.index(r)))
    best = runs[chosen]
    row.update({
        "learning_rate": chosen,
        "val_by_learning_rate": {str(r): float(np.mean([run["val"] for run in runs[r]])) for r in rates},
        "val": stat([run["val"] for run in best]), "test": stat([run["test"] for run in best]),
        "circuits": float(np.mean([run["circuits"] for run in best])),
        "seconds": float(np.mean([run["seconds"] for run in best])),
    })
    return row


def local_only_row(task: Task, chosen: dict[str, Any], n_seeds: int) -> dict[str, Any]:
    setting = Setting(chosen["model"], chosen["optimizer"], chosen["budget"])
    config = model_config(task, setting.model)
    model = build_model(config, task.n_classes)
    evaluator = make_evaluator(model, backend=None, seed=0)
    server, rate = task.prepared.server, chosen.get("learning_rate") or 0.1
    vals, tests, circuits, seconds = [], [], [], []
    for optimizer_seed, x0 in seeds_of(task, n_seeds, model.n_params, config):
        per_client = [fit(evaluator, c.train_x, c.train_y, x0, setting, optimizer_seed, rate)
                      for c in task.prepared.clients]
        vals.append(float(np.mean([score(evaluator, r.weights, server.val_x, server.val_y) for r in per_client])))
        tests.append(float(np.mean([score(evaluator, r.weights, server.test_x, server.test_y) for r in per_client])))
        circuits.append(float(sum(r.stats.circuits for r in per_client)))
        seconds.append(float(sum(r.seconds for r in per_client)))
    n_clients = len(task.prepared.clients)
    return {"key": "local_only", "label": f"local only: each of {n_clients} clients alone (mean over clients)",
            "kind": "bracket", "setting": chosen["key"], "learning_rate": chosen.get("learning_rate"),
            "val": stat(vals), "test": stat(tests), "circuits": float(np.mean(circuits)),
            "seconds": float(np.mean(seconds)), "cost_note": "circuits and seconds summed over the clients"}


# -- one task, every task ------------------------------------------------------------------------------
def measure_task(name: str, *, scratch: Path, n_seeds: int, settings: Sequence[Setting],
                 learning_rates: Sequence[float], max_items: int | None, skip_limit_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        task = build_task(name, scratch, max_items)
    except Skip as exc:
        reason = str(exc)
        say(f"{name}: skipped ({reason})")
        return {"task": name, "configs": list(TASKS[name]), "skipped": reason, "rows": []}
    prepared, server = task.prepared, task.prepared.server
    info = {
        "task": name, "configs": list(TASKS[name]), "kind": task.kind, "n_classes": task.n_classes,
        "features": prepared.features.source, "feature_fit": prepared.features.fit,
        "n_qubits": int(task.config["qfl"]["n_qubits"]), "n_clients": len(prepared.clients),
        "n_train_pooled": int(sum(len(c.train_y) for c in prepared.clients)),
        "n_train_per_client": [len(c.train_y) for c in prepared.clients],
        "n_server_val": len(server.val_y), "n_test": len(server.test_y),
    }
    rows = classical_rows(task)
    say(f"{name}: classical rows done ({time.perf_counter() - started:.0f} s)")
    quantum = []
    for setting in settings:
        row = quantum_row(task, setting, n_seeds, learning_rates, skip_limit_s)
        quantum.append(row)
        shown = "skipped" if "skipped" in row else f"test {row['test']['mean']:.3f}, {row['seconds']:.1f} s/fit"
        say(f"{name}: {setting.key}: {shown}")
    ran = [r for r in quantum if "skipped" not in r]
    # the bracket's setting: the best server_val accuracy, the cheaper row on ties
    chosen = max(ran, key=lambda r: (r["val"]["mean"], -r["circuits"]))
    rows.append(local_only_row(task, chosen, n_seeds))
    centralised = {k: chosen[k] for k in ("val", "test", "circuits", "seconds", "learning_rate")}
    rows.append({"key": "centralised", "label": "centralised: the pooled client train items",
                 "kind": "bracket", "setting": chosen["key"], **centralised})
    rows.extend(quantum)
    info.update({"rows": rows, "chosen_setting": chosen["key"], "seconds": time.perf_counter() - started})
    say(f"{name}: done in {info['seconds']:.0f} s")
    return info


def measure(tasks: Sequence[str], *, n_seeds: int = 5, settings: Sequence[Setting] = SETTINGS,
            learning_rates: Sequence[float] = LEARNING_RATES, max_items: int | None = None,
            skip_limit_s: float = 60.0, scratch: Path | None = None) -> dict[str, Any]:
    """The whole result (one JSON object); ``scratch`` holds the stages' files (a temporary folder if None)."""
    if n_seeds < 2:
        raise SystemExit("student_capacity: --seeds must be >= 2 for an interval")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmqfl-student-") as tmp:
        folder = Path(scratch) if scratch is not None else Path(tmp)
        results = {name: measure_task(name, scratch=folder, n_seeds=n_seeds, settings=settings,
                                      learning_rates=learning_rates, max_items=max_items,
                                      skip_limit_s=skip_limit_s) for name in tasks}
    return {
        "benchmark": "student_capacity",
        "evaluated_on": ("server test set; learning rates, C, classical models and the bracket setting "
                         "chosen on server_val"),
        "seeds": n_seeds, "learning_rates": list(learning_rates), "confidence": 0.95,
        "interval": "Student-t over seeds (quantum initial point and optimizer seed); classical rows n=1",
        "cost": "circuit executions (items x weight sets) of training, from LocalResult.stats",
        "skip_limit_s": skip_limit_s, "max_items": max_items,
        "tasks": results, "seconds": time.perf_counter() - started,
    }


# -- the table -----------------------------------------------------------------------------------------
def pct(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "–"
    if summary["low"] is None:
        return f"{100 * summary['mean']:.1f}% (n={summary['n']})"
    return f"{100 * summary['mean']:.1f}% [{100 * summary['low']:.1f}, {100 * summary['high']:.1f}] (n={summary['n']})"


def count(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value:,.0f}"


def describe(row: dict[str, Any]) -> tuple[str, str]:
    if row["kind"] == "quantum":
        cobyla = row["optimizer"] == "cobyla"
        budget = f"COBYLA {row['budget']} evaluations" if cobyla else f"Adam {row['budget']} steps"
        if row.get("learning_rate") is not None:
            budget += f", lr {row['learning_rate']:g}"
        return row["label"], budget
    if row["kind"] == "bracket":
        _, model, optimizer, budget = row["setting"].split(":")
        label = MODELS[model][0]
        what = f"COBYLA {budget}" if optimizer == "cobyla" else f"Adam {budget} steps"
        if row.get("learning_rate") is not None:
            what += f", lr {row['learning_rate']:g}"
        return row["label"], f"{label}, {what}"
    return row["label"], row["setting"]


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Generated by `benchmarks/student_capacity.py` ({result['seeds']} seeds, Adam learning rates "
             f"{', '.join(f'{r:g}' for r in result['learning_rates'])} chosen on server_val; "
             f"{result['seconds'] / 60:.1f} min). Accuracy on the server test set, mean "
             "[95% t-interval over seeds] (n); server_val is where every choice was made. Circuit executions "
             "and seconds are one training fit's (local only: summed over the clients).", ""]
    for name, task in result["tasks"].items():
        lines.append(f"### {name}")
        lines.append("")
        if task.get("skipped"):
            lines += [f"Skipped: {task['skipped']}", ""]
            continue
        half = 100 * 1.96 * math.sqrt(0.25 / task["n_test"])
        lines.append(
            f"{task['kind'].upper()}, {task['n_classes']} classes; features `{task['features']}` -> PCA to "
            f"{task['n_qubits']} angles (fit {task['feature_fit']}); {task['n_clients']} clients, "
            f"{task['n_train_pooled']} pooled train items ({min(task['n_train_per_client'])}-"
            f"{max(task['n_train_per_client'])} per client), {task['n_server_val']} server_val, {task['n_test']} "
            f"test items (one accuracy's binomial 95% half-width is up to ±{half:.1f} points; it applies to every "
            f"row alike and is not in the intervals). Configs: {', '.join(f'`{c}`' for c in task['configs'])}.")
        lines += ["", "| row | setting | server_val | test accuracy [95% CI] | circuit executions | seconds |",
                  "|---|---|---|---|---|---|"]
        for row in task["rows"]:
            what, setting = describe(row)
            if "skipped" in row:
                lines.append(f"| {what} | {setting} | – | skipped: {row['skipped']} | – | – |")
                continue
            val = f"{100 * row['val']['mean']:.1f}%"
            lines.append(f"| {what} | {setting} | {val} | {pct(row['test'])} | {count(row['circuits'])} | "
                         f"{row['seconds']:.2f} |")
        lines += ["", *summary_lines(task), ""]
    return "\n".join(lines).rstrip() + "\n"


def summary_lines(task: dict[str, Any]) -> list[str]:
    rows = {r["key"]: r for r in task["rows"]}
    ceiling = rows["feature_ceiling"]["test"]["mean"]
    centralised, local = rows["centralised"], rows["local_only"]
    best = centralised["test"]["mean"]
    raw, majority = rows["raw_classical"]["test"]["mean"], rows["majority"]["test"]["mean"]
    out = [f"- Chosen on server_val: `{task['chosen_setting']}`; centralised {100 * best:.1f}% against the "
           f"feature ceiling {100 * ceiling:.1f}% ({100 * (best - ceiling):+.1f} points) and the raw-data model "
           f"{100 * raw:.1f}% ({100 * (best - raw):+.1f} points); local only {100 * local['test']['mean']:.1f}%; "
           f"majority {100 * majority:.1f}%."]
    paper = [r for r in task["rows"] if r.get("model") == "paper" and "skipped" not in r]
    if paper:
        shown = "; ".join(f"{'COBYLA' if r['optimizer'] == 'cobyla' else 'Adam'} {r['budget']}: "
                          f"{100 * r['test']['mean']:.1f}% ({100 * (r['test']['mean'] - best):+.1f})" for r in paper)
        out.append(f"- Paper setting ({paper[0]['n_params']} weights), test accuracy (points against the chosen "
                   f"student): {shown}.")
    return out


def write_docs(path: Path, result: dict[str, Any]) -> None:
    rewrite_between(path, MARKERS, markdown(result), "student_capacity")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--seeds", type=int, default=5, help="replicates (quantum initial point / optimizer seed)")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=list(LEARNING_RATES))
    parser.add_argument("--max-items", type=int, default=None, help="override data.max_items (quick runs)")
    parser.add_argument("--skip-limit-s", type=float, default=60.0,
                        help="skip a quantum row whose fit is projected slower")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--docs", type=Path, default=DOCS)
    parser.add_argument("--no-docs", action="store_true", help="leave docs/student.md alone")
    parser.add_argument("--from-json", type=Path, default=None, help="render an earlier --out file, run nothing")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        result = json.loads(args.from_json.read_text())
    else:
        result = measure(args.tasks, n_seeds=args.seeds, learning_rates=args.learning_rates,
                         max_items=args.max_items, skip_limit_s=args.skip_limit_s)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_docs:
        write_docs(args.docs, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
