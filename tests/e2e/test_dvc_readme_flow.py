"""The README's DVC flow, as written, on a fresh clone: every step exits 0 and says nothing failed.

The clone's config/config.yaml is the tiny config (two clients, the baseline and llm_guided arms) under
the default experiment's name, so the README's commands (`report-default`, `config/config.yaml:...`) run
unchanged; its dvc.yaml is generated from it as `python -m llmqfl.dvc_yaml` does. `make setup` is not
run: the offline plots page (`.dvc/plots.html`) comes from the pipeline's first run (the Snakefile's onstart).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from dvc_clone import DVC, ROOT, commit, fresh_clone, run

# README.md, "Trying a variant and comparing it": the commands in their order
FLOW = (
    (DVC, "repro", "report-default"),
    ("git", "add", "dvc.lock"),
    ("git", "commit", "-m", "baseline"),
    (DVC, "exp", "run", "-n", "hybrid", "-S", "config/config.yaml:qfl.guidance.rule=hybrid", "report-default"),
    (DVC, "exp", "show", "--only-changed"),
    (DVC, "metrics", "diff"),
    (DVC, "plots", "diff", "HEAD", "-o", "plots"),
    ("git", "checkout", "--", "config/config.yaml", "dvc.lock"),
    (DVC, "checkout"),
)
BAD_LINE = re.compile(r"failed|no file hash", re.I)


def _merge(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Trying a variant"):text.index("## Reproducing the paper")]
    block = section[section.index("```bash") + 7:section.index("```", section.index("```bash") + 7)]
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_the_flow_here_is_the_readmes() -> None:
    written = " && ".join(_readme_commands()).replace(".venv/bin/dvc", "dvc").replace('"baseline"', "baseline")
    ours = " && ".join(" ".join("dvc" if part == DVC else part for part in step) for step in FLOW)
    assert written == ours


@pytest.mark.slow
def test_the_readmes_dvc_flow_runs_clean_on_a_fresh_clone(tmp_path: Path) -> None:
    # Prepare: a fresh clone whose default experiment is the tiny one
    from llmqfl.dvc_yaml import dvc_yaml, render

    clone = fresh_clone(tmp_path)
    base = yaml.safe_load((clone / "config" / "config.yaml").read_text())
    tiny = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    tiny.update(experiment="default", arms=["baseline", "llm_guided"], report={"peft_reference_clients": 0})
    tiny["federation"]["n_clients"] = 2
    (clone / "config" / "config.yaml").write_text(yaml.safe_dump(_merge(base, tiny), sort_keys=False))
    (clone / "dvc.yaml").write_text(render(dvc_yaml(clone)))
    assert not (clone / ".dvc" / "plots.html").exists()  # not committed: the pipeline's first run writes it
    commit(clone, "tiny default")
    assert not (clone / "dvc.lock").exists()
    # Execute: each step of the README, in order
    outputs = {}
    for step in FLOW:
        done = run(clone, *step, check=False, timeout=1800)
        output = done.stdout + done.stderr
        name = " ".join(Path(step[0]).name if i == 0 else part for i, part in enumerate(step))
        outputs[name] = output
        # Assert: exit 0, and no line saying something failed or had no hash
        assert done.returncode == 0, f"{name} exited {done.returncode}:\n{output[-3000:]}"
        bad = [line for line in output.splitlines() if BAD_LINE.search(line)]
        assert not bad, f"{name}:\n" + "\n".join(bad)
    # Assert: the metrics diff has no timings and reads verdicts in words
    diff = outputs["dvc metrics diff"]
    assert not re.search(r"arms\.\w+\.\w*(seconds|wall)", diff), diff
    shown = json.loads(run(clone, DVC, "metrics", "show", "--json").stdout)
    claims = next(iter(shown.values()))["data"]["results/default/metrics.json"]["data"]["claims"]
    assert {c["verdict"] for c in claims.values()} <= {"holds", "does not hold", "inconclusive", "not measurable here"}
    # Assert: the plots page loads no remote script (vega inlined) and draws the overlaid curves
    page = (clone / "plots" / "index.html").read_text()
    assert not re.search(r"<script[^>]+src=", page) and "cdn.jsdelivr" not in page
    assert "vegaEmbed" in page and "default-accuracy" in page
    # Assert: the rollback restored the baseline: nothing to reproduce, the guidance rule is the baseline's
    assert json.loads(run(clone, DVC, "status", "--json").stdout) == {}
    assert yaml.safe_load((clone / "config" / "config.yaml").read_text())["qfl"]["guidance"]["rule"] != "hybrid"
