"""Fault injection: the real pipeline, SIGKILLed at seeded random points, ends as an uninterrupted run does.

Two journeys on the tiny config (``tests/configs/tiny.yaml``), each in its own scratch project:

* ``exact``: the whole pipeline on the exact simulator (data, partition, distill, qfl, evaluate, report);
* ``shots``: then the same project switched to the Aer sampler with 128 shots (qfl, evaluate and report
  re-run; a resumed qfl must draw the shots an uninterrupted one draws).

An uninterrupted reference project runs the same two journeys first and times every stage's jobs. The
interrupted project is started, killed (SIGKILL to snakemake and every job, as ``kill -9`` of the
process group) when the next planned stage has run for a seeded fraction of its reference time,
restarted, killed again, ... until it completes; each restart does only what the README's Recovery
section says (``snakemake --unlock`` when Snakemake reports the stale lock). Then: the outputs equal
the reference's (timing fields aside), no MLflow run is left RUNNING, no temporary or unreadable file
is left anywhere under ``results/``. The counts (points killed per stage, restarts) are printed.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
EXPERIMENT = "faults"
STAGES = ("data", "partition", "distill", "qfl", "evaluate", "report")
SHOTS = {"backend": "{kind: aer, shots: 128}"}
# kill plan per journey: targeted stages in pipeline order (seeded fractions of their reference time)
PLANS = {
    "exact": ("data", "data", "partition", "partition", "distill", "distill", "distill", "distill", "qfl", "qfl",
              "qfl", "qfl", "evaluate", "evaluate", "evaluate", "report", "report", "report"),
    "shots": ("qfl", "qfl", "qfl", "qfl", "qfl", "qfl", "evaluate", "evaluate", "evaluate", "report", "report"),
}
# a kill lands this far into the target stage's job, as a fraction of its longest reference job: early
# enough that a resumed (shorter) job is still running when the kill comes
KILL_AT = (0.02, 0.35)
SEED = 20261201
POLL_S = 0.1
# measured, not computed: times, rates and memory differ from run to run by nature
TIMING = re.compile(r"second|time|duration|wall|elapsed|started|finished|date|memory|_mb$|rss", re.I)
_STAGE_ARG = re.compile(r"llmqfl\.stages\.([a-z_]+)")


@dataclass
class Journey:
    """What one interrupted journey did."""

    kills: Counter = field(default_factory=Counter)  # stage running at the kill -> count
    restarts: int = 0
    unlocks: int = 0
    seconds: float = 0.0


# -- processes -----------------------------------------------------------------------------------
def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _stage_jobs(pgid: int) -> dict[int, str]:
    """pid -> stage of the job processes in process group ``pgid`` (this project's snakemake and its jobs)."""
    stages = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is None or int(stat[2]) != pgid:  # field 5: process group
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        match = _STAGE_ARG.search(cmdline)
        if match and "python" in cmdline:
            stages[int(entry.name)] = match.group(1)
    return stages


def _family(stage: str) -> str:
    """distill_aggregate / distill_full / embed count as distill; rounds (per-round tables) as evaluate."""
    if stage.startswith("distill") or stage == "embed":
        return "distill"
    return {"rounds": "evaluate"}.get(stage, stage)


# -- projects ------------------------------------------------------------------------------------
def _project(base: Path) -> tuple[Path, dict[str, str]]:
    """A scratch project (the committed data and the asset cache linked in) with its own MLflow store."""
    work = base / "work"
    (work / "config").mkdir(parents=True)
    # schema defaults + tests/configs/tiny.yaml only: the default config's extras (replicates, the
    # LoRA vs full fine-tuning reference) are not what this test is about
    (work / "config" / "config.yaml").write_text(f"experiment: {EXPERIMENT}\n")
    (work / "data").symlink_to(ROOT / "data")
    (ROOT / "resources").mkdir(exist_ok=True)
    (work / "resources").symlink_to(ROOT / "resources")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "LLMQFL_TRACKING": "on"}
    env.pop("LLMQFL_MLFLOW_PARENT_RUN_ID", None)
    return work, env


def _command(work: Path, journey: str, *extra: str) -> list[str]:
    config = [f"experiment={EXPERIMENT}"] + ([f"{k}={v}" for k, v in SHOTS.items()] if journey == "shots" else [])
    return [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "-d", str(work), "--configfile",
            str(ROOT / "tests" / "configs" / "tiny.yaml"), "--cores", "2", *extra, "--config", *config]


def _start(work: Path, env: dict[str, str], journey: str, log: Path) -> subprocess.Popen:
    handle = log.open("a")
    return subprocess.Popen(_command(work, journey), env=env, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)


def reference_run(work: Path, env: dict[str, str], journey: str) -> dict[str, float]:
    """Run the journey uninterrupted; return each stage's longest single job time (the kill scale)."""
    process = _start(work, env, journey, work / f"reference-{journey}.log")
    first_seen: dict[int, float] = {}
    last_seen: dict[int, tuple[float, str]] = {}
    while process.poll() is None:
        now = time.monotonic()
        for pid, stage in _stage_jobs(process.pid).items():
            first_seen.setdefault(pid, now)
            last_seen[pid] = (now, stage)
        time.sleep(POLL_S)
    assert process.returncode == 0, (work / f"reference-{journey}.log").read_text()[-4000:]
    durations: dict[str, float] = {}
    for pid, (end, stage) in last_seen.items():
        family = _family(stage)
        durations[family] = max(durations.get(family, 0.0), end - first_seen[pid])
    return durations


def interrupted_run(work: Path, env: dict[str, str], journey: str, durations: dict[str, float],
                    rng: random.Random) -> Journey:
    """Start, kill at the next planned point, restart ... until the pipeline completes."""
    record, plan = Journey(), list(PLANS[journey])
    log = work / f"faults-{journey}.log"
    started = time.monotonic()
    while True:
        offset = log.stat().st_size if log.exists() else 0
        process = _start(work, env, journey, log)
        armed_at, delay = None, 0.0
        while process.poll() is None:
            running = {_family(s) for s in _stage_jobs(process.pid).values()}
            order = [STAGES.index(s) for s in running if s in STAGES]
            while plan and order and STAGES.index(plan[0]) < min(order):
                plan.pop(0)  # that stage is already done: its remaining points cannot be reached
            if armed_at is not None and plan and plan[0] not in running:
                armed_at = None  # the target's job ended first: wait for its next job (a re-run, or the next one)
            if plan and armed_at is None and plan[0] in running:
                armed_at, delay = time.monotonic(), rng.uniform(*KILL_AT) * durations.get(plan[0], 1.0)
            if armed_at is not None and time.monotonic() - armed_at >= delay:
                hit = running or {"snakemake"}
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                record.kills[plan.pop(0) if plan[0] in hit else sorted(hit)[0]] += 1
                break
            time.sleep(POLL_S)
        if process.returncode == 0:
            break
        record.restarts += 1
        output = log.read_text()[offset:]
        if process.returncode != -signal.SIGKILL and "cannot be locked" not in output and "LockException" not in output:
            raise AssertionError(f"the {journey} journey failed after a restart:\n{output[-4000:]}")
        if process.returncode == -signal.SIGKILL and not _locked(work):
            continue  # killed before Snakemake took its lock
        # the README's Recovery: a killed snakemake leaves its lock, `--unlock` clears it (done at once
        # after a kill rather than after a refused start: the same step, one Snakefile parse less)
        unlock = subprocess.run(_command(work, journey, "--unlock"), env=env, capture_output=True, text=True)
        assert unlock.returncode == 0, unlock.stderr[-2000:]
        record.unlocks += 1
        assert record.restarts < 80, "the journey does not converge"
    record.seconds = time.monotonic() - started
    return record


def _locked(work: Path) -> bool:
    locks = work / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


# -- comparison ----------------------------------------------------------------------------------
def _untimed(value):
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if not TIMING.search(str(k))}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _content(path: Path):
    """A file's content for comparison, timing fields dropped; raises if the file is unreadable."""
    suffix = path.suffix
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
        return frame.drop(columns=[c for c in frame.columns if TIMING.search(c)])
    if suffix == ".json":
        return _untimed(json.loads(path.read_text()))
    if suffix == ".npy":
        return np.load(path)
    if suffix == ".npz":
        with np.load(path) as archive:
            return {k: archive[k] for k in archive.files}
    if suffix == ".qpy":  # QPY stores each Parameter's random uuid: compare the circuit's instructions
        from qiskit import qpy

        with path.open("rb") as handle:
            (circuit,) = qpy.load(handle)
        return [(i.operation.name, [str(p) for p in i.operation.params], [circuit.find_bit(q).index for q in i.qubits])
                for i in circuit.data]
    if suffix in (".png", ".md", ".csv", ".html", ".tsv", ".log", ".txt"):
        path.read_bytes()
        return None  # figures and prose carry times (idle seconds, stage durations): readable is enough
    return path.read_bytes()


def _equal(left, right) -> bool:
    if isinstance(left, pd.DataFrame):
        try:
            pd.testing.assert_frame_equal(left, right)
        except AssertionError:
            return False
        return True
    if isinstance(left, np.ndarray):
        return isinstance(right, np.ndarray) and np.array_equal(left, right)
    if isinstance(left, dict) and any(isinstance(v, np.ndarray) for v in left.values()):
        return left.keys() == right.keys() and all(np.array_equal(left[k], right[k]) for k in left)
    return left == right


def _files(results: Path) -> dict[str, Path]:
    return {p.relative_to(results).as_posix(): p for p in sorted(results.rglob("*")) if p.is_file()}


def assert_same_outputs(reference: Path, candidate: Path) -> int:
    """Every output file of ``candidate`` equals the reference's (timing aside); returns the files compared."""
    ref_files, got_files = _files(reference), _files(candidate)
    # checkpoints: a resumed run writes its rounds again (same numbers, other times); report/: prose and
    # figures quote the measured times and memory of LoRA vs full fine-tuning (checked for readability)
    ignored = re.compile(r"(^|/)checkpoints/|^report/")
    ref_names = {n for n in ref_files if not ignored.search(n)}
    got_names = {n for n in got_files if not ignored.search(n)}
    assert got_names == ref_names, f"extra {sorted(got_names - ref_names)}, missing {sorted(ref_names - got_names)}"
    different = [n for n in sorted(ref_names) if not _equal(_content(ref_files[n]), _content(got_files[n]))]
    assert not different, f"outputs differ from the uninterrupted run: {different}"
    return len(ref_names)


def assert_nothing_partial(results: Path) -> None:
    """No temporary folder or file of an interrupted write, and every data file readable."""
    leftovers = [p for p in results.rglob(".*") if p.name not in (".llmqfl-output", ".snakemake_timestamp")]
    assert not leftovers, f"temporary files left by killed writes: {leftovers}"
    for path in results.rglob("*"):
        if path.is_file():
            _content(path)


def assert_no_run_left_running(work: Path) -> int:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"llmqfl-{EXPERIMENT}")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    running = [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    assert not running, f"MLflow runs left RUNNING: {running}"
    return sum(r.info.status == "KILLED" for r in runs)


# -- the test ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pipeline_killed_at_seeded_random_points_ends_as_an_uninterrupted_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the uninterrupted reference, both journeys, timing every stage
    started = time.monotonic()
    reference, env_ref = _project(tmp_path / "reference")
    durations = reference_run(reference, env_ref, "exact")
    snapshot_exact = tmp_path / "reference-exact"
    subprocess.run(["cp", "-a", str(reference / "results" / EXPERIMENT), str(snapshot_exact)], check=True)
    durations.update({k: v for k, v in reference_run(reference, env_ref, "shots").items() if k != "data"})
    reference_seconds = time.monotonic() - started
    work, env = _project(tmp_path / "faults")
    rng = random.Random(SEED)
    results = work / "results" / EXPERIMENT
    # Execute + Assert: the exact journey
    exact = interrupted_run(work, env, "exact", durations, rng)
    compared = assert_same_outputs(snapshot_exact, results)
    assert_nothing_partial(results)
    # Execute + Assert: the shot-based journey on the same project
    shots = interrupted_run(work, env, "shots", durations, rng)
    compared += assert_same_outputs(reference / "results" / EXPERIMENT, results)
    assert_nothing_partial(results)
    killed_runs = assert_no_run_left_running(work)
    # Report
    kills = exact.kills + shots.kills
    summary = {
        "points_killed": sum(kills.values()),
        "per_stage": {"exact": dict(exact.kills), "shots": dict(shots.kills)},
        "restarts": exact.restarts + shots.restarts,
        "unlocks": exact.unlocks + shots.unlocks,
        "mlflow_runs_marked_killed": killed_runs,
        "files_compared": compared,
        "partial_outputs": 0,
        "reference_seconds": round(reference_seconds, 1),
        "interrupted_seconds": round(exact.seconds + shots.seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
    }
    with capsys.disabled():  # the counts belong in CI's log, passing or not
        print("\nfaults:", json.dumps(summary, sort_keys=True))
    assert summary["points_killed"] >= 20, summary
    assert {s for s in kills if s in STAGES} == set(STAGES), summary
    assert shots.kills["qfl"] >= 1, summary
