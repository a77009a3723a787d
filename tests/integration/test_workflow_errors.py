"""Bad input stops the real `snakemake` with a one-line error naming the field; nothing under results/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _write_csv(path: Path, rows: list[tuple[str, str]], header: str = "sequence,cls") -> Path:
    path.write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return path


def _without_ibm_account(env: os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("QISKIT_IBM_")}


def _cases(tmp: Path) -> dict[str, tuple[dict, str]]:
    # 40 distinct 20-mers (the same item under both labels would be refused as a label conflict)
    items = ["ACGT" * 4 + "".join("ACGT"[(i >> (2 * j)) & 3] for j in range(4)) for i in range(40)]
    good = _write_csv(tmp / "good.csv", [(item, "a" if i % 2 else "b") for i, item in enumerate(items)])
    one_class = _write_csv(tmp / "one_class.csv", [("ACGT" * 5, "a") for _ in range(40)])
    unreadable = tmp / "unreadable.csv"
    unreadable.write_bytes(b"\x00\xff\xfe not a csv \x00")
    csv = {"source": "csv", "item_column": "sequence", "label_column": "cls"}
    return {
        "unknown dataset": ({"data": {"source": "imagenet"}}, "data.source"),
        "negative clients": ({"federation": {"n_clients": -2}}, "federation.n_clients"),
        "alpha <= 0": ({"federation": {"partition": {"kind": "dirichlet", "alpha": 0}}}, "federation.partition.alpha"),
        "missing csv column": ({"data": {**csv, "path": str(good), "label_column": "nope"}}, "nope"),
        "unreadable csv": ({"data": {**csv, "path": str(unreadable)}}, str(unreadable.name)),
        "missing csv file": ({"data": {**csv, "path": str(tmp / "absent.csv")}}, "absent.csv"),
        "one class": ({"data": {**csv, "path": str(one_class)}}, "cls"),
        "unknown backend": ({"backend": {"kind": "ionq"}}, "backend.kind"),
        "unknown guidance rule": ({"qfl": {"guidance": {"rule": "greedy"}}}, "qfl.guidance.rule"),
        "non-integer seed": ({"seed": 0.5}, "seed"),
        "ibm without a token": ({"backend": {"kind": "ibm", "shots": 10}}, "QISKIT_IBM_TOKEN"),
        "more clients than items": (
            {"data": {**csv, "path": str(good)}, "federation": {"n_clients": 500}},
            "n_clients",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown dataset",
        "negative clients",
        "alpha <= 0",
        "missing csv column",
        "unreadable csv",
        "missing csv file",
        "one class",
        "unknown backend",
        "unknown guidance rule",
        "non-integer seed",
        "more clients than items",
        "ibm without a token",
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(case: str, tmp_path: Path) -> None:
    # Prepare
    override, expected = _cases(tmp_path)[case]
    override = {"experiment": "bad", **override}
    configfile = tmp_path / "bad.yaml"
    configfile.write_text(yaml.safe_dump(override))
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config").mkdir()
    (workdir / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    # Execute
    proc = subprocess.run(
        [
            str(SNAKEMAKE),
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(workdir),
            "--cores",
            "1",
            "--configfile",
            str(configfile),
        ],
        capture_output=True,
        text=True,
        env={**_without_ibm_account(os.environ), "LLMQFL_TRACKING": "off", "HOME": str(tmp_path)},
        timeout=300,
    )
    # Assert
    assert proc.returncode != 0
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("llmqfl:")]
    assert len(error_lines) == 1, proc.stderr
    assert expected in error_lines[0], error_lines[0]
    assert not (workdir / "results").exists()
