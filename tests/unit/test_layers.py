"""Imports run down the layers written in docs/architecture.md, never back up.

The layers are read from the doc's "Layers" block (groups of ``src/llmqfl/...`` lines between ``|``
lines, top first), so the doc and the code cannot drift: a module the doc does not place fails, and so
does any import, at module level or inside a function, of a module in a higher layer.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "llmqfl"


def doc_layers() -> list[list[str]]:
    """Per layer, top first, the package paths it names (``stages/``, ``planning.py``, ...)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"## Layers\n\n```\n(.*?)```", text, re.S).group(1)
    layers: list[list[str]] = [[]]
    for line in block.splitlines():
        if line.strip() == "|":
            layers.append([])
        elif line.startswith("src/llmqfl/"):
            layers[-1].append(line.split()[0].removeprefix("src/llmqfl/"))
    return [layer for layer in layers if layer]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """The layer that places ``module`` (a folder entry places everything below it)."""
    relative = module.removeprefix("llmqfl").lstrip(".").replace(".", "/")
    for index, entries in enumerate(layers):
        for entry in entries:
            if (entry.endswith("/") and (relative + "/").startswith(entry)) or relative + ".py" == entry:
                return index
    return None


def imports(path: Path) -> set[str]:
    """Every llmqfl module ``path`` imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("llmqfl.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmqfl"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if (PACKAGE.parent / f"{node.module}.{alias.name}".replace(".", "/")).exists()
                      or (PACKAGE.parent / (f"{node.module}.{alias.name}".replace(".", "/") + ".py")).exists()}
    return found - {"llmqfl"}


def test_the_doc_places_every_module_in_a_layer() -> None:
    layers = doc_layers()
    assert len(layers) >= 4  # stages, the run's subjects, quantum, the shared core
    modules = [module_name(p) for p in PACKAGE.rglob("*.py")]
    unplaced = sorted(m for m in modules if m != "llmqfl" and layer_of(m, layers) is None)
    assert unplaced == []


def test_no_import_runs_back_up_the_layers() -> None:
    layers = doc_layers()
    upward = []
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path)
        own = layer_of(module, layers)
        for target in imports(path):
            theirs = layer_of(target, layers)
            if own is not None and theirs is not None and theirs < own:
                upward.append(f"{module} (layer {own}) imports {target} (layer {theirs})")
    assert sorted(upward) == []


def test_the_check_catches_a_planted_upward_import(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from llmqfl.stages import qfl\n")
    layers = doc_layers()
    assert any(layer_of(target, layers) == 0 for target in imports(planted))
    assert layer_of("llmqfl.quantum.simulators.exact", layers) > layer_of("llmqfl.federated.server", layers) > 0
