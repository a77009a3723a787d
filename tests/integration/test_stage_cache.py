"""A variant under its own experiment name reuses the teachers when nothing they read changed.

The data and partition stages of two experiments that differ only in name and backend write the same
bytes; the distill job of the second then runs through ``llmqfl.stage_cache`` as the rule runs it and
copies the first one's teacher from the store instead of fine-tuning again. A key the teacher reads
(llm.epochs) makes another entry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tiny_pipeline import make_project

from llmqfl import layout
from llmqfl.config import load_config
from llmqfl.pipeline import plan_stage_config, write_stage_configs
from llmqfl.stage_cache import cache_key

ROOT = Path(__file__).resolve().parents[2]
CODE = "0123456789abcdef"


def _config(experiment: str, **overrides) -> dict:
    return load_config([ROOT / "config" / "config.yaml", ROOT / "tests" / "configs" / "tiny.yaml"],
                       {"experiment": experiment, "llm": {"federated_rounds": 0}, **overrides})


def _run(work: Path, env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr


def _upstream(work: Path, env: dict, config: dict) -> tuple[str, str]:
    """Run data and partition for ``config``; its distill config file and results root."""
    root = f"results/{config['experiment']}"
    files = {stage: plan_stage_config(config, stage, work / root / "config") for stage in ("data", "partition",
                                                                                           "distill")}
    write_stage_configs(files.values())
    _run(work, env, "llmqfl.stages.data", "--config", files["data"].path, "--out-dir", f"{root}/{layout.DATA}")
    _run(work, env, "llmqfl.stages.partition", "--config", files["partition"].path, "--data-dir",
         f"{root}/{layout.DATA}", "--out-dir", f"{root}/{layout.PARTITIONS}")
    return files["distill"].path, root


def _distill(work: Path, env: dict, cfg: str, root: str) -> str:
    """Client 0's distill job as distill.smk runs it: through the store."""
    inputs = ["resources/models/tiny-gpt2/config.json", layout.partition_file(root, 0), layout.meta_file(root),
              layout.data_file(root, "test")]
    out = f"{root}/{layout.DISTILL}/{layout.client_dir(0)}"
    return _run(work, env, "llmqfl.stage_cache", "--store", "results/.store/distill", "--config", cfg, "--code", CODE,
                "--inputs", *inputs, "--root", out, "--outputs", layout.ADAPTER, layout.TEACHER,
                layout.CLIENT_METRICS, "--", sys.executable, "-m", "llmqfl.stages.distill", "--config", cfg,
                "--client", "0", "--partition", inputs[1], "--meta", inputs[2], "--test", inputs[3], "--out", out,
                "--no-progress")


def test_a_backend_variant_under_its_own_name_reuses_the_teacher(tmp_path: Path) -> None:
    # Prepare: two experiments, the second another backend under another name
    work, env = make_project(tmp_path)
    env = {**env, "LLMQFL_TRACKING": "off", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    first, first_root = _upstream(work, env, _config("first"))
    second, second_root = _upstream(work, env, _config("second", backend={"kind": "aer", "shots": 1024}))
    # Assert: what the teacher reads is the same bytes
    for name in (layout.partition_file("", 0), layout.meta_file(""), layout.data_file("", "test")):
        assert (work / (first_root + name)).read_bytes() == (work / (second_root + name)).read_bytes(), name
    # Execute
    ran = _distill(work, env, first, first_root)
    reused = _distill(work, env, second, second_root)
    # Assert: the second job copied the first one's outputs and trained nothing
    assert "reused" not in ran
    assert "reused" in reused and "first written by experiment first" in reused, reused
    teacher = f"{layout.DISTILL}/{layout.client_dir(0)}/{layout.TEACHER}"
    metrics = f"{layout.DISTILL}/{layout.client_dir(0)}/{layout.CLIENT_METRICS}"
    assert (work / first_root / teacher).read_bytes() == (work / second_root / teacher).read_bytes()
    assert json.loads((work / second_root / metrics).read_text()) == json.loads(
        (work / first_root / metrics).read_text())
    assert (work / second_root / layout.DISTILL / layout.client_dir(0) / layout.ADAPTER).is_dir()


def test_a_key_the_teacher_reads_makes_another_entry(tmp_path: Path) -> None:
    inputs = [tmp_path / "partition.parquet"]
    inputs[0].write_bytes(b"rows")
    base = _config("a")
    key = cache_key(plan_stage_config(base, "distill", tmp_path).text, CODE, inputs)
    renamed = cache_key(plan_stage_config(_config("b"), "distill", tmp_path).text, CODE, inputs)
    epochs = cache_key(plan_stage_config(_config("a", llm={"federated_rounds": 0, "epochs": 3}), "distill",
                                         tmp_path).text, CODE, inputs)
    code = cache_key(plan_stage_config(base, "distill", tmp_path).text, "fedcba9876543210", inputs)
    inputs[0].write_bytes(b"other rows")
    data = cache_key(plan_stage_config(base, "distill", tmp_path).text, CODE, inputs)
    assert key == renamed
    assert len({key, epochs, code, data}) == 4
