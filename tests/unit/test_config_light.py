"""Checking a config is light: it imports no qiskit, torch or federated loop (every stage and every
Snakefile parse checks one), and the registry's table of built-in names matches what the modules register."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from llmqfl import registry

ROOT = Path(__file__).resolve().parents[2]


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_validating_the_default_config_imports_no_qiskit_torch_or_federated_loop() -> None:
    loaded = json.loads(_fresh(
        "import json, sys\n"
        "from llmqfl.config import load_config, validate_config\n"
        "validate_config(load_config('config/config.yaml'))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    ))
    heavy = [m for m in loaded if m.split(".")[0] in ("qiskit", "torch") or m.startswith("llmqfl.federated")]
    assert heavy == []


def test_builtin_names_are_exactly_what_each_builtin_module_registers() -> None:
    registered = json.loads(_fresh(
        "import importlib, json\n"
        "from llmqfl import registry\n"
        "for kind in registry.KINDS.values():\n"
        "    importlib.import_module(kind.builtins)\n"
        "print(json.dumps({k: sorted(v) for k, v in registry._ENTRIES.items()}))\n"
    ))
    assert registered == {name: sorted(kind.builtin_names) for name, kind in registry.KINDS.items()}
