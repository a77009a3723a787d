"""Checking a config is light: it imports no qiskit, torch or federated loop (every stage and every
Snakefile parse checks one), and the registry's tables of built-in names and traits match what the
modules register."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmqfl import registry

ROOT = Path(__file__).resolve().parents[2]


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


HEAVY = ("qiskit", "torch")


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in HEAVY or m.startswith("llmqfl.federated")]


def test_validating_the_default_config_imports_no_qiskit_torch_or_federated_loop() -> None:
    loaded = json.loads(_fresh(
        "import json, sys\n"
        "from llmqfl.config import load_config, validate_config\n"
        "validate_config(load_config('config/config.yaml'))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    ))
    assert _heavy(loaded) == []


@pytest.mark.parametrize(("kind", "source"), [("fake", "tweet_eval"), ("ibm", "human_or_worm"),
                                            ("aer_noisy", "splice")])
def test_every_built_in_backend_kind_and_data_source_is_checked_and_described_without_importing_it(
    kind: str, source: str
) -> None:
    # Execute: validate, then ask what the kind and the source can do (what the Snakefile and planner ask)
    out = json.loads(_fresh(
        "import json, sys\n"
        "from llmqfl.config import validate_config\n"
        "from llmqfl.registry import traits\n"
        f"validate_config({{'backend': {{'kind': {kind!r}}}, 'data': {{'source': {source!r}}}}})\n"
        f"found = [traits('backend', {kind!r}), traits('data_source', {source!r})]\n"
        "print(json.dumps({'traits': found, 'modules': sorted(sys.modules)}))\n"
    ))
    # Assert: nothing heavy, and neither built-in module was imported to answer
    assert _heavy(out["modules"]) == []
    assert "llmqfl.data.sources" not in out["modules"]
    assert out["traits"][0]["runtime_options"] == (kind != "aer_noisy")
    assert out["traits"][1]["online"] == (source != "splice")


def test_an_unknown_backend_kind_is_one_line_without_loading_qiskit() -> None:
    out = _fresh(
        "import sys\n"
        "from llmqfl.config import validate_config\n"
        "try:\n"
        "    validate_config({'backend': {'kind': 'ionq'}})\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
        "print(any(m.startswith('qiskit') for m in sys.modules))\n"
    )
    assert out.splitlines() == [
        "config error: backend.kind: 'ionq' is not one of: aer, aer_noisy, fake, ibm", "False"]


def test_builtin_names_are_exactly_what_each_builtin_module_registers() -> None:
    registered = json.loads(_fresh(
        "import importlib, json\n"
        "from llmqfl import registry\n"
        "for kind in registry.KINDS.values():\n"
        "    importlib.import_module(kind.builtins)\n"
        "print(json.dumps({k: sorted(v) for k, v in registry._ENTRIES.items()}))\n"
    ))
    assert registered == {name: sorted(kind.builtin_names) for name, kind in registry.KINDS.items()}


def test_builtin_traits_are_exactly_the_built_in_classes_attributes() -> None:
    # the static table answers without importing; the classes are what runs: they must agree
    found = json.loads(_fresh(
        "import json\n"
        "from llmqfl import registry\n"
        "out = {}\n"
        "for kind in registry.KINDS.values():\n"
        "    for name in kind.builtin_traits:\n"
        "        cls = registry.get(kind.name, name)\n"
        "        out[f'{kind.name}:{name}'] = {k: getattr(cls, k) for k in kind.trait_defaults}\n"
        "print(json.dumps(out))\n"
    ))
    table = {f"{kind.name}:{name}": {**kind.trait_defaults, **traits}
             for kind in registry.KINDS.values() for name, traits in kind.builtin_traits.items()}
    assert found == json.loads(json.dumps(table))  # (tuples read back as lists)
    for kind in ("backend", "data_source"):  # every built-in has its traits in the table
        names = registry.KINDS[kind].builtin_names
        assert {k for k in table if k.startswith(f"{kind}:")} == {f"{kind}:{n}" for n in names}
