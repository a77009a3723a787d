"""Backport DVC's fix for `dvc repro --dry` on a clone without results (treeverse/dvc#9818) into the venv.

Why: DVC 3.67.1 (the latest release, pinned in requirements.lock) hashes every dependency for its run
cache even in a dry run, so on a fresh clone `dvc repro --dry` stops at the first stage whose dep is
another stage's output that does not exist yet (`results/E/data` for `distill-E`). DVC's own fix, a
dependency that does not exist cannot be looked up in the run cache, is on its main branch but in no
release. This script applies that one-line change to the installed ``dvc/stage/cache.py``;
`make setup` runs it after installing the lock. It is idempotent, and does nothing once DVC ships
the fix (the original line is gone) or when the file is not the one it knows (it says so).

    .venv/bin/python scripts/patch_dvc.py          # patch (no-op when already patched)
    .venv/bin/python scripts/patch_dvc.py --check  # exit 1 if the venv's DVC still has the bug
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ORIGINAL = '        if not (dep.protocol == "local" and dep.def_path and dep.get_hash()):\n'
FIXED = (
    "        # llmqfl backport of treeverse/dvc#9818's fix: a dependency that does not exist yet (another\n"
    "        # stage's output on a fresh clone) cannot be looked up in the run cache; do not hash it\n"
    "        if not (\n"
    '            dep.protocol == "local" and dep.def_path and dep.exists and dep.get_hash()\n'
    "        ):\n"
)


def cache_module() -> Path:
    spec = importlib.util.find_spec("dvc.stage.cache")
    if spec is None or spec.origin is None:
        raise SystemExit("patch_dvc: DVC is not installed in this interpreter")
    return Path(spec.origin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the installed DVC still needs the patch")
    args = parser.parse_args(argv)
    path = cache_module()
    text = path.read_text()
    if "dep.exists" in text:
        return 0  # patched here, or DVC's own release has the fix
    if ORIGINAL not in text:
        print(f"patch_dvc: {path} is not the DVC 3.67 file this fix knows; left unchanged", file=sys.stderr)
        return 1 if args.check else 0
    if args.check:
        print(f"patch_dvc: {path} lacks the dry-run fix: run scripts/patch_dvc.py", file=sys.stderr)
        return 1
    path.write_text(text.replace(ORIGINAL, FIXED, 1))
    print(f"patch_dvc: {path}: `dvc repro --dry` no longer hashes dependencies that do not exist yet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
