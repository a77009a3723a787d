"""Faults in the qfl checkpoints: a resumed shot-based run draws the same shots; damaged rounds are skipped."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from fakes.backend_settings import backend_settings

from llmqfl.federated.checkpoint import load_latest
from llmqfl.federated.client import Client, ClientData
from llmqfl.federated.server import Federation, FederationPlan, ServerData
from llmqfl.quantum import build_model, make_evaluator, train_local
from llmqfl.quantum.backends.backend import make_backend

N_QUBITS = 2


class Interrupt(Exception):
    """Stands in for SIGKILL: the round's checkpoint is on disk, the process goes no further."""


def _data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).uniform(0, np.pi, (n, N_QUBITS))
    return x, (x[:, 0] > np.pi / 2).astype(np.int64)


def _federation(checkpoint_dir: Path, *, shots: int | None, on_round=None, rounds: int = 3) -> Federation:
    """A small federation; with ``shots`` it samples on a fresh seeded Aer backend (a new process's view)."""
    model = build_model(kind="vqc", n_qubits=N_QUBITS, n_classes=2, ansatz_reps=1)
    backend = None
    if shots is not None:
        backend = make_backend(backend_settings(kind="aer", shots=shots), seed=7, n_qubits=N_QUBITS)
    trainer = functools.partial(train_local, optimizer="cobyla")
    clients = []
    for k in range(3):
        train_x, train_y = _data(10 + k, 6)
        test_x, test_y = _data(20 + k, 3)
        clients.append(Client(ClientData(k, train_x, train_y, test_x, test_y, llm_loss=0.5), trainer=trainer,
                              distill_weight=0.0, temperature=2.0))
    val_x, val_y = _data(30, 4)
    test_x, test_y = _data(31, 4)
    return Federation(
        clients=clients,
        server=ServerData(val_x, val_y, test_x, test_y),
        evaluator=make_evaluator(model, backend=backend, seed=0),
        plan=FederationPlan(rounds=rounds, initial_maxiter=3, max_maxiter=3, selection="random", fraction=0.67),
        seed=3,
        initial_weights=np.random.default_rng(1).uniform(-np.pi, np.pi, model.n_params),
        checkpoint_dir=checkpoint_dir,
        fingerprint="faults",
        on_round=on_round,
    )


def _stop_after(round_to_stop: int):
    def on_round(round_index: int, rows: list[dict]) -> None:
        if round_index == round_to_stop:
            raise Interrupt

    return on_round


def test_a_resumed_shot_based_run_ends_with_the_uninterrupted_runs_weights(tmp_path: Path) -> None:
    # Prepare: the uninterrupted reference on Aer with 128 shots, and the same run stopped after round 1
    reference = _federation(tmp_path / "reference", shots=128).run()
    with pytest.raises(Interrupt):
        _federation(tmp_path / "killed", shots=128, on_round=_stop_after(1)).run()
    # Execute: a new backend (as after a restart) resumes from round 1's checkpoint
    resumed = _federation(tmp_path / "killed", shots=128).run(resume=True)
    # Assert: identical weights and losses, so the next jobs' seeds were those of the uninterrupted run
    np.testing.assert_array_equal(resumed.weights, reference.weights)
    np.testing.assert_array_equal(resumed.history["loss"].to_numpy(), reference.history["loss"].to_numpy())


def _damage_truncated_zip(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _damage_empty(path: Path) -> None:
    path.write_bytes(b"")


def _damage_json_cut(path: Path) -> None:
    path.write_text(path.read_text()[:25])


@pytest.mark.parametrize(
    ("suffix", "damage"),
    [("npz", _damage_truncated_zip), ("npz", _damage_empty), ("json", _damage_json_cut), ("json", _damage_empty)],
    ids=["npz-truncated", "npz-empty", "json-truncated", "json-empty"],
)
def test_a_damaged_last_checkpoint_is_discarded_and_the_run_resumes_from_the_round_before(
    tmp_path: Path, suffix: str, damage
) -> None:
    # Prepare: a finished exact run, then its last round's file damaged as a kill or a full disk leaves it
    reference = _federation(tmp_path, shots=None).run()
    damage(tmp_path / f"round_3.{suffix}")
    # Execute
    state = load_latest(tmp_path, fingerprint="faults")
    resumed = _federation(tmp_path, shots=None).run(resume=True)
    # Assert: round 2 was the restart point, the damaged files were replaced, the result is the reference's
    assert state is not None and state.round == 2
    np.testing.assert_array_equal(resumed.weights, reference.weights)
    assert load_latest(tmp_path, fingerprint="faults").round == 3


def test_a_temp_folder_of_a_killed_checkpoint_write_is_removed(tmp_path: Path) -> None:
    # Prepare: what atomic_path leaves when the process dies while writing round 2
    with pytest.raises(Interrupt):
        _federation(tmp_path, shots=None, rounds=2, on_round=_stop_after(1)).run()
    leftover = tmp_path / ".round_2.npz.k3j_x9q1"
    leftover.mkdir()
    (leftover / "round_2.npz").write_bytes(b"PK")
    # Execute
    _federation(tmp_path, shots=None, rounds=2).run(resume=True)
    # Assert
    assert not leftover.exists()


def _edit_one_byte(path: Path, key: str) -> None:
    """Change the first digit of ``key``'s first value in a checkpoint's JSON (still valid JSON, one byte)."""
    text = path.read_text()
    at = text.index(":", text.index('"0"', text.index(f'"{key}"'))) + 2
    digit = text[at]
    assert digit.isdigit()
    path.write_text(text[:at] + ("8" if digit == "9" else "9") + text[at + 1:])


@pytest.mark.parametrize("key", ["maxiters", "last_losses"])
def test_a_checkpoint_json_edited_by_one_byte_is_named_and_the_run_resumes_from_the_round_before(
    tmp_path: Path, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a finished exact run, then one byte of its last round's JSON changed (a maxiter, a loss)
    reference = _federation(tmp_path, shots=None).run()
    edited = tmp_path / "round_3.json"
    _edit_one_byte(edited, key)
    # Execute
    with caplog.at_level("WARNING", logger="llmqfl.federated.checkpoint"):
        state = load_latest(tmp_path, fingerprint="faults")
    resumed = _federation(tmp_path, shots=None).run(resume=True)
    # Assert: one line names the edited file; round 2 was the restart point; the result is the reference's
    named = [r.getMessage() for r in caplog.records if str(edited) in r.getMessage()]
    assert len(named) == 1 and "integrity digest" in named[0] and "\n" not in named[0]
    assert state is not None and state.round == 2
    np.testing.assert_array_equal(resumed.weights, reference.weights)
    np.testing.assert_array_equal(resumed.history["loss"].to_numpy(), reference.history["loss"].to_numpy())
    assert load_latest(tmp_path, fingerprint="faults").round == 3
