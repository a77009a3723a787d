"""The bad-input corpus (tests/bad_inputs/*.yaml, one case a file): each ends in one clear line.

Every case must end with exactly one ``llmqfl`` error line that contains the case's ``expect``
text, a non-zero exit, no Python traceback, and no output left behind: nothing under ``results/``
for a preflight case (the config/data check the Snakefile runs at parse time), nothing partial for a
corrupted-intermediate case (the stage CLI on a copy of small valid intermediates, one file damaged).

Preflight cases run ``python -m llmqfl.data.check`` (the checks the Snakefile's validation
block calls), or the real ``snakemake`` when the case says ``runner: snakemake``. The last test
prints the counts: cases tried, clear one-line errors, tracebacks, partial outputs. The case format
is described in tests/bad_inputs/README.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmqfl.config import deep_merge

ROOT = Path(__file__).resolve().parents[2]
CASES_DIR = ROOT / "tests" / "bad_inputs"
CASES = sorted(CASES_DIR.glob("*.yaml"))
PYTHON = sys.executable
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
ERROR_LINE = re.compile(r"^llmqfl( [\w-]+)?: ")
MIN_CASES = 60

# Filled by each case, printed by the last test.
OUTCOMES: dict[str, dict[str, bool]] = {}


def _load(path: Path) -> dict[str, Any]:
    case = yaml.safe_load(path.read_text())
    assert case["kind"] in ("preflight", "intermediate"), path.name
    assert case.get("expect"), path.name
    return case


def _fill(value: Any, work: Path) -> Any:
    """``{work}`` in any string of a case means the case's scratch folder."""
    if isinstance(value, str):
        return value.replace("{work}", str(work))
    if isinstance(value, dict):
        return {k: _fill(v, work) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, work) for v in value]
    return value


def _clean_env(work: Path, extra: dict[str, str]) -> dict[str, str]:
    """No IBM account, no network probes, no tracking store, a HOME of the case's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QISKIT_IBM_", "MLFLOW_", "LLMQFL_"))}
    env |= {"HOME": str(work / "home"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "LLMQFL_TRACKING": "off", "PYTHONPATH": str(ROOT / "src")}
    return env | extra


def _write_files(files: dict[str, Any], work: Path) -> None:
    for rel, content in files.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict) and "hex" in content:
            path.write_bytes(bytes.fromhex(content["hex"]))
        elif isinstance(content, dict) and "repeat" in content:
            path.write_text(content["header"] + content["repeat"] * int(content["times"]) + content.get("tail", ""))
        elif isinstance(content, dict) and "mkdir" in content:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.write_text(str(content))


def _corrupt(path: Path, how: str) -> None:
    """Damage one intermediate the way a crash, a full disk or a stray edit would."""
    if how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00\x13garbage, not what this file should hold\xff" * 8)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "delete":
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    elif how == "json_list":
        path.write_text("[1, 2, 3]\n")
    elif how == "garbage_dir":
        for child in path.iterdir():
            if child.is_file():
                _corrupt(child, "garbage")
    elif how == "duplicate_row":  # the first row twice, the copy's vectors reversed (other probabilities)
        import pandas as pd

        frame = pd.read_parquet(path)
        copy = frame.head(1).copy()
        for column in copy.columns:
            if hasattr(copy[column].iloc[0], "__len__") and not isinstance(copy[column].iloc[0], str):
                copy[column] = [list(copy[column].iloc[0])[::-1]]
        pd.concat([frame, copy], ignore_index=True).to_parquet(path, index=False)
    elif how.startswith("set:"):  # set:COLUMN=NUMBER in every row: a stray edit of a number
        import pandas as pd

        column, value = how.removeprefix("set:").split("=")
        frame = pd.read_parquet(path)
        frame[column] = float(value)
        frame.to_parquet(path, index=False)
    else:
        raise AssertionError(f"unknown corruption {how!r}")


def _replace_all(text: str, places: dict[str, str]) -> str:
    for key, value in places.items():
        text = text.replace(key, value)
    return text


def _snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _temporaries(folder: Path) -> list[str]:
    """Leftovers of an interrupted atomic write: llmqfl.io's hidden temporary folders and files."""
    if not folder.exists():
        return []
    return [str(p) for p in folder.rglob(".*") if p.name != ".llmqfl-output" and p.parent.name != "home"
            and ".snakemake" not in p.parts and not p.name.startswith((".llmqfl-output", ".qiskit"))]


def _run_preflight(case: dict[str, Any], work: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    _write_files(_fill(case.get("files") or {}, work), work)
    configfile = work / "case.yaml"
    configfile.write_text(yaml.safe_dump(_fill(case.get("config") or {}, work)) if "raw_config" not in case
                          else _fill(case["raw_config"], work))
    env = _clean_env(work, _fill(case.get("env") or {}, work))
    if case.get("runner") == "snakemake":
        (work / "config").mkdir(exist_ok=True)
        shutil.copy(ROOT / "config" / "config.yaml", work / "config" / "config.yaml")
        command = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(work), "--cores", "1",
                   "--configfile", str(configfile)]
    else:
        command = [PYTHON, "-m", "llmqfl.data.check", str(ROOT / "config" / "config.yaml"), str(configfile)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=work, timeout=300)
    partial = [str(p) for p in (work / "results", work / "logs") if p.exists()]
    return proc, partial


def _run_intermediate(
    case: dict[str, Any], work: Path, tiny: Path
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    results = work / "results"
    shutil.copytree(tiny, results)
    (work / "stage.json").write_text(json.dumps(deep_merge(TINY, case.get("config") or {})))
    _write_files(_fill(case.get("files") or {}, results), results)
    corrupt = case.get("corrupt")
    if corrupt:
        _corrupt(results / corrupt["path"], corrupt["how"])
    outputs = [results / out for out in case["outputs"]]
    before = {str(out): _snapshot(out) for out in outputs}
    places = {"{results}": str(results), "{cfg}": str(work / "stage.json"),
              "{models}": str(ROOT / "resources" / "models")}
    args = [_replace_all(a, places) for a in case["args"]]
    env = _clean_env(work, {})
    proc = subprocess.run([PYTHON, "-m", f"llmqfl.stages.{case['stage']}", *args], capture_output=True, text=True,
                          env=env, cwd=work, timeout=300)
    (work / "stage.json").unlink()
    partial = [str(out) for out in outputs if _snapshot(out) != before[str(out)]]
    partial += _temporaries(results)
    return proc, partial


TINY = {"experiment": "tiny", "seed": 0, "data": {"source": "coding_vs_intergenic", "max_items": 60},
        "federation": {"n_clients": 3, "rounds": 2}, "llm": {"model": "tiny-gpt2", "max_length": 32},
        "qfl": {"n_qubits": 2, "ansatz_reps": 1, "optimizer": {"maxiter": 2, "max_maxiter": 4}},
        "arms": ["baseline", "llm_guided"], "seeds": [0]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small, valid intermediates of experiment ``tiny``: data and partitions from the real stages,
    distill outputs and a history in their documented formats (no model is trained: seconds, not minutes)."""
    from llmqfl.stages import data as data_stage
    from llmqfl.stages import partition as partition_stage

    results = tmp_path_factory.mktemp("bad-inputs") / "results"
    exp = results / "tiny"
    cfg = json.dumps(TINY)
    os.environ["LLMQFL_TRACKING"] = "off"
    try:
        assert data_stage.main(["--config", cfg, "--out-dir", str(exp / "data")]) == 0
        assert partition_stage.main(["--config", cfg, "--data-dir", str(exp / "data"),
                                     "--out-dir", str(exp / "partitions")]) == 0
    finally:
        os.environ.pop("LLMQFL_TRACKING", None)
    import numpy as np
    import pandas as pd

    for k in range(TINY["federation"]["n_clients"]):
        client = exp / "distill" / f"client_{k}"
        (client / "adapter").mkdir(parents=True)
        (client / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}\n')
        (client / "adapter" / "adapter_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
        (client / "metrics.json").write_text(json.dumps({"eval_loss": 0.6, "train_loss": 0.6, "eval_accuracy": 0.7}))
        rows = pd.read_parquet(exp / "partitions" / f"client_{k}.parquet")["row"]
        pd.DataFrame({"row": rows, "probs": [np.array([0.5, 0.5])] * len(rows)}).to_parquet(client / "teacher.parquet")
    history = exp / "qfl" / "baseline" / "seed_0"
    history.mkdir(parents=True)
    from llmqfl.contracts import HISTORY_COLUMNS, TOTAL_KEYS, history_frame

    rows = [{**dict.fromkeys(HISTORY_COLUMNS, 0), "round": 1, "client": c, "selected": c == 0, "terminated": False,
             "stop_reason": "", "loss": 0.7, "test_accuracy": 0.6} for c in (-1, 0)]
    history_frame(rows).to_parquet(history / "history.parquet", index=False)
    (history / "accounting.json").write_text(json.dumps({"arm": "baseline", "seed": 0, "rounds_run": 1,
                                                          "totals": dict.fromkeys(TOTAL_KEYS, 0)}))
    return results


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_input_ends_in_one_clear_line(path: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # Prepare
    case = _load(path)
    work = tmp_path / "work"
    (work / "home").mkdir(parents=True)
    # Execute
    if case["kind"] == "preflight":
        proc, partial = _run_preflight(case, work)
    else:
        proc, partial = _run_intermediate(case, work, request.getfixturevalue("tiny"))
    # Assert
    output = proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if ERROR_LINE.match(line)]
    traceback = "Traceback (most recent call last)" in output
    clear = proc.returncode != 0 and len(lines) == 1 and case["expect"] in lines[0]
    OUTCOMES[path.stem] = {"clear": clear, "traceback": traceback, "partial": bool(partial)}
    assert not traceback, output[-3000:]
    assert proc.returncode != 0, output[-3000:]
    assert len(lines) == 1, output[-3000:]
    assert case["expect"] in lines[0], lines[0]
    assert not partial, partial


def test_zz_corpus_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """Print what the corpus measured (runs last in this module); the corpus keeps >= 60 cases."""
    tried = len(OUTCOMES)
    clear = sum(o["clear"] for o in OUTCOMES.values())
    tracebacks = sum(o["traceback"] for o in OUTCOMES.values())
    partial = sum(o["partial"] for o in OUTCOMES.values())
    kinds = [_load(p)["kind"] for p in CASES]
    with capsys.disabled():
        print(f"\nbad-input corpus: {len(CASES)} cases ({kinds.count('preflight')} preflight, "
              f"{kinds.count('intermediate')} corrupted intermediates), {tried} tried, {clear} clear one-line "
              f"errors, {tracebacks} tracebacks, {partial} partial outputs")
    assert len(CASES) >= MIN_CASES
    assert tracebacks == 0 and partial == 0
    assert clear == tried
