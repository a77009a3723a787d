"""Re-analyse a run from its job ledger alone (``llmqfl ledger CHECKPOINT_DIR``).

What a QPU run cost and did, without its checkpoints, history or the service: jobs (submitted,
fetched by id, replayed after a resume), shots, circuits, QPU seconds, failed attempts, jobs lost in
flight (submitted, then the process died before the result), jobs resubmitted although their result
was on record (a ledger that works keeps this at 0), and per round the jobs that finished in it with
the round's losses as recorded with its checkpoint. A job belongs to the first round record that
follows its result; jobs after the last round record belong to a round the run did not finish.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from llmqfl.quantum.jobs.job_ledger import LEDGER_NAME, LedgerError, read_ledger

__all__ = ["analyse", "find_ledger", "render"]


def find_ledger(path: str | Path) -> Path:
    """The ledger file for ``path``: the file itself, a checkpoint folder, or a run folder holding ``checkpoints/``."""
    path = Path(path)
    for candidate in (path, path / LEDGER_NAME, path / "checkpoints" / LEDGER_NAME):
        if candidate.is_file():
            return candidate
    if not path.exists():
        raise LedgerError(f"{path}: no such file or folder")
    raise LedgerError(f"{path}: no job ledger ({LEDGER_NAME}) here or in {path / 'checkpoints'}; "
                      "only runs on the fake and ibm backends keep one")


def analyse(path: str | Path) -> dict[str, Any]:
    """The run's totals and per-round table from its ledger (see the module docstring)."""
    ledger = read_ledger(find_ledger(path))
    if ledger.header is None:
        raise LedgerError(f"job ledger {ledger.path}: empty (the run was killed before its first record)")
    finished: dict[tuple[str, int], dict[str, Any]] = {}  # first result per job
    submitted_ids: dict[tuple[str, int], list[str | None]] = {}
    resubmitted = replayed = failed_jobs = failed_attempts = processes = resumes = 0
    rounds: dict[int, dict[str, Any]] = {}
    round_of: dict[tuple[str, int], int] = {}
    waiting: list[tuple[str, int]] = []  # finished or replayed since the last round record
    for record in ledger.records:
        kind, ident = record["type"], (record.get("key"), record.get("n"))
        if kind == "open":
            processes += 1
            resumes += bool(record.get("resume")) and processes > 1
        elif kind == "submitted":
            resubmitted += ident in finished
            submitted_ids.setdefault(ident, []).append(record.get("job_id"))
        elif kind == "result":
            if ident not in finished:
                finished[ident] = record
                failed_attempts += max(int(record.get("attempts") or 1) - 1, 0)
            waiting.append(ident)
        elif kind == "replayed":
            replayed += 1
            waiting.append(ident)
        elif kind == "failed":
            failed_jobs += 1
            failed_attempts += int(record.get("attempts") or 0)
        elif kind == "round":
            number = int(record["round"])
            for job in waiting:
                round_of.setdefault(job, number)
            waiting = []
            rounds[number] = record  # a round run again after a kill: the last record holds
    jobs = list(finished.values())
    fetched = sum(1 for job in jobs if job.get("source") == "fetched")
    lost = [ident for ident in submitted_ids if ident not in finished]
    per_round = [_round_row(number, rounds[number], [j for i, j in finished.items() if round_of.get(i) == number])
                 for number in sorted(rounds)]
    unfinished = [j for i, j in finished.items() if i not in round_of]
    header = ledger.header
    return {
        "ledger": str(ledger.path),
        "fingerprint": header.get("fingerprint"),
        "backend": header.get("backend") or {},
        "meta": header.get("meta") or {},
        "processes": processes,
        "resumes": resumes,
        "totals": {
            **_sums(jobs),
            "submissions": sum(len(ids) for ids in submitted_ids.values()),
            "jobs_submitted": len(jobs) - fetched,
            "jobs_fetched_by_id": fetched,
            "jobs_replayed": replayed,
            "jobs_failed": failed_jobs,
            "failed_attempts": failed_attempts,
            "jobs_lost_in_flight": len(lost),
            "resubmitted_after_result": resubmitted,
        },
        "rounds": per_round,
        "unfinished_round": _sums(unfinished) if unfinished else None,
        "stop_reason": next((r["stop_reason"] for r in reversed(per_round) if r["stop_reason"]), ""),
        "unreadable_lines": ledger.unreadable_lines,
        "torn_tail": ledger.torn_tail,
    }


def _sums(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "jobs": len(jobs),
        "shots": sum(int(j.get("shots") or 0) for j in jobs),
        "circuits": sum(int(j.get("circuits") or 0) for j in jobs),
        "qpu_seconds": math.fsum(float(j.get("qpu_seconds") or 0.0) for j in jobs),
    }


def _round_row(number: int, record: dict[str, Any], jobs: list[dict[str, Any]]) -> dict[str, Any]:
    server = record.get("server") or {}
    clients = record.get("clients") or {}
    trained = [c["train_loss"] for c in clients.values() if c.get("selected") and _finite(c.get("train_loss"))]
    return {
        "round": number,
        **_sums(jobs),
        "server_val_loss": server.get("loss"),
        "server_test_loss": server.get("test_loss"),
        "server_test_accuracy": server.get("test_accuracy"),
        "client_train_loss_mean": math.fsum(trained) / len(trained) if trained else None,
        "clients_selected": sum(1 for c in clients.values() if c.get("selected")),
        "stop_reason": record.get("stop_reason") or "",
    }


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def render(summary: dict[str, Any]) -> str:
    """A short text report of :func:`analyse`'s summary."""
    totals, backend = summary["totals"], summary["backend"]
    device = ":".join(str(backend.get(k)) for k in ("kind", "name") if backend.get(k)) or "unknown backend"
    meta = " ".join(f"{k} {v}" for k, v in summary["meta"].items())
    lines = [
        f"job ledger {summary['ledger']}",
        f"  run {str(summary['fingerprint'])[:12]} on {device}{', ' + meta if meta else ''}; "
        f"{summary['processes']} process(es), {summary['resumes']} resume(s)",
        f"  jobs {totals['jobs']} ({totals['jobs_submitted']} submitted, {totals['jobs_fetched_by_id']} fetched by "
        f"id), {totals['jobs_replayed']} replayed from the ledger, {totals['resubmitted_after_result']} resubmitted "
        "after their result was on record",
        f"  shots {totals['shots']}, circuits {totals['circuits']}, QPU seconds {totals['qpu_seconds']:.2f}",
        f"  failures: {totals['jobs_failed']} failed job(s), {totals['failed_attempts']} failed attempt(s), "
        f"{totals['jobs_lost_in_flight']} lost in flight",
    ]
    if summary["unreadable_lines"] or summary["torn_tail"]:
        lines.append(f"  damaged: lines {summary['unreadable_lines'][:10]} unreadable"
                     f"{', last line torn' if summary['torn_tail'] else ''}")
    header = f"{'round':>5} {'jobs':>5} {'shots':>9} {'circuits':>8} {'qpu_s':>8} {'val_loss':>9} {'test_acc':>8} " \
             f"{'train_loss':>10}"
    lines += ["", header]
    for row in summary["rounds"]:
        lines.append(f"{row['round']:>5} {row['jobs']:>5} {row['shots']:>9} {row['circuits']:>8} "
                     f"{row['qpu_seconds']:>8.2f} {_num(row['server_val_loss']):>9} "
                     f"{_num(row['server_test_accuracy']):>8} {_num(row['client_train_loss_mean']):>10}")
    if summary["unfinished_round"]:
        left = summary["unfinished_round"]
        lines.append(f"{'(open)':>5} {left['jobs']:>5} {left['shots']:>9} {left['circuits']:>8} "
                     f"{left['qpu_seconds']:>8.2f}   the run stopped inside this round")
    if summary["stop_reason"]:
        lines.append(f"stopped: {summary['stop_reason']}")
    return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    return f"{value:.4f}" if _finite(value) else "-"
