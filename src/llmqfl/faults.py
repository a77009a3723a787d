"""Faults of the machine, not of the input, as one line that says what to do (``errors.FaultError``).

A read-only results folder, a results path that is a file, an unwritable HOME or cache, a full disk:
each would otherwise end in a Python traceback from deep inside a write. The Snakefile checks the
folders a run writes before anything is written (:func:`check_workspace`); the stage CLIs turn any
``OSError`` that escapes a stage into the same kind of line (:func:`describe_os_error`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from llmqfl.errors import FaultError

# what each errno means for the user, and the fix
_FIXES: dict[int, str] = {
    errno.EACCES: "permission denied; make it writable (chmod u+w) or run from a folder you own",
    errno.EPERM: "operation not permitted; make it writable (chmod u+w) or run from a folder you own",
    errno.EROFS: "read-only file system; run from a writable folder",
    errno.ENOSPC: "no space left on device; free some space and run the same command again "
                  "(interrupted writes leave no partial output)",
    errno.EDQUOT: "disk quota exceeded; free some space and run the same command again",
    errno.ENOTDIR: "a path component is a file, not a folder; move that file away",
    errno.EEXIST: "a file is in the way of a folder; move that file away",
    errno.EISDIR: "a folder is in the way of a file; move that folder away",
}


def describe_os_error(exc: OSError, what: str = "") -> str:
    """One line for an ``OSError``: the path, what went wrong, and the fix where there is one."""
    path = exc.filename or what
    fix = _FIXES.get(exc.errno or -1, (exc.strerror or str(exc)).lower())
    return f"cannot write {path}: {fix}" if path else f"a write failed: {fix}"


def _deepest_existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (a file on the way is returned as it is)."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_writable(path: str | Path, what: str) -> None:
    """Raise :class:`FaultError` unless folder ``path`` exists writable, or could be created, without writing."""
    path = Path(path)
    existing = _deepest_existing(path)
    if not existing.is_dir():
        raise FaultError(f"{what} {path}: {existing} is a file, not a folder; move that file away or choose "
                         f"another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FaultError(f"{what} {path}: {existing} is not writable (permission denied); make it writable "
                         f"(chmod u+w {existing}) or run from a folder you own")


def check_user_cache(env: Mapping[str, str] | None = None) -> None:
    """The per-user cache (``XDG_CACHE_HOME``, else ``HOME/.cache``: snakemake, Hugging Face, pip) writable.

    An unwritable HOME is fine when ``XDG_CACHE_HOME`` points at a writable folder (the fix the line names).
    """
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    own = env.get("XDG_CACHE_HOME")
    cache, what = (Path(own), "cache folder XDG_CACHE_HOME") if own else (home / ".cache", "HOME's cache folder")
    try:
        check_writable(cache, what)
    except FaultError as exc:
        raise FaultError(f"{exc}; or set XDG_CACHE_HOME (and MPLCONFIGDIR) to a writable folder") from None


def check_workspace(folders: Iterable[tuple[str, str | Path]]) -> None:
    """Every folder a run writes, and the per-user cache, writable: else one line naming it and the fix."""
    for what, folder in folders:
        check_writable(folder, what)
    check_user_cache()
