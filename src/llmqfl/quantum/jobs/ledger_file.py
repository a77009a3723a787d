"""The job ledger's file: one JSON record per line, each fsynced; read back with torn tails tolerated.

A kill mid-write leaves at most one torn last line; :func:`read_ledger` reports it and :func:`repair`
cuts it off before the next append. :mod:`llmqfl.quantum.jobs.job_ledger` decides what the records mean.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmqfl.errors import LlmqflError

__all__ = ["FORMAT_VERSION", "LedgerError", "LedgerFile", "LedgerMismatchError", "append_record", "fsync_dir",
           "parse_record", "read_ledger", "repair", "retire"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class LedgerError(LlmqflError):
    """A job ledger that cannot be used: unreadable header, unknown format, a record that cannot be written."""


class LedgerMismatchError(LedgerError):
    """The ledger belongs to another run (other inputs, config or code): its results must not be replayed."""


# ---------------------------------------------------------------------------- the file


@dataclass
class LedgerFile:
    """A ledger file as read: its header, its records in order, and what could not be read."""

    path: Path
    header: dict[str, Any] | None
    records: list[dict[str, Any]] = field(default_factory=list)
    unreadable_lines: list[int] = field(default_factory=list)  # 1-based, complete lines that are not records
    torn_tail: bool = False  # the last line was cut short (a kill mid-write)
    clean_size: int = 0  # bytes up to the end of the last complete line


def read_ledger(path: str | Path) -> LedgerFile:
    """Read a ledger: a torn last line is reported (not fatal); a damaged middle line is skipped and listed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LedgerError(f"job ledger {path}: cannot read it ({exc.strerror or exc})") from None
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    entries = [(i + 1, parse_record(line)) for i, line in enumerate(lines) if line.strip()]
    clean_size = len(raw) - len(tail)
    torn = False
    if tail.strip():
        record = parse_record(tail)
        if record is None:
            torn = True
        else:  # complete but its newline never made it: keep it, the next append adds one
            entries.append((len(lines) + 1, record))
            clean_size = len(raw)
    header = None
    records: list[dict[str, Any]] = []
    unreadable: list[int] = []
    for number, record in entries:
        if record is None:
            unreadable.append(number)
        elif header is None and not records and record.get("type") == "header":
            header = record
        else:
            records.append(record)
    if header is None and (records or unreadable):
        raise LedgerError(f"job ledger {path}: its first line is not a ledger header; not a job ledger")
    if header is not None and header.get("format") != FORMAT_VERSION:
        raise LedgerError(
            f"job ledger {path}: format {header.get('format')!r}, this version reads format {FORMAT_VERSION}"
        )
    return LedgerFile(path, header, records, unreadable, torn, clean_size)


def parse_record(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("type"), str) else None


def append_record(path: Path, record: dict[str, Any]) -> int:
    """Append one record as one line and fsync it; the bytes written."""
    line = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
    try:
        with path.open("ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        what = f"cannot record a {record['type']} entry ({exc.strerror or exc})"
        raise LedgerError(f"job ledger {path}: {what}") from None
    return len(line)


def fsync_dir(directory: Path) -> None:
    """Make a new file's name durable too (POSIX: the directory entry is separate from the data)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def retire(path: Path, fingerprint: str | None) -> Path:
    """Move an old ledger aside (never delete a record of paid jobs); its new path."""
    stem = f"jobs.{(fingerprint or 'unknown')[:12]}"
    target, n = path.with_name(f"{stem}.ledger.jsonl"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{stem}.{n}.ledger.jsonl")
    path.rename(target)
    return target


def repair(loaded: LedgerFile) -> None:
    """Cut a torn last line off (or end a complete one) so the next record starts on its own line."""
    path = loaded.path
    size = path.stat().st_size
    if loaded.torn_tail:
        log.warning("job ledger %s: its last line was cut short (a kill mid-write); dropping %d bytes", path,
                    size - loaded.clean_size)
        with path.open("r+b") as handle:
            handle.truncate(loaded.clean_size)
            handle.flush()
            os.fsync(handle.fileno())
    elif size and loaded.clean_size == size:
        with path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            ended = handle.read(1) == b"\n"
        if not ended:
            with path.open("ab") as handle:
                handle.write(b"\n")
                handle.flush()
                os.fsync(handle.fileno())
    if loaded.unreadable_lines:
        log.warning("job ledger %s: lines %s are not readable records; their jobs will be submitted again",
                    path, loaded.unreadable_lines[:10])
