"""Integrity digests: a file written with its SHA-256 is checked against it where it is read.

Why: an intermediate file edited by one byte (a checkpoint's next selection, an adapter's tensors) or cut
short by a full disk was either used silently or failed later with a traceback. Written with the file and
checked on read, a mismatch is one :class:`~llmqfl.errors.IntegrityError` line naming the file, and the
reader goes back to its last good state (an earlier checkpoint, or a restart).

Two forms: a JSON payload carries the digest of its own canonical text (:func:`seal`, :func:`check_seal`);
a folder (an adapter, a round of federated fine-tuning) carries a manifest file listing the digest of
every file in it (:func:`write_manifest`, :func:`check_manifest`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmqfl.errors import IntegrityError

DIGEST_KEY = "sha256"
MANIFEST = "llmqfl-digest.json"
# files a manifest never lists: the manifest itself, and llmqfl.io.atomic_path's marker (written after it)
_UNLISTED = frozenset({MANIFEST, ".llmqfl-output"})
_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def payload_digest(payload: Mapping[str, Any]) -> str:
    """The SHA-256 of ``payload``'s canonical JSON (keys sorted), without its own ``sha256`` key."""
    body = {k: v for k, v in payload.items() if k != DIGEST_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def seal(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` with its digest under ``sha256`` (write the result; :func:`check_seal` it on read)."""
    return {**payload, DIGEST_KEY: payload_digest(payload)}


def check_seal(payload: Any, source: str | Path) -> None:
    """An :class:`IntegrityError` naming ``source`` unless ``payload`` carries the digest of its content."""
    if not isinstance(payload, dict) or DIGEST_KEY not in payload:
        raise IntegrityError(f"{source}: no integrity digest (written by another version, or not by llmqfl)")
    if payload[DIGEST_KEY] != payload_digest(payload):
        raise IntegrityError(f"{source}: content does not match its integrity digest (edited or damaged)")


def write_manifest(folder: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``folder/llmqfl-digest.json``: every file below ``folder`` with its digest, and ``extra``."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): file_sha256(p)
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in _UNLISTED}
    target = folder / MANIFEST
    target.write_text(json.dumps(seal({"files": files, **dict(extra or {})}), indent=2, sort_keys=True) + "\n")
    return target


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The folder's manifest (its digest checked), or None when it has none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{path}: unreadable integrity manifest ({type(exc).__name__})") from exc
    check_seal(payload, path)
    return payload


def check_manifest(folder: str | Path, *, required: bool = True) -> dict[str, Any] | None:
    """Check every file the folder's manifest lists; return the manifest (None: none, and not ``required``).

    Raises :class:`IntegrityError` naming the first file that is missing or differs from its digest.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        if required:
            raise IntegrityError(f"{folder}: no integrity manifest {MANIFEST} (incomplete, or not written by llmqfl)")
        return None
    for name, expected in sorted(dict(manifest.get("files") or {}).items()):
        path = folder / name
        if not path.is_file():
            raise IntegrityError(f"{path}: missing (listed in {folder / MANIFEST})")
        if file_sha256(path) != expected:
            raise IntegrityError(f"{path}: content does not match its integrity digest (edited or damaged)")
    return manifest
