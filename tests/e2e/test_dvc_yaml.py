"""dvc.yaml is generated (llmqfl.dvc_yaml): current, complete, and precise about params and code deps."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmqfl import dvc_yaml
from llmqfl.provenance import stage_files

ROOT = Path(__file__).resolve().parents[2]


def _committed() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _every_experiment() -> dict:
    """dvc.yaml as `python -m llmqfl.dvc_yaml --all` writes it."""
    return dvc_yaml.dvc_yaml(ROOT, dvc_yaml.experiments(ROOT))


def test_the_committed_dvc_yaml_is_the_generated_one() -> None:
    # a stale file means: run `python -m llmqfl.dvc_yaml` (an import, a config key or an experiment changed)
    current = (ROOT / "dvc.yaml").read_text() == dvc_yaml.render(dvc_yaml.dvc_yaml(ROOT))
    assert current, "dvc.yaml is stale: run `python -m llmqfl.dvc_yaml` and commit it"


def test_the_committed_dvc_yaml_holds_the_default_experiment_only() -> None:
    # an experiment never run would make `dvc checkout` fail and `dvc metrics diff` warn: others join with --add
    assert {name.split("-", 1)[1] for name in _committed()["stages"]} == {"default"}


def test_no_dvc_lock_is_committed_and_git_add_can_take_one() -> None:
    # a committed dvc.lock records someone else's runs of older code: on a fresh clone `dvc status` marks
    # every stage modified. The README's baseline step (`git add dvc.lock`) needs it not to be ignored.
    import subprocess

    tracked = subprocess.run(["git", "ls-files", "dvc.lock"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert tracked.stdout.strip() == ""
    ignored = subprocess.run(["git", "check-ignore", "-q", "dvc.lock"], cwd=ROOT, check=False)
    assert ignored.returncode == 1


def test_add_puts_an_experiments_stages_in_and_regeneration_keeps_them(tmp_path) -> None:
    import shutil

    for name in ("config", "data", "workflow", "src"):
        (tmp_path / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    assert dvc_yaml.main(["--root", str(tmp_path), "--add", "paper-genomic"]) == 0
    assert dvc_yaml.main(["--root", str(tmp_path), "--check"]) == 0  # the added experiment stays
    stages = yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"]
    assert {"report-default", "report-paper-genomic"} <= set(stages) and "report-paper-tweet" not in stages
    assert dvc_yaml.main(["--root", str(tmp_path), "--add", "no-such"]) == 2


def test_every_experiment_config_has_its_stages() -> None:
    stages = _every_experiment()["stages"]
    for name in dvc_yaml.experiments(ROOT):
        assert {f"data-{name}", f"qfl-{name}", f"report-{name}"} <= set(stages)
    assert "qfl-qfl-accuracy-genomic" in stages and "qfl-qfl-accuracy-splice" in stages


def test_a_stage_lists_only_the_keys_it_reads_of_its_own_experiments_files() -> None:
    stages = _every_experiment()["stages"]
    distill = {key for entry in stages["distill-default"]["params"] for keys in entry.values() for key in keys}
    assert not {k for k in distill if k.split(".")[0] in ("qfl", "backend", "arms", "seeds")}
    assert "llm.threads" not in distill  # a runtime setting changes no output
    files = {name for entry in stages["qfl-paper-genomic"]["params"] for name in entry}
    assert files == {"config/config.yaml", "config/experiments/paper-genomic.yaml"}
    # config.yaml's keys that paper-genomic overrides are not paper-genomic's params
    base = next(e["config/config.yaml"] for e in stages["qfl-paper-genomic"]["params"] if "config/config.yaml" in e)
    assert "qfl" not in base and "data" not in base


def test_code_deps_are_the_import_closure_of_the_stages() -> None:
    stages = _committed()["stages"]
    qfl_deps = set(stages["qfl-default"]["deps"])
    assert set(stage_files("qfl")) <= qfl_deps
    assert "src/llmqfl/data/encoders.py" in qfl_deps
    assert set(stage_files("report")) | set(stage_files("evaluate")) <= set(stages["report-default"]["deps"])
    # the data stage's deps are its own closure, not the qfl stage's
    assert "src/llmqfl/stages/qfl.py" not in stages["data-default"]["deps"]


def test_results_are_cached_outputs_and_features_are_declared() -> None:
    stages = _every_experiment()["stages"]
    outs = {path: spec for stage in stages.values() for out in stage.get("outs", []) for path, spec in out.items()}
    assert "results/paper-tweet/features" in outs
    assert all(spec == {"cache": True, "persist": True} for spec in outs.values())
    metrics = [m for stage in stages.values() for m in stage.get("metrics", [])]
    assert {"results/default/metrics.json": {"cache": True, "persist": True}} in metrics


def test_plots_overlay_every_arm_per_round() -> None:
    plots = {name: spec for entry in _committed()["plots"] for name, spec in entry.items()}
    accuracy = plots["default-accuracy"]
    assert accuracy["x"] == "round"
    arms = yaml.safe_load((ROOT / "config/config.yaml").read_text())["arms"]  # the five since they became the default
    assert len(arms) == 5
    assert set(accuracy["y"]) == {f"results/default/plots/{arm}.csv" for arm in arms}


def test_dvc_repro_dry_on_a_fresh_clone_lists_every_stage(tmp_path) -> None:
    # Prepare: a clone without results (no stage has run, so every downstream dep is missing)
    from dvc_clone import DVC, fresh_clone, run

    clone = fresh_clone(tmp_path)
    # Execute
    done = run(clone, DVC, "repro", "--dry", check=False)
    # Assert: DVC plans every stage of the generated dvc.yaml in order, hashing nothing that is missing
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    planned = [line.split("'")[1] for line in done.stdout.splitlines() if line.startswith("Running stage '")]
    assert sorted(planned) == sorted(_committed()["stages"])
    assert planned.index("data-default") < planned.index("distill-default") < planned.index("qfl-default")
    assert not (clone / "results").exists()  # a dry run writes nothing
