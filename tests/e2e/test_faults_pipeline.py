"""Fault injection: the real pipeline, SIGKILLed at seeded random points, ends as an uninterrupted run does.

Two journeys on the tiny config (``tests/configs/tiny.yaml`` over the default ``config/config.yaml``,
as tests/tiny_pipeline.py runs it), each in a scratch project:

* ``exact``: the whole pipeline on the exact simulator (data, partition, distill, qfl, evaluate, report);
* ``shots``: then the same project switched to the Aer sampler with 128 shots (qfl, evaluate and report
  re-run; a resumed qfl must draw the shots an uninterrupted one draws).

The uninterrupted reference of the exact journey is the session's shared tiny run (conftest's
``tiny_run``); the shots journey's reference runs on a copy of it. Snakemake's own job records
(``.snakemake/metadata``: start and end of every job) give each stage's longest job, the kill scale.

The kill plan is a representative set of 11 points (it was 29; the points that were cut hit the same
stage kinds at other moments and cost ~20 s each): every stage kind (data, partition, distill, qfl,
evaluate, report) is killed at least once, at two kinds of moment:

* ``mid``: inside a running job of the stage, a seeded 2-35% of its longest reference job in;
* ``between``: at once after a job of the stage ends, while Snakemake records it and picks the next.

A kill is SIGKILL to snakemake and every job (``kill -9`` of the process group). Each restart does only
what the README's Recovery section says (``snakemake --unlock`` when Snakemake left its lock). Then:
every planned point was hit, the outputs equal the reference's (timing fields aside), no MLflow run is
left RUNNING, no temporary or unreadable file is left anywhere under ``results/``. The counts (points
killed per stage and moment, restarts) are printed.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tiny_pipeline import TIMING, make_project, scratch_env, snakemake_command, untimed

from llmqfl.integrity import MANIFEST

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("data", "partition", "distill", "qfl", "evaluate", "report")
SHOTS = ("backend={kind: aer, shots: 128}",)
# kill plan per journey, in pipeline order: (stage, moment); every stage kind, both moments (docstring)
PLANS = {
    "exact": (("data", "mid"), ("partition", "between"), ("distill", "mid"), ("distill", "between"),
              ("qfl", "mid"), ("qfl", "between"), ("evaluate", "mid"), ("report", "mid")),
    "shots": (("qfl", "mid"), ("evaluate", "between"), ("report", "mid")),
}
# a mid-job kill lands this far into the target stage's job, as a fraction of its longest reference job:
# early enough that a resumed (shorter) job is still running when the kill comes
KILL_AT = (0.02, 0.35)
SEED = 20261201
POLL_S = 0.1
# measured, not computed: times, rates and memory differ from run to run by nature
_STAGE_ARG = re.compile(r"llmqfl\.stages\.([a-z_]+)")


@dataclass
class Journey:
    """What one interrupted journey did."""

    kills: Counter = field(default_factory=Counter)  # (stage, moment) -> count
    missed: list = field(default_factory=list)  # planned points the journey ended or moved past without
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
    """distill_federated / distill_full / embed count as distill; rounds (per-round tables) as evaluate."""
    if stage.startswith("distill") or stage == "embed":
        return "distill"
    return {"rounds": "evaluate"}.get(stage, stage)


# -- projects ------------------------------------------------------------------------------------
def _command(work: Path, experiment: str, journey: str, *extra: str) -> list[str]:
    return snakemake_command(work, experiment, *extra, config=SHOTS if journey == "shots" else ())


def _start(work: Path, env: dict[str, str], experiment: str, journey: str, log: Path) -> subprocess.Popen:
    handle = log.open("a")
    return subprocess.Popen(_command(work, experiment, journey), env=env, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)


def job_durations(work: Path) -> dict[str, float]:
    """Each stage's longest job in seconds, from Snakemake's job records (start and end per output)."""
    durations: dict[str, float] = {}
    for record in (work / ".snakemake" / "metadata").iterdir():
        meta = json.loads(record.read_text())
        if meta.get("starttime") and meta.get("endtime") and meta.get("rule"):
            family = _family(meta["rule"])
            durations[family] = max(durations.get(family, 0.0), meta["endtime"] - meta["starttime"])
    return durations


def interrupted_run(work: Path, env: dict[str, str], experiment: str, journey: str, durations: dict[str, float],
                    rng: random.Random) -> Journey:
    """Start, kill at the next planned point, restart ... until the pipeline completes."""
    record, plan = Journey(), list(PLANS[journey])
    log = work / f"faults-{journey}.log"
    started = time.monotonic()
    while True:
        offset = log.stat().st_size if log.exists() else 0
        process = _start(work, env, experiment, journey, log)
        armed_at, delay, watched = None, 0.0, set()
        while process.poll() is None:
            jobs = _stage_jobs(process.pid)
            running = {_family(s) for s in jobs.values()}
            order = [STAGES.index(s) for s in running if s in STAGES]
            # a point whose stage is done can no longer be hit (a "between" point whose job just ended still can)
            while plan and order and STAGES.index(plan[0][0]) < min(order) and not watched:
                record.missed.append(plan.pop(0))
                armed_at = None
            kill = False
            if plan and plan[0][1] == "mid":
                target = plan[0][0]
                if armed_at is not None and target not in running:
                    armed_at = None  # the target's job ended first: wait for its next job (a re-run, or the next one)
                if armed_at is None and target in running:
                    armed_at, delay = time.monotonic(), rng.uniform(*KILL_AT) * durations.get(target, 1.0)
                kill = armed_at is not None and time.monotonic() - armed_at >= delay
            elif plan:  # "between": at once after a job of the target stage ends
                kill = bool(watched - set(jobs))
                watched |= {pid for pid, stage in jobs.items() if _family(stage) == plan[0][0]}
            if kill:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                record.kills[plan.pop(0)] += 1
                break
            time.sleep(POLL_S)
        if process.returncode == 0:
            record.missed += plan
            break
        record.restarts += 1
        output = log.read_text()[offset:]
        if process.returncode != -signal.SIGKILL and "cannot be locked" not in output and "LockException" not in output:
            raise AssertionError(f"the {journey} journey failed after a restart:\n{output[-4000:]}")
        if process.returncode == -signal.SIGKILL and not _locked(work):
            continue  # killed before Snakemake took its lock
        # the README's Recovery: a killed snakemake leaves its lock, `--unlock` clears it (done at once
        # after a kill rather than after a refused start: the same step, one Snakefile parse less)
        unlock = subprocess.run(_command(work, experiment, journey, "--unlock"), env=env, capture_output=True,
                                text=True)
        assert unlock.returncode == 0, unlock.stderr[-2000:]
        record.unlocks += 1
        assert record.restarts < 40, "the journey does not converge"
    record.seconds = time.monotonic() - started
    return record


def _locked(work: Path) -> bool:
    locks = work / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


# -- comparison ----------------------------------------------------------------------------------
def _content(path: Path):
    """A file's content for comparison, timing fields dropped; raises if the file is unreadable."""
    suffix = path.suffix
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
        return frame.drop(columns=[c for c in frame.columns if TIMING.search(c)])
    if suffix == ".json":
        content = untimed(json.loads(path.read_text()))
        if isinstance(content, dict):  # integrity digests seal content that holds timings (a checkpoint's rows,
            content.pop("sha256", None)  # a round's metrics): the sealed files themselves are compared
            if path.name == MANIFEST:
                content.pop("files", None)
        return content
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


def assert_no_run_left_running(work: Path, name: str) -> int:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"llmqfl-{name}")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    running = [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    assert not running, f"MLflow runs left RUNNING: {running}"
    return sum(r.info.status == "KILLED" for r in runs)


# -- the test ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pipeline_killed_at_seeded_random_points_ends_as_an_uninterrupted_run(
    tiny_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the uninterrupted reference: the shared tiny run (exact), then a copy of it switched to shots
    started = time.monotonic()
    experiment = tiny_run.experiment
    reference = tmp_path / "reference"
    subprocess.run(["cp", "-a", str(tiny_run.workdir), str(reference)], check=True)  # mtimes kept: nothing re-runs
    durations = job_durations(reference)
    shots_ref = subprocess.run(_command(reference, experiment, "shots"), env=scratch_env(reference),
                               capture_output=True, text=True, timeout=1200)
    assert shots_ref.returncode == 0, (shots_ref.stdout + shots_ref.stderr)[-4000:]
    for family, seconds in job_durations(reference).items():
        durations[family] = max(durations.get(family, 0.0), seconds)
    reference_seconds = time.monotonic() - started
    work, env = make_project(tmp_path / "faults")
    rng = random.Random(SEED)
    results = work / "results" / experiment
    # Execute + Assert: the exact journey
    exact = interrupted_run(work, env, experiment, "exact", durations, rng)
    compared = assert_same_outputs(tiny_run.results, results)
    assert_nothing_partial(results)
    # Execute + Assert: the shot-based journey on the same project
    shots = interrupted_run(work, env, experiment, "shots", durations, rng)
    compared += assert_same_outputs(reference / "results" / experiment, results)
    assert_nothing_partial(results)
    killed_runs = assert_no_run_left_running(work, experiment)
    # Report
    kills = exact.kills + shots.kills
    summary = {
        "points_planned": sum(len(plan) for plan in PLANS.values()),
        "points_killed": sum(kills.values()),
        "per_stage": {journey: {f"{s}/{m}": n for (s, m), n in record.kills.items()}
                      for journey, record in (("exact", exact), ("shots", shots))},
        "missed": [f"{s}/{m}" for s, m in exact.missed + shots.missed],
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
    # Assert: every planned point was hit: each stage kind, both mid-job and between jobs
    assert kills == Counter(PLANS["exact"] + PLANS["shots"]), summary
    assert {stage for stage, _ in kills} == set(STAGES), summary
    assert {moment for _, moment in kills} == {"mid", "between"}, summary
