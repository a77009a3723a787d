"""Code provenance: each stage's code is the import closure of its entry module, one table for all uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmqfl import provenance


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_closure_follows_absolute_relative_lazy_and_package_imports(tmp_path: Path) -> None:
    # Prepare: a small package with every import form the project uses
    src = _write(tmp_path, {
        "llmqfl/__init__.py": "",
        "llmqfl/stages/__init__.py": "",
        "llmqfl/stages/one.py": "from llmqfl.data import encoders\nfrom . import helper\n"
                                "def late():\n    import llmqfl.lazy\n",
        "llmqfl/stages/helper.py": "from ..io import write\n",
        "llmqfl/data/__init__.py": "from llmqfl.data.split import split\n",
        "llmqfl/data/encoders.py": "import numpy\n",
        "llmqfl/data/split.py": "",
        "llmqfl/io.py": "",
        "llmqfl/lazy.py": "",
        "llmqfl/unrelated.py": "",
    })
    # Execute
    closure = provenance.import_closure("llmqfl.stages.one", src)
    # Assert: package __init__s run on import, so their imports count; an unimported module does not
    assert closure == sorted([
        "llmqfl", "llmqfl.stages", "llmqfl.stages.one", "llmqfl.stages.helper", "llmqfl.io", "llmqfl.data",
        "llmqfl.data.encoders", "llmqfl.data.split", "llmqfl.lazy",
    ])


def test_a_lazy_package_getattr_does_not_pull_its_targets_into_every_stage(tmp_path: Path) -> None:
    src = _write(tmp_path, {
        "llmqfl/__init__.py": "def __getattr__(name):\n    from llmqfl.api import load_model\n    return load_model\n",
        "llmqfl/api.py": "",
        "llmqfl/stages/__init__.py": "",
        "llmqfl/stages/one.py": "",
    })
    assert "llmqfl.api" not in provenance.import_closure("llmqfl.stages.one", src)


def test_every_stage_the_workflow_runs_has_files_and_a_digest() -> None:
    table = provenance.provenance_table()
    assert set(table) == set(provenance.STAGE_MODULES)
    for stage, row in table.items():
        assert f"src/{provenance.STAGE_MODULES[stage].replace('.', '/')}.py" in row["files"]
        assert len(row["digest"]) == 16


def test_the_encoders_belong_to_the_stages_that_import_them_only() -> None:
    # the qfl features encode items; evaluation and the report never touch them
    importers = {s for s in provenance.STAGE_MODULES if "src/llmqfl/data/encoders.py" in provenance.stage_files(s)}
    assert "qfl" in importers
    assert not importers & {"evaluate", "report", "rounds", "assets"}


def test_the_digest_changes_with_the_bytes_of_any_listed_file(tmp_path: Path) -> None:
    _write(tmp_path, {"src/a.py": "X = 1\n", "src/b.py": "Y = 1\n"})
    before = provenance.files_digest(["src/a.py", "src/b.py"], tmp_path)
    (tmp_path / "src/b.py").write_text("Y = 2\n")
    assert provenance.files_digest(["src/a.py", "src/b.py"], tmp_path) != before


def test_an_unknown_stage_is_an_error_not_an_empty_digest() -> None:
    with pytest.raises(KeyError, match="no stage"):
        provenance.stage_digest("nonesuch")


def test_qfl_checkpoints_are_not_resumed_across_code_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the same inputs, fingerprinted under two code versions
    from llmqfl.config import load_settings
    from llmqfl.federated.run import fingerprint
    from llmqfl.federated.server import FederationPlan, ServerData

    server = ServerData(val_x=np.zeros((2, 4)), val_y=np.zeros(2), test_x=np.zeros((2, 4)), test_y=np.zeros(2),
                        llm_loss=0.5)
    plan = FederationPlan(rounds=2, initial_maxiter=3, max_maxiter=5, schedule=None)

    def digest() -> str:
        return fingerprint(load_settings({"seed": 0}), "baseline", 0, [], server, plan, np.zeros(4))

    # Execute
    first = digest()
    monkeypatch.setattr(provenance, "stage_digest", lambda stage: "other-code")
    second = digest()
    # Assert
    assert first != second
