"""The bad-input corpus (tests/bad_inputs/*.yaml, one case a file): each ends in one clear line.

Every case must end with exactly one ``llmqfl`` error line that contains the case's ``expect``
text, a non-zero exit, no Python traceback, and no output left behind: nothing under ``results/``
for a preflight case (the config/data check the Snakefile runs at parse time), nothing partial for a
corrupted-intermediate case (the stage CLI on a copy of small valid intermediates, one file damaged).

Preflight cases run ``python -m llmqfl.stages.check`` (the checks the Snakefile's validation
block calls), the real ``snakemake`` when the case says ``runner: snakemake``, or ``llmqfl run``
(``runner: llmqfl_run``). Every case runs under a timeout (:data:`CASE_TIMEOUT_S`, or the case's
``max_seconds``); one that does not end in time is a hang. The last test prints the counts: cases
tried, clear one-line errors, tracebacks, hangs, partial outputs. The case format is described in
tests/bad_inputs/README.md.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import time
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
CASE_TIMEOUT_S = 120  # a case still running after this is a hang (each should end in seconds)

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
        if isinstance(content, dict) and "mode" in content:
            path.chmod(int(str(content["mode"]), 8))


def _unprivileged() -> None:
    """Run the case without root's permission override, so a read-only folder is read-only to it too.

    As root (CI containers), drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set
    (``prctl(PR_CAPBSET_DROP)``): file modes then bind the case as they bind any user.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _run(command: list[str], *, env: dict[str, str], cwd: Path, timeout: float, unprivileged: bool = False
         ) -> tuple[subprocess.CompletedProcess[str], bool]:
    """The case's process, and whether it hung (still running after ``timeout``: killed, counted)."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout,
                              preexec_fn=_unprivileged if unprivileged else None)
        return proc, False
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return subprocess.CompletedProcess(command, -9, out, err), True


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


def _run_preflight(case: dict[str, Any], work: Path) -> tuple[subprocess.CompletedProcess[str], bool, list[str]]:
    _write_files(_fill(case.get("files") or {}, work), work)
    configfile = work / "case.yaml"
    raw = case.get("raw_config")
    if isinstance(raw, dict):  # {header, repeat, times}: a large file without a large case
        raw = raw["header"] + raw["repeat"] * int(raw["times"]) + raw.get("tail", "")
    configfile.write_text(yaml.safe_dump(_fill(case.get("config") or {}, work)) if raw is None
                          else _fill(raw, work))
    env = _clean_env(work, _fill(case.get("env") or {}, work))
    runner = case.get("runner")
    if runner in ("snakemake", "llmqfl_run"):
        (work / "config").mkdir(exist_ok=True)
        shutil.copy(ROOT / "config" / "config.yaml", work / "config" / "config.yaml")
        start = [SNAKEMAKE] if runner == "snakemake" else [PYTHON, "-m", "llmqfl.cli", "run"]
        command = [*start, "-s", str(ROOT / "Snakefile"), "-d", str(work), "--cores", "1",
                   "--configfile", str(configfile)]
    else:
        command = [PYTHON, "-m", "llmqfl.stages.check", str(ROOT / "config" / "config.yaml"), str(configfile)]
    existing = {p for p in (work / "results", work / "logs") if p.exists()}  # a case's own fixture
    proc, hung = _run(command, env=env, cwd=work, timeout=case.get("max_seconds", CASE_TIMEOUT_S),
                      unprivileged=bool(case.get("unprivileged")))
    partial = [str(p) for p in (work / "results", work / "logs") if p.exists() and p not in existing]
    partial += [str(p) for p in existing if p.is_dir() and any(p.iterdir())]
    return proc, hung, partial


def _run_intermediate(
    case: dict[str, Any], work: Path, tiny: Path
) -> tuple[subprocess.CompletedProcess[str], bool, list[str]]:
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
    proc, hung = _run([PYTHON, "-m", f"llmqfl.stages.{case['stage']}", *args], env=env, cwd=work,
                      timeout=case.get("max_seconds", CASE_TIMEOUT_S))
    (work / "stage.json").unlink()
    partial = [str(out) for out in outputs if _snapshot(out) != before[str(out)]]
    partial += _temporaries(results)
    return proc, hung, partial


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
    started = time.monotonic()
    if case["kind"] == "preflight":
        proc, hung, partial = _run_preflight(case, work)
    else:
        proc, hung, partial = _run_intermediate(case, work, request.getfixturevalue("tiny"))
    seconds = time.monotonic() - started
    # Assert
    output = proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if ERROR_LINE.match(line)]
    traceback = "Traceback (most recent call last)" in output
    clear = not hung and proc.returncode != 0 and len(lines) == 1 and case["expect"] in lines[0]
    OUTCOMES[path.stem] = {"clear": clear, "traceback": traceback, "hang": hung, "partial": bool(partial)}
    assert not hung, f"no end after {seconds:.0f} s: {output[-3000:]}"
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
    hangs = sum(o["hang"] for o in OUTCOMES.values())
    kinds = [_load(p)["kind"] for p in CASES]
    with capsys.disabled():
        print(f"\nbad-input corpus: {len(CASES)} cases ({kinds.count('preflight')} preflight, "
              f"{kinds.count('intermediate')} corrupted intermediates), {tried} tried, {clear} clear one-line "
              f"errors, {tracebacks} tracebacks, {hangs} hangs (each case under {CASE_TIMEOUT_S} s or its "
              f"max_seconds), {partial} partial outputs")
    assert len(CASES) >= MIN_CASES
    assert tracebacks == 0 and partial == 0 and hangs == 0
    assert clear == tried
