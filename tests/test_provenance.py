"""Code provenance: a digest of the sources a stage runs, used by rules and by qfl checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmqfl import provenance


def _package(root: Path) -> None:
    (root / "quantum").mkdir(parents=True)
    (root / "quantum" / "engine.py").write_text("X = 1\n")
    (root / "io.py").write_text("Y = 2\n")


def test_the_digest_follows_the_code_of_the_named_parts_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    _package(tmp_path)
    monkeypatch.setattr(provenance, "PACKAGE", tmp_path)
    before = provenance.code_digest("quantum")
    # Execute: an unrelated module changes, then the named one
    (tmp_path / "io.py").write_text("Y = 3\n")
    after_other = provenance.code_digest("quantum")
    (tmp_path / "quantum" / "engine.py").write_text("X = 2\n")
    after_own = provenance.code_digest("quantum")
    # Assert
    assert before == after_other != after_own
    assert len(before) == 16


def test_an_unknown_part_is_an_error_not_an_empty_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provenance, "PACKAGE", tmp_path)
    with pytest.raises(FileNotFoundError, match="no quantum"):
        provenance.code_digest("quantum")


def test_every_part_the_qfl_stage_names_exists() -> None:
    assert len(provenance.code_digest(*provenance.QFL_CODE)) == 16


def test_qfl_checkpoints_are_not_resumed_across_code_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the same inputs, fingerprinted under two code versions
    import numpy as np

    from llmqfl.federated.server import FederationPlan, ServerData
    from llmqfl.stages import qfl

    server = ServerData(val_x=np.zeros((2, 4)), val_y=np.zeros(2), test_x=np.zeros((2, 4)), test_y=np.zeros(2),
                        llm_loss=0.5)
    plan = FederationPlan(rounds=2, initial_maxiter=3, max_maxiter=5, schedule=None)

    def digest() -> str:
        return qfl.fingerprint({"seed": 0}, "baseline", 0, [], server, plan, np.zeros(4))

    # Execute
    first = digest()
    monkeypatch.setattr(qfl, "code_digest", lambda *parts: "other-code")
    second = digest()
    # Assert
    assert first != second
