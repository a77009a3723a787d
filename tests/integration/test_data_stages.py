"""The data and partition stage CLIs: contract files, determinism, errors, MLflow, provenance."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from llmqfl.data.embedded import DATA_DIR, EMBEDDED
from llmqfl.io import OUTPUT_MARKER
from llmqfl.stages import data as data_stage
from llmqfl.stages import partition as partition_stage


def _config(tmp_path: Path, seed: int = 0, **overrides: object) -> Path:
    config = {"experiment": "t", "seed": seed, "data": {"source": "splice", "max_items": 150},
              "federation": {"n_clients": 3, "partition": {"kind": "dirichlet", "alpha": 1.0}}}
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value}  # type: ignore[dict-item]
    path = tmp_path / f"config_{seed}.json"
    path.write_text(json.dumps(config))
    return path


def _run(config: Path, out: Path) -> tuple[int, int]:
    rc_data = data_stage.main(["--config", str(config), "--out-dir", str(out / "data")])
    rc_part = partition_stage.main(["--config", str(config), "--data-dir", str(out / "data"),
                                    "--out-dir", str(out / "partitions")])
    return rc_data, rc_part


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(autouse=True)
def _no_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMQFL_TRACKING", "off")


def test_stages_write_the_contract_files(tmp_path: Path) -> None:
    # Execute
    assert _run(_config(tmp_path), tmp_path / "out") == (0, 0)
    # Assert: data
    data_dir, part_dir = tmp_path / "out" / "data", tmp_path / "out" / "partitions"
    assert sorted(p.name for p in data_dir.iterdir()) == [OUTPUT_MARKER, "meta.json", "server_val.parquet",
                                                          "test.parquet", "train.parquet"]
    meta = json.loads((data_dir / "meta.json").read_text())
    assert meta["kind"] == "dna" and meta["classes"] == ["EI", "IE", "N"] and meta["n_classes"] == 3
    assert meta["source"] == "splice" and meta["seed"] == 0
    train = pd.read_parquet(data_dir / "train.parquet")
    assert list(train.columns) == ["row", "item", "label", "group"]
    assert {n: c["total"] for n, c in meta["counts"].items()} == {"train": 108, "test": 30, "server_val": 12}
    # Assert: partitions
    summary = json.loads((part_dir / "partitions.json").read_text())
    assert summary["kind"] == "dirichlet" and summary["n_clients"] == 3 and len(summary["clients"]) == 3
    rows = []
    for client in summary["clients"]:
        table = pd.read_parquet(part_dir / f"client_{client['client']}.parquet")
        assert list(table.columns) == ["row", "item", "label", "group", "split"]
        assert set(table["split"]) <= {"train", "test"} and client["n_train"] >= 1
        pd.testing.assert_series_equal(table["item"], train["item"].iloc[table["row"]].reset_index(drop=True),
                                       check_names=False)
        rows += table["row"].tolist()
    assert sorted(rows) == list(range(len(train)))


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    # Execute
    _run(_config(tmp_path, seed=4), tmp_path / "a")
    _run(_config(tmp_path, seed=4), tmp_path / "b")
    _run(_config(tmp_path, seed=5), tmp_path / "c")
    # Assert
    for stage in ("data", "partitions"):
        assert _digests(tmp_path / "a" / stage) == _digests(tmp_path / "b" / stage)
    a, c = _digests(tmp_path / "a" / "partitions"), _digests(tmp_path / "c" / "partitions")
    assert all(a[name] != c[name] for name in a if name.startswith("client_"))


def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    config = _config(tmp_path, data={"source": "csv", "path": str(tmp_path / "absent.csv"), "item_column": "t",
                                     "label_column": "y"})
    # Execute
    rc = data_stage.main(["--config", str(config), "--out-dir", str(tmp_path / "out" / "data")])
    # Assert
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("llmqfl data: data.path: file not found") and "\n" not in err
    assert not (tmp_path / "out" / "data").exists()


def test_partition_without_data_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = partition_stage.main(["--config", str(_config(tmp_path)), "--data-dir", str(tmp_path / "none"),
                               "--out-dir", str(tmp_path / "parts")])
    assert rc == 2 and "train.parquet not found" in capsys.readouterr().err
    assert not (tmp_path / "parts").exists()


def test_too_many_clients_fail_in_the_partition_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, federation={"n_clients": 60})
    assert data_stage.main(["--config", str(config), "--out-dir", str(tmp_path / "data")]) == 0
    rc = partition_stage.main(["--config", str(config), "--data-dir", str(tmp_path / "data"),
                               "--out-dir", str(tmp_path / "parts")])
    assert rc == 2 and "more clients than items: federation.n_clients=60" in capsys.readouterr().err


def test_stages_log_sizes_and_artifacts_to_mlflow(tmp_path: Path, mlflow_uri: str) -> None:
    # Execute
    assert _run(_config(tmp_path), tmp_path / "out") == (0, 0)
    # Assert
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("llmqfl-t").experiment_id])
    by_stage = {r.data.tags["llmqfl.stage"]: r for r in runs}
    assert by_stage["data"].data.metrics["n_train"] == 108
    assert by_stage["partition"].data.metrics["n_clients"] == 3
    assert by_stage["data"].data.params["data.source"] == "splice"
    assert {a.path for a in client.list_artifacts(by_stage["data"].info.run_id, "data")} >= {"data/meta.json",
                                                                                             "data/train.parquet"}
    assert all(r.info.status == "FINISHED" for r in runs)


def test_readme_records_each_embedded_csv_checksum_and_counts() -> None:
    readme = (DATA_DIR / "README.md").read_text()
    for spec in EMBEDDED.values():
        digest = hashlib.sha256(spec.path.read_bytes()).hexdigest()
        assert digest in readme, f"{spec.path.name}: sha256 in data/README.md is stale"
        counts = pd.read_csv(spec.path)["label"].value_counts()
        for name, count in counts.items():
            assert re.search(rf"{re.escape(str(name))}\W+{count}\b", readme), (spec.name, name, count)


def test_csv_feature_columns_travel_to_the_split_and_the_clients(tmp_path: Path) -> None:
    # Prepare
    n = 40
    pd.DataFrame({"text": [f"review {i}" for i in range(n)], "y": ["pos", "neg"] * (n // 2),
                  "f0": [i / n for i in range(n)]}).to_csv(tmp_path / "user.csv", index=False)
    config = _config(tmp_path, data={"source": "csv", "path": str(tmp_path / "user.csv"), "item_column": "text",
                                     "label_column": "y", "feature_columns": ["f0"], "max_items": None})
    # Execute
    assert _run(config, tmp_path / "out") == (0, 0)
    # Assert
    meta = json.loads((tmp_path / "out" / "data" / "meta.json").read_text())
    assert meta["kind"] == "text" and meta["classes"] == ["neg", "pos"] and meta["feature_columns"] == ["f0"]
    train = pd.read_parquet(tmp_path / "out" / "data" / "train.parquet")
    client = pd.read_parquet(tmp_path / "out" / "partitions" / "client_0.parquet")
    assert list(client.columns) == ["row", "item", "label", "group", "f0", "split"]
    np_rows = client["row"].to_numpy()
    assert (client["f0"].to_numpy() == train["f0"].to_numpy()[np_rows]).all()
