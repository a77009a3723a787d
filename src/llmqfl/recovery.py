"""Recovery after a kill: remove what a process killed mid-write left behind.

Every output goes through :func:`llmqfl.io.atomic_path`: a temporary folder ``.{name}.XXXXXXXX``
beside the target, renamed onto the target on success. A process killed with SIGKILL never gets to
remove that folder; the target itself is either the old complete file or absent, never partial.
The Snakefile's ``onstart`` (no job of the experiment runs then: Snakemake's lock) calls
:func:`sweep_partial_writes` on the experiment's results, so a kill leaves nothing behind for good.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)
# tempfile.mkdtemp(prefix=".{name}.") / mkstemp: the prefix, then 8 characters of [a-z0-9_]
_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}$")


def partial_writes(root: str | Path) -> list[Path]:
    """Temporary folders (and files) of interrupted atomic writes under ``root``."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob(".*")):
        match = _TEMP.match(path.name)
        if match is None:
            continue
        if path.is_dir() and not path.is_symlink():
            if all(child.name == match.group("name") for child in path.iterdir()):
                found.append(path)
        elif path.is_file() and path.parent.name == "config":  # llmqfl.pipeline.write_stage_configs' temp file
            found.append(path)
    return found


def sweep_partial_writes(root: str | Path) -> list[Path]:
    """Remove :func:`partial_writes` under ``root``; returns what was removed."""
    removed = partial_writes(root)
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if removed:
        log.warning("removed %d temporary file(s) of writes a killed process left: %s", len(removed),
                    ", ".join(str(p) for p in removed[:5]))
    return removed
