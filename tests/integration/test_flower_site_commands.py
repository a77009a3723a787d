"""The site commands of sites that keep their data refuse what they cannot honour, in one line, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

from qfl_stage_inputs import _config

from llmqfl.stages import flower_sites as sites


def test_coordinator_without_the_server_fit_is_one_line(results: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bundles"
    code = sites.main(["server", "--config", json.dumps(_config()), "--arm", "llm_guided",
                       "--data-dir", str(results / "data"), "--out-dir", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "qfl.features.fit" in err and "server" in err
    assert not out.exists()


def test_site_without_the_agreement_is_one_line(results: Path, tmp_path: Path, capsys) -> None:
    config = json.dumps(_config(features={"fit": "server"}))
    code = sites.main(["site", "--config", config, "--arm", "baseline", "--client", "0",
                       "--agreement", str(tmp_path / "agreement.pkl"),
                       "--partition", str(results / "partitions" / "client_0.parquet"),
                       "--out", str(tmp_path / "client_0.pkl")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "agreement.pkl" in err
    assert not (tmp_path / "client_0.pkl").exists()


def test_site_bundle_holds_only_its_own_items(results: Path, tmp_path: Path) -> None:
    from llmqfl.federated.flower.bundles import load_client, load_server

    config = json.dumps(_config(features={"fit": "server"}))
    assert sites.main(["server", "--config", config, "--arm", "baseline", "--data-dir", str(results / "data"),
                       "--out-dir", str(tmp_path / "bundles")]) == 0  # fmt: skip
    assert sites.main(["site", "--config", config, "--arm", "baseline", "--client", "1",
                       "--agreement", str(tmp_path / "bundles" / "agreement.pkl"),
                       "--partition", str(results / "partitions" / "client_1.parquet"),
                       "--out", str(tmp_path / "client_1.pkl")]) == 0  # fmt: skip
    site = load_client(tmp_path / "client_1.pkl").data
    assert site.client == 1 and len(site.train_y) == 9 and len(site.test_y) == 3 and site.teacher_probs is None
    assert load_server(tmp_path / "bundles").client_ids == (0, 1, 2)


def test_federated_lora_over_flower_refuses_what_it_does_not_do() -> None:
    import pytest

    from llmqfl.config import load_settings
    from llmqfl.errors import ConfigError
    from llmqfl.federated.flower.lora import check_settings

    assert check_settings(load_settings({"llm": {"federated_rounds": 2}})) == 2
    with pytest.raises(ConfigError, match=r"llm\.federated_rounds"):
        check_settings(load_settings({}))
    with pytest.raises(ConfigError, match=r"llm\.references"):
        check_settings(load_settings({"llm": {"federated_rounds": 1, "references": True}}))
    with pytest.raises(ConfigError, match=r"privacy\.llm"):
        check_settings(load_settings({"llm": {"federated_rounds": 1}, "privacy": {"llm": {"enabled": True}}}))


def test_federated_lora_reads_the_config_file_it_is_named_once_into_settings(tmp_path: Path) -> None:
    from llmqfl.config import read_settings
    from llmqfl.federated.flower.lora import check_settings
    from llmqfl.settings import Settings

    path = tmp_path / "qfl.json"  # what a site's --node-config config= and the coordinator's run config name
    path.write_text(json.dumps({"seed": 7, "llm": {"federated_rounds": 2}}))
    settings = read_settings(path)
    assert isinstance(settings, Settings) and settings.seed == 7 and check_settings(settings) == 2
    assert settings.llm.adapter_aggregation == "factorwise"  # the schema's default, filled
