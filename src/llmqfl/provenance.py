"""Which version of the code produced a result: one table of the package files each stage imports.

A stage's code is the import closure of its entry module (``llmqfl.stages.<name>``), found by walking
the ``import`` statements of ``src/llmqfl`` (an :mod:`ast` walk, so nothing is imported or run). The
same table feeds the Snakemake rules' ``code`` params, the qfl checkpoint fingerprint and the
``dvc.yaml`` deps (``scripts/dvc_yaml.py``), so an edit anywhere a stage imports re-runs that stage
and nothing else.

    python -m llmqfl.provenance          # the table as JSON: stage -> digest and files
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SRC = PACKAGE.parent
ROOT_PACKAGE = "llmqfl"

# Every stage CLI the workflow runs: its name in rules and in the table -> its entry module.
STAGE_MODULES: dict[str, str] = {
    "assets": "llmqfl.stages.assets",
    "data": "llmqfl.stages.data",
    "partition": "llmqfl.stages.partition",
    "distill": "llmqfl.stages.distill",
    "distill_federated": "llmqfl.stages.distill_federated",
    "embed": "llmqfl.stages.embed",
    "qfl": "llmqfl.stages.qfl",
    "plan": "llmqfl.stages.plan",
    "evaluate": "llmqfl.stages.evaluate",
    "report": "llmqfl.stages.report",
    "rounds": "llmqfl.stages.rounds",
}


def module_path(module: str, src: Path | None = None) -> Path | None:
    """The source file of a package module (a package is its ``__init__.py``), or None if there is none."""
    base = (src or SRC).joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _lazy_getattr(node: ast.AST, tree: ast.Module) -> bool:
    """Imports inside a module-level ``__getattr__`` run only when someone asks for that name."""
    return any(
        isinstance(top, ast.FunctionDef) and top.name == "__getattr__" and node in ast.walk(top) for top in tree.body
    )


def direct_imports(module: str, src: Path | None = None) -> set[str]:
    """The package modules ``module`` imports anywhere in its body (functions included: lazy imports count)."""
    path = module_path(module, src)
    if path is None:
        return set()
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if _is_package(path) else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                origin = f"{base}.{node.module}" if node.module else base
            else:
                origin = node.module or ""
            # `from pkg import name`: name is a submodule or an attribute of pkg
            names = [origin, *(f"{origin}.{alias.name}" for alias in node.names)]
        else:
            continue
        if _lazy_getattr(node, tree):
            continue
        found.update(name for name in names if name.split(".")[0] == ROOT_PACKAGE and module_path(name, src))
    return found


def _with_parents(module: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def import_closure(entry: str, src: Path | None = None) -> list[str]:
    """Every package module that running ``entry`` may import, sorted."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        for name in _with_parents(module):
            if name not in seen and module_path(name, src):
                seen.add(name)
                todo.extend(direct_imports(name, src))
    return sorted(seen)


@cache
def stage_files(stage: str) -> tuple[str, ...]:
    """The stage's source files, as paths relative to the project root (``src/llmqfl/...``)."""
    if stage not in STAGE_MODULES:
        raise KeyError(f"provenance: no stage {stage!r} (known: {', '.join(STAGE_MODULES)})")
    root = SRC.parent
    paths = {module_path(name) for name in import_closure(STAGE_MODULES[stage])}
    return tuple(sorted(path.relative_to(root).as_posix() for path in paths if path is not None))


def files_digest(files: tuple[str, ...] | list[str], root: Path | None = None) -> str:
    """sha256 (16 hex digits) of the files' relative paths and bytes."""
    base = root or SRC.parent
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        digest.update((base / name).read_bytes())
    return digest.hexdigest()[:16]


@cache
def stage_digest(stage: str) -> str:
    """The digest of the code ``stage`` runs: a rule param and a qfl checkpoint key."""
    return files_digest(stage_files(stage))


def provenance_table() -> dict[str, dict[str, object]]:
    """stage -> {"digest": ..., "files": [...]}: the one table rules, checkpoints and dvc.yaml use."""
    return {stage: {"digest": stage_digest(stage), "files": list(stage_files(stage))} for stage in STAGE_MODULES}


if __name__ == "__main__":
    json.dump(provenance_table(), sys.stdout, indent=1)
    sys.stdout.write("\n")
