"""Machine faults end in one line with the fix (llmqfl.faults, tracking.check_server, the trust allow-list)."""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path

import pytest

from llmqfl import tracking
from llmqfl.errors import ConfigError, FaultError
from llmqfl.faults import check_user_cache, check_writable
from llmqfl.registry import TRUST_ENV, load_extensions, trusted
from llmqfl.stages._cli import run_stage, stage_parser


def test_a_full_disk_in_a_stage_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a stage body that writes to /dev/full (every write fails with ENOSPC)
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")

    def body(args: argparse.Namespace, config: dict) -> None:
        with open("/dev/full", "w") as handle:
            handle.write("x" * 65536)
            handle.flush()

    # Execute
    code = run_stage("data", stage_parser("data", "test"), body, ["--config", "{}"])
    # Assert
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("llmqfl data: a write failed: no space left on device; free some space")


def test_a_file_where_a_folder_should_be_is_named(tmp_path: Path) -> None:
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(FaultError, match="is a file, not a folder"):
        check_writable(tmp_path / "results" / "default", "results folder")
    check_writable(tmp_path / "fresh" / "deeper", "results folder")  # absent but creatable: fine, nothing written
    assert not (tmp_path / "fresh").exists()


def test_xdg_cache_home_is_the_fix_for_an_unwritable_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("a file, so nothing can be created under it")
    with pytest.raises(FaultError, match="set XDG_CACHE_HOME"):
        check_user_cache({"HOME": str(home)})
    check_user_cache({"HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache")})


def test_a_server_that_accepts_but_never_answers_is_one_line_within_seconds() -> None:
    # Prepare: a listening socket that never reads nor replies (a hung server)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        # Execute / Assert
        with pytest.raises(FaultError, match=f"MLflow tracking server {uri} does not answer"):
            tracking.check_server(uri, timeout_s=2)
    assert time.monotonic() - started < 30


def test_only_listed_extension_modules_are_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    assert trusted("anything", None)
    assert trusted("mylab.rules", "my_rules, mylab.*") and not trusted("mylab", "mylab.*x")
    assert not trusted("json", "")
    monkeypatch.setenv(TRUST_ENV, "my_rules")
    with pytest.raises(ConfigError, match="extensions: 'json' is not trusted"):
        load_extensions(["json"])
