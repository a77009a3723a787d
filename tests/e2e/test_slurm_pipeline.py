"""The pipeline on a real Slurm cluster (scripts/slurm/cluster.sh: one node on localhost).

The end-to-end test is opt-in: it runs with LLMQFL_SLURM=1 (.ci/run sets it; starting the cluster needs
root, and installs Debian's packages when missing) and is skipped otherwise. The settings tests run everywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from llmqfl import cluster
from llmqfl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parents[1]))
from tiny_pipeline import make_project, snakemake_command, untimed  # noqa: E402

EXPERIMENT = "tiny-slurm"
# measured, not computed (as in tests/e2e/test_faults_pipeline.py): left out of the comparison

SCRIPT = ROOT / "scripts" / "slurm" / "cluster.sh"
SERVER_SCRIPT = ROOT / "scripts" / "mlflow_server.sh"
CONFIG = {"llm": {"model": "tiny-gpt2"}, "cluster": {"partition": None, "account": None}}
SERVER = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}


def test_slurm_run_needs_partition_and_account():
    with pytest.raises(ConfigError, match=r"partition and account.*cluster\.partition.*SLURM_PARTITION"):
        cluster.check_cluster_run("slurm", CONFIG, SERVER)
    with pytest.raises(ConfigError, match=r"needs a Slurm account: set cluster\.account"):
        cluster.check_cluster_run("slurm", CONFIG, {**SERVER, "SLURM_PARTITION": "cpu"})
    chosen = {**CONFIG, "cluster": {"partition": "gpu", "account": "lab"}}
    assert cluster.slurm_target(chosen, {"SLURM_PARTITION": "cpu"}) == ("gpu", "lab")  # the config wins
    cluster.check_cluster_run("slurm", chosen, SERVER)
    cluster.check_cluster_run(None, CONFIG, {})  # a local run needs neither


@pytest.mark.parametrize("uri", [None, "sqlite:////shared/mlflow.db", "file:///shared/mlruns", "./mlruns"])
def test_slurm_run_refuses_a_file_tracking_store(uri):
    env = {"SLURM_PARTITION": "cpu", "SLURM_ACCOUNT": "lab", **({"MLFLOW_TRACKING_URI": uri} if uri else {})}
    with pytest.raises(ConfigError, match=r"must not write one file store.*mlflow server"):
        cluster.check_cluster_run("slurm", CONFIG, env)
    cluster.check_cluster_run("slurm", CONFIG, {**env, "LLMQFL_TRACKING": "off"})


def test_slurm_job_memory_follows_the_model(tmp_path):
    assert cluster.llm_mem_mb("tiny-gpt2") < cluster.llm_mem_mb("smollm2-135m")
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 4_000_000)  # 1M fp32 parameters
    assert cluster.model_params_m(str(tmp_path)) == pytest.approx(1.0)
    env: dict[str, str] = {}
    cluster.export_job_settings({**CONFIG, "cluster": {"partition": "p", "account": "a"}}, env)
    assert env == {"SLURM_PARTITION": "p", "SLURM_ACCOUNT": "a", "LLMQFL_LLM_MEM_MB": "2048",
                   "LLMQFL_GPU_PARTITION": "p"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def slurm_env():
    """A running cluster's client environment; a cluster this fixture started is stopped again, pass or fail."""
    started = subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode != 0
    try:
        if started:
            subprocess.run([str(SCRIPT), "start"], check=True, timeout=600)
        exports = subprocess.run([str(SCRIPT), "env"], check=True, capture_output=True, text=True).stdout
        yield dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines())
    finally:
        if started:  # also after a start that failed half-way: stop removes whatever it left
            subprocess.run([str(SCRIPT), "stop"], check=True, timeout=120)


@pytest.fixture
def mlflow_server(tmp_path):
    """The tracking server as docs/cluster.md starts it (scripts/mlflow_server.sh), on a free local port."""
    port = _free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port)}
    with log.open("w") as out:
        server = subprocess.Popen([str(SERVER_SCRIPT), str(tmp_path / "mlflow-server")], stdout=out,
                                  stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _answers(f"{uri}/health"):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        yield uri
    finally:  # the server's own session: mlflow and its uvicorn workers (the mlflow CLI may linger after them)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LLMQFL_SLURM") != "1",  # before any fixture: no local tiny run either
                    reason="opt-in: LLMQFL_SLURM=1 starts a one-node cluster with scripts/slurm/cluster.sh")
def test_slurm_pipeline_matches_local_run(tiny_run, slurm_env, mlflow_server, tmp_path):
    """The tiny pipeline under the slurm profile: a Slurm job for the federated distill and per qfl arm, in the
    configured partition and account, the local run's metrics, and every stage tracked on the server."""
    workdir, env = make_project(tmp_path)
    env.update(slurm_env, MLFLOW_TRACKING_URI=mlflow_server)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    # the commands of docs/cluster.md; quick status checks suit a one-node cluster only
    command = snakemake_command(workdir, EXPERIMENT, "--workflow-profile", str(ROOT / "workflow/profiles/slurm"),
                                "--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "5")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    listed = subprocess.run(["sacct", "-X", "-n", "-P", "-S", since, "-o", "JobName,Comment,State,Partition,Account"],
                            check=True, capture_output=True, text=True, env=env).stdout.splitlines()
    jobs = [line.split("|") for line in listed]
    assert len({name for name, *_ in jobs}) == 1  # one snakemake invocation (the plugin names jobs by its run)
    assert {tuple(job[2:]) for job in jobs} == {("COMPLETED", slurm_env["SLURM_PARTITION"], slurm_env["SLURM_ACCOUNT"])}
    comments = sorted(job[1] for job in jobs)
    # the default's federated LoRA rounds: one job for every client (llm.federated_rounds 0: one per client)
    assert [c for c in comments if c.startswith("rule_distill_")] == ["rule_distill_federated"]
    # one qfl job per arm, every seed in it
    assert [c for c in comments if c.startswith("rule_qfl_")] == sorted(
        f"rule_qfl_wildcards_{arm}" for arm in ("baseline", "budget_matched", "llm_guided"))

    cluster_results = workdir / "results" / EXPERIMENT
    cluster_metrics = json.loads((cluster_results / "metrics.json").read_text())
    local_metrics = json.loads((tiny_run.results / "metrics.json").read_text())
    assert untimed(cluster_metrics) == untimed(local_metrics)
    for arm in ("baseline", "budget_matched", "llm_guided"):
        cluster_weights = np.load(cluster_results / "qfl" / arm / "seed_0" / "weights.npy")
        assert np.array_equal(cluster_weights, np.load(tiny_run.qfl_dir(arm) / "weights.npy"))

    import mlflow

    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment(client.get_experiment_by_name(f"llmqfl-{EXPERIMENT}").experiment_id)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    local_names = (r.info.run_name.replace(tiny_run.experiment, EXPERIMENT) for r in tiny_run.runs())
    assert sorted(r.info.run_name for r in runs) == sorted(local_names)  # data, distill client_0, ...
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # uploaded through the server
    assert any((tmp_path / "mlflow-server" / "artifacts").rglob("*.json"))
