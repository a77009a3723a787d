"""DVC experiments on a fresh clone: a baseline, a variant of one qfl key, and their comparison.

The tiny experiment is registered in the clone's dvc.yaml by the generator (llmqfl.dvc_yaml), as
`config/experiments/*.yaml` files are in the project's own dvc.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dvc_clone import DVC, TINY_CONFIG, run, tiny_dvc_repo

CONFIG = TINY_CONFIG


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone with the tiny experiment reproduced through DVC and committed."""
    return tiny_dvc_repo(tmp_path_factory)


def _stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_dvc_status_is_clean_after_repro(baseline: Path) -> None:
    status = run(baseline, DVC, "status", "--json")
    assert json.loads(status.stdout) == {}
    assert (baseline / "results" / "tiny" / "plots" / "llm_guided.csv").is_file()


def test_a_variant_reruns_only_what_its_key_reaches_and_compares_with_the_baseline(baseline: Path) -> None:
    # Prepare
    metrics = baseline / "results" / "tiny" / "metrics.json"
    before = metrics.read_bytes()
    teacher = baseline / "results" / "tiny" / "distill" / "client_0" / "teacher.parquet"
    teacher_mtime = teacher.stat().st_mtime_ns
    # Execute: a variant of one qfl key
    variant = run(baseline, DVC, "exp", "run", "-n", "more-iters", "-S", f"{CONFIG}:qfl.optimizer.maxiter=8")
    # Assert: distill (and data) did not re-run; qfl and the report did
    ran = _stages(variant.stdout)
    assert ran == {"qfl-tiny", "report-tiny"}, variant.stdout[-2000:]
    assert teacher.stat().st_mtime_ns == teacher_mtime
    # Assert: `dvc exp show` lists the baseline and the variant, each with numbers
    shown = json.loads(run(baseline, DVC, "exp", "show", "--json").stdout)
    head = next(row for row in shown if row["rev"] != "workspace")
    rows = {"baseline": head["data"], **{e["name"]: e["revs"][0]["data"] for e in head["experiments"] or []}}
    assert "more-iters" in rows
    for row in rows.values():
        numbers = row["metrics"]["results/tiny/metrics.json"]["data"]
        assert any(isinstance(v, int | float) for v in _leaves(numbers))
    assert rows["baseline"]["metrics"] != rows["more-iters"]["metrics"]
    # Assert: `dvc metrics diff` (HEAD vs the variant in the workspace) shows the change
    diff = json.loads(run(baseline, DVC, "metrics", "diff", "--json").stdout)
    assert diff.get("diff", diff).get("results/tiny/metrics.json")
    # Assert: `dvc plots diff` overlays both experiments' per-round curves
    plots = json.loads(run(baseline, DVC, "plots", "diff", "HEAD", "more-iters", "--json").stdout)["data"]
    for name in ("tiny-accuracy", "tiny-loss", "tiny-maxiter"):
        assert plots[name][0]["revisions"] == ["HEAD", "more-iters"]
    # Assert: the baseline's results are intact: restored byte for byte from the cache
    run(baseline, "git", "checkout", "HEAD", "--", CONFIG, "dvc.lock")
    run(baseline, DVC, "checkout", "--force")
    assert metrics.read_bytes() == before
    assert json.loads(run(baseline, DVC, "status", "--json").stdout) == {}


def _leaves(tree: object) -> list[object]:
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in _leaves(value)]
    if isinstance(tree, list):
        return [leaf for value in tree for leaf in _leaves(value)]
    return [tree]
