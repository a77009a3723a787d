"""Flower's deployment engine on one machine: one SuperLink, one SuperNode per client, ``flwr run``.

This is what a multi-site run does, with every process on localhost (``docs/federation.md`` gives
the same commands for real sites with TLS and SuperNode authentication). Each SuperNode is started
with ``--node-config bundle=PATH`` naming only its own client's bundle. The Flower app is the small
``pyproject.toml`` written by :func:`write_app` whose components are this package's apps.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llmqfl.federated.flower.server_app import RESULT_FILE, FlowerRun, load_outcome

log = logging.getLogger(__name__)
FEDERATION = "llmqfl"

APP_TOML = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "llmqfl-qfl"
version = "1.0.0"
description = "llmqfl quantum federated learning over Flower"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "llmqfl"

[tool.flwr.app.components]
serverapp = "llmqfl.federated.flower.server_app:app"
clientapp = "llmqfl.federated.flower.client_app:app"

[tool.flwr.app.config]
bundles = ""
out = ""
resume = false
"""


class FlowerDeploymentError(RuntimeError):
    """A Flower process failed to start or the run did not finish; the message names the log to read."""


REGISTERED = "SuperNode ID:"  # what a SuperNode logs once the SuperLink has registered it


LORA_APP = {
    'name = "llmqfl-qfl"': 'name = "llmqfl-lora"',
    "quantum federated learning": "federated LoRA fine-tuning",
    "llmqfl.federated.flower.server_app:app": "llmqfl.federated.flower.lora:server",
    "llmqfl.federated.flower.client_app:app": "llmqfl.federated.flower.lora:client",
    'bundles = ""\nout = ""\nresume = false': 'config = ""\nout = ""',
}


def write_app(folder: Path, kind: str = "qfl") -> Path:
    """The Flower app folder ``flwr run`` packages (its code is the installed llmqfl package): the QFL
    rounds (``qfl``), or the federated LoRA rounds of sites that keep their data (``lora``)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = APP_TOML
    if kind == "lora":
        for old, new in LORA_APP.items():
            assert old in text, old
            text = text.replace(old, new)
    (folder / "pyproject.toml").write_text(text)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    """A Flower command from this interpreter's environment (the SuperLink spawns its siblings by name)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def _wait_port(port: int, timeout_s: float, proc: subprocess.Popen, log_file: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FlowerDeploymentError(f"exited with {proc.returncode} at start; see {log_file}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise FlowerDeploymentError(f"port {port} not open after {timeout_s:.0f} s; see {log_file}")


class LocalDeployment:
    """SuperLink + SuperNodes as child processes (insecure: localhost only), stopped on exit."""

    def __init__(
        self, work_dir: Path, client_bundles: dict[int, Path], *, client_env: dict[int, dict[str, str]] | None = None,
        start_wave: int = 8, start_timeout_s: float = 300.0, node_config: dict[int, dict[str, Any]] | None = None,
    ):
        self.work_dir = Path(work_dir)
        self.client_bundles = dict(client_bundles)
        self.client_env = client_env or {}
        self.node_config = node_config or {}  # a site's other files (federated LoRA: llmqfl.federated.flower.lora)
        self.start_wave, self.start_timeout_s = max(1, int(start_wave)), float(start_timeout_s)
        self.home = self.work_dir / "flwr_home"
        self.port = free_port()
        self.env = {
            **os.environ,
            "FLWR_HOME": str(self.home),
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        }
        self.superlink: subprocess.Popen | None = None
        self.supernodes: dict[int, subprocess.Popen] = {}

    def _spawn(self, args: list[str], log_name: str, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
        log_file = self.work_dir / log_name
        handle = log_file.open("w")
        proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        handle.close()
        return proc, log_file

    def __enter__(self) -> LocalDeployment:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{FEDERATION}"\n\n[superlink.{FEDERATION}]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        try:
            self.superlink, link_log = self._spawn(
                [_bin("flower-superlink"), "--insecure", "--port", str(self.port),
                 "--disable-runtime-dependency-installation"],
                "superlink.log", self.env,
            )  # fmt: skip
            _wait_port(self.port, 60, self.superlink, link_log)
            # in waves that register before the next starts: 100 SuperNodes at once on a small machine time
            # out their registration, and the retry is refused ("Public key already in use", exit 305)
            clients = sorted(self.client_bundles.items())
            for first in range(0, len(clients), self.start_wave):
                wave = clients[first:first + self.start_wave]
                for k, bundle in wave:
                    self.start_client(k, bundle)
                for k, _ in wave:
                    self._wait_registered(k)
        except BaseException:
            self.close()
            raise
        return self

    def _wait_registered(self, k: int) -> None:
        """Until client ``k``'s SuperNode has its node id from the SuperLink (it logs it)."""
        proc, log_file = self.supernodes[k], self.work_dir / f"supernode_{k}.log"
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if REGISTERED in log_file.read_text(errors="replace"):
                return
            if proc.poll() is not None:
                raise FlowerDeploymentError(
                    f"client {k}'s SuperNode exited with {proc.returncode} at start; see {log_file}"
                )
            time.sleep(0.2)
        raise FlowerDeploymentError(f"client {k}'s SuperNode not registered after {self.start_timeout_s:.0f} s; "
                                    f"see {log_file}")

    def start_client(self, k: int, bundle: Path) -> None:
        """Client ``k``'s SuperNode, pointed at its own bundle only."""
        args = [
            _bin("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{self.port}",
            "--port", str(free_port()), "--node-config",
            " ".join(f"{key}={_toml(v)}" for key, v in {"bundle": str(Path(bundle).resolve()),
                                                         **self.node_config.get(k, {})}.items()),
        ]  # fmt: skip
        self.supernodes[k], _ = self._spawn(args, f"supernode_{k}.log", {**self.env, **self.client_env.get(k, {})})

    def kill_client(self, k: int) -> None:
        """Client ``k``'s site dies at once (SIGKILL to its SuperNode and the ClientApp it runs)."""
        proc = self.supernodes[k]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart_client(self, k: int) -> None:
        """Client ``k``'s site comes back: a new SuperNode on the same bundle, registered before this returns."""
        self.kill_client(k)
        self.start_client(k, self.client_bundles[k])
        self._wait_registered(k)

    def submit(self, app_dir: Path, run_config: dict[str, Any]) -> subprocess.Popen:
        """``flwr run APP llmqfl --run-config ... --stream`` in the background (its output in flwr_run.log)."""
        pairs = " ".join(f"{k}={_toml(v)}" for k, v in run_config.items())
        proc, _ = self._spawn(
            [_bin("flwr"), "run", str(app_dir), FEDERATION, "--run-config", pairs, "--stream"], "flwr_run.log", self.env
        )
        return proc

    def run(self, app_dir: Path, bundles: Path, out_dir: Path, *, timeout_s: float = 600) -> FlowerRun:
        """Submit the federation and wait for its result."""
        proc = self.submit(app_dir, {"bundles": str(bundles), "out": str(out_dir)})
        return self.wait(proc, out_dir, timeout_s=timeout_s)

    def wait(self, proc: subprocess.Popen, out_dir: Path, *, timeout_s: float, result_file: str = RESULT_FILE) -> Any:
        """The ServerApp's result in ``out_dir`` (the QFL run's :class:`FlowerRun`; another app's: its path)."""
        deadline = time.monotonic() + timeout_s
        result = Path(out_dir) / result_file
        while not result.exists():
            if time.monotonic() > deadline:
                raise FlowerDeploymentError(f"no result after {timeout_s:.0f} s; see {self.work_dir}/*.log")
            if proc.poll() is not None and not result.exists():
                time.sleep(1.0)  # the log stream may end just before the ServerApp's last write
                if not result.exists():
                    raise FlowerDeploymentError(
                        f"flwr run ended ({proc.returncode}) without a result; see {self.work_dir}/flwr_run.log"
                    )
            time.sleep(0.1)
        return load_outcome(out_dir) if result_file == RESULT_FILE else result

    def close(self) -> None:
        for proc in [*self.supernodes.values(), self.superlink]:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.supernodes.values(), self.superlink]:
            if proc is None:
                continue
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
