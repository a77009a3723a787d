"""Below the stage layer no code reads the raw config dict: it gets :class:`llmqfl.settings.Settings`.

Three guards. A section is not a mapping, so ``section["key"]`` or ``.get("key", default)`` on one fails
wherever a test reaches it. No module below the stages can obtain a raw config (it imports none of
``llmqfl.config``'s loaders or validators). And no function below the stages declares a config parameter
as a dict or mapping. The modules that do hold the raw dict are named below with the reason.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest
from test_layers import PACKAGE, doc_layers, layer_of, module_name

from llmqfl.config import load_settings

# modules that hold the raw dict by design: validation itself, and the workflow layer's Python that the
# Snakefile and dvc.yaml generator call with the dict Snakemake holds (they sit low only for imports)
RAW_CONFIG_HOLDERS = {
    "llmqfl.config": "loads and validates the raw config",
    "llmqfl.settings": "builds the typed sections from it",
    "llmqfl.registry": "checks extension names during validation",
    "llmqfl.privacy_accounting": "check_settings runs during validation",
    "llmqfl.pipeline": "the Snakefile's helpers: stage config files, arms' slices",
    "llmqfl.stage_cache": "the Snakefile's teacher store keys",
    "llmqfl.cluster": "the Snakefile's Slurm resources",
    "llmqfl.replicates": "the Snakefile's replicate paths",
    "llmqfl.run_tags": "the tags of the Snakefile's parent MLflow run",
}
# the Snakefile's MLflow set-up, beside tracking.stage_run (which takes Settings)
WORKFLOW_FUNCTIONS = {"tracking.py": {"experiment_name", "mark_stale_runs", "start_parent_run"}}
# what a module below the stages may take from llmqfl.config: seeds, the typed loaders, fixed names, and
# the slicing a run's fingerprint and its MLflow params apply to settings.as_config()
ALLOWED_FROM_CONFIG = {"derive_seed", "load_settings", "read_settings", "PROJECT_ROOT", "STAGE_SECTIONS",
                       "RUNTIME_KEYS", "stage_config", "without_runtime_settings"}
CONFIG_PARAMETER_NAMES = {"config", "cfg"}  # and *_cfg (Flower's own run_config / node_config are not ours)


def below_the_stages() -> list[Path]:
    layers = doc_layers()
    paths = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        if module != "llmqfl" and layer_of(module, layers) not in (None, 0) and module not in RAW_CONFIG_HOLDERS:
            paths.append(path)
    return paths


def raw_config_uses(path: Path) -> list[str]:
    """Imports of a raw-config loader, and parameters named like a config typed as a dict or mapping."""
    found = []
    exempt = WORKFLOW_FUNCTIONS.get(path.name, set())
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "llmqfl.config":
            found += [f"{path.name}:{node.lineno} imports llmqfl.config.{alias.name}" for alias in node.names
                      if alias.name not in ALLOWED_FROM_CONFIG]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in exempt:
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                named_like_config = arg.arg in CONFIG_PARAMETER_NAMES or arg.arg.endswith("_cfg")
                annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                if named_like_config and ("dict" in annotation or "Mapping" in annotation or not annotation):
                    found.append(f"{path.name}:{node.lineno} {node.name}({arg.arg}: {annotation or 'untyped'})")
    return found


def test_no_module_below_the_stages_reads_a_raw_config():
    paths = below_the_stages()
    assert len(paths) > 100  # the packages, not an empty walk
    assert [use for path in paths for use in raw_config_uses(path)] == []


def dict_reads_of_settings(path: Path) -> list[str]:
    """``settings[...]``, ``settings.qfl[...]`` or ``settings.qfl.get(...)``: a section read as a dict."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        target = node.value if isinstance(node, ast.Subscript) else None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            target = node.func.value
        if target is not None and ast.unparse(target).split(".")[0] == "settings":
            found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    return found


def test_no_module_reads_settings_as_a_dict():
    """The stage layer included: it builds the settings, and reads them like everyone else."""
    assert [use for path in sorted(PACKAGE.rglob("*.py")) for use in dict_reads_of_settings(path)] == []


def test_the_scan_catches_a_dict_config_and_a_loader(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from typing import Any\nfrom llmqfl.config import load_config, derive_seed\n\n"
        "def rounds(config: dict[str, Any]) -> int:\n    return config['federation']['rounds']\n\n"
        "def shots(backend_cfg) -> int:\n    return backend_cfg['shots']\n\n"
        "def fine(settings, seed: int) -> int:\n    return derive_seed(seed)\n"
    )
    assert raw_config_uses(planted) == [
        "planted.py:2 imports llmqfl.config.load_config",
        "planted.py:4 rounds(config: dict[str, Any])",
        "planted.py:7 shots(backend_cfg: untyped)",
    ]
    planted.write_text("def f(settings):\n    return settings.federation.get('transport'), settings['qfl']\n")
    assert dict_reads_of_settings(planted) == [
        "planted.py:2 settings.federation.get('transport')", "planted.py:2 settings['qfl']"]


def test_a_section_is_read_by_attribute_not_as_a_dict():
    settings = load_settings({"qfl": {"optimizer": {"maxiter": 3}}})
    assert settings.qfl.optimizer.maxiter == 3
    assert not isinstance(settings, Mapping) and not isinstance(settings.qfl, Mapping)
    with pytest.raises(TypeError):
        settings["qfl"]
    with pytest.raises(AttributeError):
        settings.qfl.get("optimizer")  # type: ignore[attr-defined]
