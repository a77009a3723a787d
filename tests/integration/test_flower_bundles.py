"""Site bundles keep the run's config as the plain dict on disk and give the reading process typed Settings.

What a user relies on: a bundle is a file another process (a ServerApp, a SuperNode's ClientApp) reads;
what that process trains with is the config the launcher held, validated again where it is read.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import flower_fixtures as ff

from llmqfl.federated.flower.bundles import SERVER_FILE, client_file, load_client, load_server
from llmqfl.settings import Settings


def test_a_bundle_stores_the_plain_config_and_loads_the_same_settings(tmp_path: Path) -> None:
    # Prepare
    prep = ff.prepared(n_clients=2, rounds=1, transport="flower", round_timeout_s=30)
    # Execute
    ff.write(prep, tmp_path)
    # Assert: on disk, the config is the JSON-ready dict (as_config); loaded, the same Settings again
    for name in (SERVER_FILE, client_file(0), client_file(1)):
        with (tmp_path / name).open("rb") as handle:
            stored = pickle.load(handle)["bundle"].config
        assert type(stored) is dict and stored == prep.config.as_config()
    server, client = load_server(tmp_path), load_client(tmp_path / client_file(1))
    for loaded in (server.config, client.config):
        assert isinstance(loaded, Settings) and loaded == prep.config
    assert server.config.federation.flower.round_timeout_s == 30
    assert server.client_ids == (0, 1) and client.data.client == 1


def test_the_launcher_waits_for_the_connect_and_every_round_s_two_exchanges() -> None:
    from llmqfl.federated.flower.launch import run_deadline_s

    settings = ff.config(transport="flower", round_timeout_s=30, connect_timeout_s=20)
    assert run_deadline_s(settings, 3) == 60.0 + 20 + 2 * 3 * 30
