"""A store of upstream outputs shared by experiments: a teacher is fine-tuned once per content it reads.

Every experiment has its own results folder, so a variant under its own experiment name (another
backend, say) would fine-tune its teachers again although nothing they read changed. The distill rules
run their stage through :func:`main`::

    python -m llmqfl.stage_cache --store results/.store/distill --config CFG --code CODE \\
        --root OUT_ROOT --outputs O1 O2 ... --inputs I1 I2 ... -- python -m llmqfl.stages.distill ...

The key is the SHA-256 of the stage's config slice without ``experiment`` (the only key that names the
run rather than its content), the stage's code digest and the bytes of every input file (partitions,
meta, test split, model asset), so it is the same exactly when the job would compute the same outputs.
A key in the store: its outputs are copied into place and the stage does not run. Otherwise the stage
runs and its outputs are copied into the store (a temporary folder renamed into place: an entry is
complete or absent). Outputs are named relative to ``--root`` (the experiment's ``distill/`` folder).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)
NAMING_KEYS = ("experiment",)  # name the run, never change what a stage computes
SOURCE = ".source.json"


def cache_key(config_text: str, code: str, inputs: Sequence[str | Path]) -> str:
    """The key of a job: its config slice without the naming keys, its code digest, its inputs' bytes."""
    config = json.loads(config_text)
    for name in NAMING_KEYS:
        config.pop(name, None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode() + b"\0" + code.encode())
    for path in inputs:
        digest.update(b"\0" + _file_digest(Path(path)).encode())
    return digest.hexdigest()[:32]


def _file_digest(path: Path) -> str:
    if path.is_dir():
        parts = [f"{p.relative_to(path).as_posix()}:{_file_digest(p)}" for p in sorted(path.rglob("*")) if p.is_file()]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _copy(source: Path, target: Path) -> None:
    """Copy a file or folder onto ``target`` through a temporary sibling, renamed into place.

    Copies, not hard links: a file edited in place in one experiment must not change the store or
    another experiment's teacher."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / target.name
    if source.is_dir():
        shutil.copytree(source, tmp)
    else:
        shutil.copy2(source, tmp)
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(tmp, target)
    tmp.parent.rmdir()


def restore(entry: Path, root: Path, outputs: Sequence[str]) -> bool:
    """Copy a complete store entry's outputs under ``root``; False when the store has no such entry."""
    if not entry.is_dir() or not all((entry / name).exists() for name in outputs):
        return False
    for name in outputs:
        _copy(entry / name, root / name)
    return True


def keep(entry: Path, root: Path, outputs: Sequence[str], source: dict) -> None:
    """Copy the job's outputs into the store as ``entry`` (atomically; a concurrent writer's entry wins)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        for name in outputs:
            _copy(root / name, tmp / name)
        (tmp / SOURCE).write_text(json.dumps(source, sort_keys=True) + "\n")
        os.rename(tmp, entry)
    except OSError:
        if not entry.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llmqfl.stage_cache", description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, type=Path, help="the store's folder (one entry per key)")
    p.add_argument("--config", required=True, type=Path, help="the stage's config file")
    p.add_argument("--code", required=True, help="the stage's code digest")
    p.add_argument("--root", required=True, type=Path, help="the folder the outputs are named relative to")
    p.add_argument("--outputs", nargs="+", required=True, help="the job's outputs, relative to --root")
    p.add_argument("--inputs", nargs="*", default=[], help="every file the job reads")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the stage's command")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    config_text = args.config.read_text()
    key = cache_key(config_text, args.code, args.inputs)
    entry = args.store / key
    if restore(entry, args.root, args.outputs):
        source = json.loads((entry / SOURCE).read_text()) if (entry / SOURCE).is_file() else {}
        log.info("reused %s from the store (%s, first written by experiment %s): nothing it reads changed",
                 ", ".join(args.outputs), entry, source.get("experiment", "?"))
        return 0
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        return done.returncode
    keep(entry, args.root, args.outputs, {"experiment": json.loads(config_text).get("experiment")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
