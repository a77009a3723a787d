"""One checkpoint per finished round, so an interrupted run resumes where it stopped.

``checkpoints/round_{r}.npz`` holds the global weights after round r; ``round_{r}.json`` holds the
rest of the engine state (client maxiters and last losses, the selection RNG's
``bit_generator.state``, the next selection, the plateau state, the history rows so far) plus a
fingerprint of the run's inputs, a SHA-256 of the weights, the quantum engine's RNG state
(a shot-based backend's per-job seed counter: without it a resumed run draws other shots than an
uninterrupted one) and a SHA-256 of the JSON's own content (:func:`llmqfl.integrity.seal`): a JSON
edited by one byte (the next selection, a maxiter) is named in one line and discarded like a damaged
one. Both files are written atomically, the JSON last, so a round counts only when its JSON exists
and matches its weights: a run killed mid-write resumes from the round before. A file that cannot be
read for any reason (truncated zip, empty JSON, garbage) is logged and skipped, so a damaged
checkpoint costs its round, never the run. A run that keeps a job ledger (``fake``, ``ibm``:
:mod:`llmqfl.quantum.jobs.job_ledger`, ``jobs.ledger.jsonl`` in the same folder) gets each round's losses
appended to it just before the round's JSON, so the ledger alone tells the run's rounds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmqfl.errors import IntegrityError
from llmqfl.federated.termination import PlateauState
from llmqfl.integrity import check_seal, seal
from llmqfl.io import atomic_path, write_json

log = logging.getLogger(__name__)
_NAME = re.compile(r"^round_(\d+)\.json$")
# a folder llmqfl.io.atomic_path left behind when the process died mid-write
_TEMP = re.compile(r"^\.round_\d+\.(json|npz)\.[A-Za-z0-9_]+$")
FORMAT_VERSION = 3  # 2: engine_state (shot-based backends' job seed counter); 3: the JSON's own digest


@dataclass
class FederationState:
    """Everything the round loop needs to continue after round ``round``."""

    round: int
    weights: np.ndarray
    maxiters: dict[int, int]
    last_losses: dict[int, float]
    server_loss: float | None
    next_selected: tuple[int, ...]
    rng_state: dict[str, Any]
    plateau: PlateauState = field(default_factory=PlateauState)
    rows: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = ""
    shots_used: int = 0
    aborted: dict[str, Any] = field(default_factory=dict)  # work of a round cut short by the shot budget
    engine_state: dict[str, Any] = field(default_factory=dict)  # the evaluator's RNG state (see engine_state())


def engine_state(evaluator: Any) -> dict[str, Any]:
    """The evaluator's RNG state as JSON-able data (``evaluator.rng_state()``), or {} for a stateless one."""
    getter = getattr(evaluator, "rng_state", None)
    return dict(getter()) if callable(getter) else {}


def restore_engine_state(evaluator: Any, state: dict[str, Any]) -> None:
    """Put a checkpoint's engine state back, so the next job draws what it would have drawn."""
    setter = getattr(evaluator, "restore_rng_state", None)
    if callable(setter) and state:
        setter(state)


def _weights_digest(weights: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(weights, dtype=np.float64).tobytes()).hexdigest()


def save_checkpoint(directory: str | Path, state: FederationState, *, fingerprint: str) -> Path:
    """Write round ``state.round``'s checkpoint; returns the JSON path."""
    directory = Path(directory)
    _remove_stale_temp(directory)
    weights = np.asarray(state.weights, dtype=np.float64)
    with atomic_path(directory / f"round_{state.round}.npz") as tmp, tmp.open("wb") as handle:
        np.savez(handle, weights=weights)
    payload = {
        "format": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "round": state.round,
        "weights_sha256": _weights_digest(weights),
        "maxiters": {str(k): int(v) for k, v in state.maxiters.items()},
        "last_losses": {str(k): float(v) for k, v in state.last_losses.items()},
        "server_loss": state.server_loss,
        "next_selected": list(state.next_selected),
        "rng_state": state.rng_state,
        "plateau": state.plateau.to_dict(),
        "rows": state.rows,
        "stop_reason": state.stop_reason,
        "shots_used": int(state.shots_used),
        "aborted": state.aborted,
        "engine_state": state.engine_state,
    }
    # the round's losses into the run's job ledger (fake, ibm) first: a round a checkpoint holds is on record there
    from llmqfl.quantum.jobs.ledger_rounds import record_round

    record_round(directory, fingerprint=fingerprint, round_index=state.round, rows=state.rows,
                 stop_reason=state.stop_reason, aborted=state.aborted)
    target = directory / f"round_{state.round}.json"
    write_json(target, seal(payload))
    return target


def load_latest(directory: str | Path, *, fingerprint: str) -> FederationState | None:
    """The state after the last complete round whose inputs match ``fingerprint``; None if there is none."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    rounds = sorted(
        (int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name))),
        reverse=True,
    )
    for round_index in rounds:
        state = _load_round(directory, round_index, fingerprint)
        if state is not None:
            return state
    return None


def _load_round(directory: Path, round_index: int, fingerprint: str) -> FederationState | None:
    json_path, npz_path = directory / f"round_{round_index}.json", directory / f"round_{round_index}.npz"
    try:
        payload = json.loads(json_path.read_text())
        with np.load(npz_path) as archive:
            weights = np.array(archive["weights"], dtype=np.float64)
    except Exception as exc:
        log.warning(
            "checkpoint round %d unreadable (%s: %s); discarding it and trying the round before",
            round_index, type(exc).__name__, exc,
        )
        _discard(json_path, npz_path)
        return None
    if not isinstance(payload, dict):
        log.warning("checkpoint %s: not a JSON object; discarding round %d and trying the round before",
                    json_path, round_index)
        _discard(json_path, npz_path)
        return None
    if payload.get("format") == FORMAT_VERSION:
        try:
            check_seal(payload, json_path)
        except IntegrityError as exc:
            log.warning("checkpoint %s; discarding round %d and trying the round before", exc, round_index)
            _discard(json_path, npz_path)
            return None
    if payload.get("format") != FORMAT_VERSION or payload.get("fingerprint") != fingerprint:
        log.warning("checkpoint round %d belongs to other inputs or config; not resuming from it", round_index)
        return None
    if payload.get("weights_sha256") != _weights_digest(weights):
        log.warning("checkpoint round %d: weights do not match their record; trying the round before", round_index)
        return None
    server_loss = payload["server_loss"]
    return FederationState(
        round=int(payload["round"]),
        weights=weights,
        maxiters={int(k): int(v) for k, v in payload["maxiters"].items()},
        last_losses={int(k): float(v) for k, v in payload["last_losses"].items()},
        server_loss=None if server_loss is None or not math.isfinite(server_loss) else float(server_loss),
        next_selected=tuple(int(c) for c in payload["next_selected"]),
        rng_state=payload["rng_state"],
        plateau=PlateauState.from_dict(payload["plateau"]),
        rows=list(payload["rows"]),
        stop_reason=str(payload["stop_reason"]),
        shots_used=int(payload["shots_used"]),
        aborted=dict(payload.get("aborted") or {}),
        engine_state=dict(payload.get("engine_state") or {}),
    )


def clear_checkpoints(directory: str | Path) -> None:
    """Remove this engine's checkpoint files (a fresh, non-resumed run)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if re.match(r"^round_\d+\.(json|npz)$", path.name):
            path.unlink()
    _remove_stale_temp(directory)


def _discard(*paths: Path) -> None:
    """Delete an unreadable round (its JSON first: without it the round never counts)."""
    for path in paths:
        path.unlink(missing_ok=True)


def _remove_stale_temp(directory: Path) -> None:
    """Temporary folders of checkpoint writes a killed process never finished (one writer per directory)."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.is_dir() and _TEMP.match(path.name):
            shutil.rmtree(path, ignore_errors=True)
