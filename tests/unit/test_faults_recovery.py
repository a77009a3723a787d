"""A write killed mid-way leaves a temporary folder; the next invocation's start removes it, and only it."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

from llmqfl.io import atomic_path
from llmqfl.recovery import partial_writes, sweep_partial_writes


def _killed_while_writing(target: Path) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"half a parquet")
        os.kill(os.getpid(), signal.SIGKILL)


def test_temporary_folders_of_killed_writes_are_swept_and_nothing_else(tmp_path: Path) -> None:
    # Prepare: two writes killed with SIGKILL, next to complete outputs and a user's dot-folder
    results = tmp_path / "results" / "exp"
    targets = [results / "data" / "train.parquet", results / "qfl" / "baseline" / "seed_0" / "weights.npy"]
    for target in targets:
        child = multiprocessing.get_context("fork").Process(target=_killed_while_writing, args=(target,))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == -signal.SIGKILL
    (results / "data" / "test.parquet").write_bytes(b"complete")
    keep = results / ".user.notes"
    keep.mkdir()
    (keep / "mine.txt").write_text("not a temporary write")
    leftovers = partial_writes(results)
    # Execute
    removed = sweep_partial_writes(results)
    # Assert: the killed writes left no target, only temporary folders; those are gone now
    assert len(leftovers) == 2 and all(not t.exists() for t in targets)
    assert sorted(removed) == sorted(leftovers)
    assert partial_writes(results) == []
    assert (results / "data" / "test.parquet").read_bytes() == b"complete"
    assert (keep / "mine.txt").exists()
