"""A running pipeline cannot be changed by later invocations on the same experiment.

While the tiny pipeline runs, a dry run (``snakemake -n``) and a second ``snakemake`` with another
config (another qfl maxiter) are started on the same experiment: the second is refused by
Snakemake's lock, neither writes a stage config file, and the first run's outputs equal those of
the undisturbed run (conftest's shared ``tiny_run``: same config, same experiment name), timing
fields aside. Before stage config files were content-addressed and written under the lock, the
second invocation rewrote ``results/{exp}/config/qfl.json`` and the first run's qfl jobs trained with
its maxiter.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tiny_pipeline import TIMING, make_project, snakemake_command, untimed

OTHER = ("qfl={optimizer: {maxiter: 2, max_maxiter: 8}}",)  # what the second invocation would change
DETERMINISTIC = ("qfl/*/seed_*/history.parquet", "qfl/*/seed_*/weights.npy", "eval/*/seed_*.json",
                 "distill/client_*/teacher.parquet", "partitions/partitions.json", "data/meta.json")


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.glob("*")) if p.is_file()}


def _content(path: Path):
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        return frame.drop(columns=[c for c in frame.columns if TIMING.search(c)])
    if path.suffix == ".npy":
        return np.load(path)
    return untimed(json.loads(path.read_text()))


def _assert_same(left, right, name: str) -> None:
    if isinstance(left, pd.DataFrame):
        pd.testing.assert_frame_equal(left, right, obj=name)
    elif isinstance(left, np.ndarray):
        assert np.array_equal(left, right), name
    else:
        assert left == right, name


def test_a_dry_run_and_a_second_config_leave_a_running_pipeline_alone(tiny_run, tmp_path: Path) -> None:
    # Prepare: the first run, started in its own project under the shared run's experiment name
    experiment = tiny_run.experiment
    work, env = make_project(tmp_path)
    results = work / "results" / experiment
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(snakemake_command(work, experiment), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while not (results / "partitions" / "partitions.json").is_file():  # running, qfl not started yet
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first run did not reach its partitions"
            time.sleep(0.2)
        configs = _snapshot(results / "config")
        # Execute: a dry run and a second real run with another config, while the first runs
        dry = subprocess.run(snakemake_command(work, experiment, "-n", config=OTHER), env=env,
                             capture_output=True, text=True, timeout=300)
        second = subprocess.run(snakemake_command(work, experiment, config=OTHER), env=env,
                                capture_output=True, text=True, timeout=300)
        still_running = first.poll() is None
        after = _snapshot(results / "config")
        assert first.wait(timeout=1200) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    # Assert: the dry run listed the qfl jobs the other maxiter would re-run; the second run was locked out
    assert dry.returncode == 0, (dry.stdout + dry.stderr)[-3000:]
    assert "This was a dry-run" in dry.stdout + dry.stderr
    assert second.returncode != 0 and "cannot be locked" in second.stdout + second.stderr, \
        (second.stdout + second.stderr)[-3000:]
    assert still_running, "the first run ended before the interference: nothing was tested"
    assert after == configs, "another invocation wrote the running job's stage config files"
    # Assert: the first run's outputs are the undisturbed run's
    compared = 0
    for pattern in DETERMINISTIC:
        reference = sorted(tiny_run.results.glob(pattern))
        assert [p.relative_to(tiny_run.results) for p in reference] == \
            [p.relative_to(results) for p in sorted(results.glob(pattern))], pattern
        for path in reference:
            name = path.relative_to(tiny_run.results).as_posix()
            _assert_same(_content(path), _content(results / name), name)
            compared += 1
    assert compared >= 10
    metrics = json.loads((results / "metrics.json").read_text())
    assert untimed(metrics) == untimed(json.loads((tiny_run.results / "metrics.json").read_text()))
