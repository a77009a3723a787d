"""The run's shared facts live once (llmqfl.contracts), and the package stays a small-module acyclic graph."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pandas as pd
import pytest

from llmqfl import contracts
from llmqfl.errors import ConfigError

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "llmqfl"
MAX_LINES = 600  # a smell detector, not a design rule: modules are grouped by subject, not split by size
OVERSIZED_PENDING_SPLIT: set[str] = set()  # modules over the limit while a split is under way
SHARED_NAME_PENDING_RENAME: set[str] = set()  # names shared while a rename is under way


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """Imports under ``if TYPE_CHECKING:`` never run."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return skipped


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere (function bodies included: a lazy import still runs)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skipped = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                origin = node.module or ""
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join([*base, *([node.module] if node.module else [])])
                targets = [origin, *(f"{origin}.{alias.name}" for alias in node.names)]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle (as a path), or [] when the graph is acyclic."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_package_import_graph_has_no_cycle() -> None:
    # Execute
    graph = import_graph()
    # Assert: the check sees real edges, and no module reaches back to itself
    assert "llmqfl.contracts" in graph["llmqfl.federated.accounting"]
    assert _cycle(graph) == []


def test_the_cycle_check_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]


def test_no_module_is_over_600_lines() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    oversized = {path: n for path, n in sizes.items() if n > MAX_LINES and path not in OVERSIZED_PENDING_SPLIT}
    assert oversized == {}


def test_no_two_modules_in_src_share_a_file_name() -> None:
    # Prepare: every module's folder, by file name (a package's __init__.py is its folder's name)
    folders: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.name != "__init__.py":
            folders.setdefault(path.name, []).append(str(path.parent.relative_to(SRC)))
    # Execute
    shared = {name: where for name, where in folders.items() if len(where) > 1}
    # Assert: a name says which module it is without its folder; the pending list holds only real clashes
    assert {name: where for name, where in shared.items() if name not in SHARED_NAME_PENDING_RENAME} == {}
    assert SHARED_NAME_PENDING_RENAME - set(shared) == set()  # a renamed one leaves the list


def test_no_module_is_named_like_a_package() -> None:
    # Prepare: the package names (quantum/evaluation.py beside the evaluation package reads as either);
    # a stage under stages/ is a CLI name (python -m llmqfl.stages.data) and may repeat one
    packages = {p.parent.name for p in PACKAGE.rglob("__init__.py")}
    # Execute
    clashes = sorted(str(p.relative_to(SRC)) for p in PACKAGE.rglob("*.py")
                     if p.stem in packages and p.name != "__init__.py" and p.parent != PACKAGE / "stages")
    # Assert
    assert "evaluation" in packages and "flower" in packages
    assert clashes == []


def test_history_columns_are_defined_once_and_read_back_with_their_dtypes() -> None:
    # Prepare: one client row and one server row, written by the contract's frame builder
    row = dict.fromkeys(contracts.HISTORY_COLUMNS, 0)
    row.update({c: 0.5 for c in contracts.FLOAT_COLUMNS}, selected=True, terminated=False, stop_reason="")
    rows = [{**row, "round": 1, "client": 0}, {**row, "round": 1, "client": contracts.SERVER, "train_loss": math.nan}]
    # Execute: the writer's frame, as the evaluate stage reads it back
    from llmqfl.evaluation.history import check_history

    written = contracts.history_frame(rows)
    read = check_history(written.astype(str).replace("nan", None))
    # Assert
    assert list(written.columns) == list(contracts.HISTORY_COLUMNS)
    assert "train_loss" in contracts.FLOAT_COLUMNS
    assert {c: str(read[c].dtype) for c in contracts.HISTORY_COLUMNS} == {
        c: ("object" if d == "str" else d) for c, d in contracts.HISTORY_DTYPES.items()
    }
    defining = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if _lists_history_columns(p))
    assert defining == ["contracts.py"]


def _lists_history_columns(path: Path) -> bool:
    """True when a literal (tuple, list, set, dict keys) or a class body names 8+ history columns."""
    columns = set(contracts.HISTORY_COLUMNS)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        elif isinstance(node, ast.Dict):
            names = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        elif isinstance(node, ast.ClassDef):
            names = [s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
        else:
            continue
        if len(columns.intersection(n for n in names if isinstance(n, str))) >= 8:
            return True
    return False


def test_a_history_without_a_contract_column_is_refused_naming_it() -> None:
    from llmqfl.errors import DataError
    from llmqfl.evaluation.history import check_history

    frame = pd.DataFrame([dict.fromkeys(contracts.HISTORY_COLUMNS, 1)]).drop(columns=["train_loss"])
    with pytest.raises(DataError, match="train_loss"):
        check_history(frame)


def test_arms_and_the_qubit_fit_are_checked_in_one_place() -> None:
    from llmqfl.config import validate_config

    with pytest.raises(ConfigError, match="arms: 'control' is not one of: baseline, llm_guided, budget_matched"):
        validate_config({"arms": ["control"]})
    with pytest.raises(ConfigError, match=r"qfl\.n_qubits: 5 qubits do not fit FakeX, which has 3"):
        contracts.check_qubit_fit(5, 3, "FakeX")
    contracts.check_qubit_fit(3, None, "aer")  # no fixed width: fits


def test_usage_differences_count_the_work_between_two_snapshots() -> None:
    usage = contracts.Usage(objective_evaluations=2, circuits=10, shots=100, jobs=1, seconds=0.5)
    before = usage.snapshot()
    usage.circuits += 5
    usage.shots += 50
    assert usage.since(before) == contracts.Usage(circuits=5, shots=50)
    assert contracts.remaining_budget(120, 150) == 0 and contracts.remaining_budget(None, 5) is None


def test_stage_clis_are_named_alike() -> None:
    # every stage module: build_parser() (when it has options of its own), body(), main(); logger by __name__
    stages = sorted(p for p in (PACKAGE / "stages").glob("*.py") if not p.name.startswith("_"))
    odd = {}
    for path in stages:
        tree = ast.parse(path.read_text())
        names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        loggers = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call)
                   and ast.unparse(n.func) == "logging.getLogger" and "qiskit" not in ast.unparse(n)]  # fmt: skip
        problems = [name for name in ("parser", "_body") if name in names]
        problems += [] if "main" in names else ["no main"]
        problems += [call for call in loggers if call != "logging.getLogger(__name__)"]
        if problems:
            odd[path.name] = problems
    assert odd == {}
