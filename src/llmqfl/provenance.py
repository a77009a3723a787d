"""Which version of the code produced a result: a digest of the package sources a stage runs.

The Snakefile passes it to rules as a param (a code change re-runs exactly the affected jobs), and
the qfl stage folds it into its checkpoint fingerprint (a re-run after a code change recomputes
instead of resuming rounds that older code produced).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
QFL_CODE = ("federated", "quantum", "stages/qfl.py", "config.py", "io.py")  # what the qfl stage runs


def code_digest(*parts: str) -> str:
    """sha256 (16 hex digits) of the ``.py`` files of subpackages or modules under ``src/llmqfl``."""
    digest = hashlib.sha256()
    for part in parts:
        target = PACKAGE / part
        if not target.exists():
            raise FileNotFoundError(f"code_digest: no {part} in {PACKAGE}")
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for path in files:
            digest.update(str(path.relative_to(PACKAGE)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
