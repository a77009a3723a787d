"""Client-level DP of the quantum updates: every upload clipped to the configured norm, noise of the
stated std, the reported epsilon the accountant's own, and settings no accountant can bound refused."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from llmqfl.config import load_settings, validate_config
from llmqfl.errors import ConfigError
from llmqfl.federated.client import Client, ClientData
from llmqfl.federated.privacy import ClientLevelDP, clip_update, privacy_summary, private_aggregate
from llmqfl.federated.server import Federation, FederationPlan, ServerData
from llmqfl.quantum import build_model, make_evaluator, train_local

N_QUBITS = 3


def _items(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(0, np.pi, (n, N_QUBITS))
    return x, (x[:, 0] > np.pi / 2).astype(np.int64)


def _federation(dp: ClientLevelDP | None, rounds: int = 3) -> Federation:
    rng = np.random.default_rng(0)
    clients = []
    for k, n in enumerate((8, 12, 10)):
        train_x, train_y = _items(rng, n)
        test_x, test_y = _items(rng, 4)
        data = ClientData(k, train_x, train_y, test_x, test_y, llm_loss=0.05)
        clients.append(Client(data, trainer=functools.partial(train_local, optimizer="cobyla"), distill_weight=0.0,
                              temperature=2.0))
    val_x, val_y = _items(rng, 6)
    test_x, test_y = _items(rng, 6)
    model = build_model(kind="vqc", n_qubits=N_QUBITS, n_classes=2, ansatz_reps=1)
    return Federation(
        clients=clients,
        server=ServerData(val_x, val_y, test_x, test_y),
        evaluator=make_evaluator(model, seed=0),
        plan=FederationPlan(rounds=rounds, initial_maxiter=6, max_maxiter=10, privacy=dp),
        seed=3,
        initial_weights=np.random.default_rng(1).uniform(-np.pi, np.pi, model.n_params),
    )


def test_every_upload_is_clipped_and_the_epsilon_is_the_accountants():
    from opacus.accountants import RDPAccountant

    dp = ClientLevelDP(noise_multiplier=1.1, clip_norm=0.05, delta=1e-5)
    federation = _federation(dp)
    result = federation.run()
    records = [federation.privacy_rounds[r] for r in sorted(federation.privacy_rounds)]
    assert [r["round"] for r in records] == [1, 2, 3]
    norms = [n for r in records for n in r["update_norms"]]
    clipped = [n for r in records for n in r["clipped_norms"]]
    assert max(norms) > dp.clip_norm  # the local training moved farther than the norm: clipping bit
    assert max(clipped) <= dp.clip_norm * (1 + 1e-9)
    for before, after in zip(norms, clipped, strict=True):  # an update inside the ball is left alone
        assert after == pytest.approx(min(before, dp.clip_norm), rel=1e-9)
    assert all(r["noise_std"] == pytest.approx(1.1 * 0.05 / len(r["clients"])) for r in records)

    summary = privacy_summary(dp, result.rounds_run, records)
    accountant = RDPAccountant()
    accountant.history = [(1.1, 1.0, 3)]
    assert summary["epsilon"] == pytest.approx(accountant.get_epsilon(delta=1e-5), rel=1e-12)
    assert summary["delta"] == 1e-5 and summary["releases"] == 3


def test_private_aggregate_is_the_noisy_mean_of_clipped_updates_and_reproducible():
    dp = ClientLevelDP(noise_multiplier=0.7, clip_norm=1.0)
    base = np.zeros(4)
    weights = {0: np.array([3.0, 4.0, 0, 0]), 1: np.array([0.0, 0.5, 0, 0])}  # norms 5 (clipped to 1) and 0.5
    a, record = private_aggregate(weights, base, dp, seed=0, round_index=2)
    b, _ = private_aggregate(weights, base, dp, seed=0, round_index=2)
    np.testing.assert_array_equal(a, b)  # seeded per round: a resumed run adds the same noise
    assert record["clipped_norms"] == pytest.approx([1.0, 0.5])
    np.testing.assert_allclose(clip_update(weights[0], base, 1.0), [0.6, 0.8, 0, 0])
    # the noise has std sigma C / m around the mean of the clipped updates
    draws = np.stack([private_aggregate(weights, base, dp, seed=s, round_index=1)[0] for s in range(400)])
    np.testing.assert_allclose(draws.mean(axis=0), [0.3, 0.65, 0, 0], atol=0.05)
    np.testing.assert_allclose(draws.std(axis=0), 0.7 * 1.0 / 2, rtol=0.15)


def test_noise_the_accountant_cannot_bound_is_one_config_line():
    with pytest.raises(ConfigError, match=r"privacy.quantum.noise_multiplier: 0(\.0)? adds no noise"):
        validate_config({"privacy": {"quantum": {"enabled": True, "noise_multiplier": 0}}})
    tiny = ClientLevelDP(noise_multiplier=1e-4, clip_norm=1.0, accountant="prv")
    with pytest.raises(ConfigError, match=r"privacy\.quantum: the prv accountant cannot bound epsilon"):
        tiny.epsilon(10)
    assert ClientLevelDP.from_config(load_settings({})) is None  # off by default
