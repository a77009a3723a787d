"""Pure strategy functions: guidance rules, selection, aggregation, termination, schedule replay."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from llmqfl.errors import ConfigError, DataError
from llmqfl.federated.aggregation import fedavg
from llmqfl.federated.guidance import next_maxiter
from llmqfl.federated.schedule import _schedule_from_frame
from llmqfl.federated.selection import n_selected, select_clients, strategy
from llmqfl.federated.termination import (
    PlateauState,
    TerminationConfig,
    check_termination,
    update_plateau,
)


def _next(rule: str, m: int, j: float, llm: float, *, cap: int = 100, inc: int = 100, round_index: int = 2) -> int:
    return next_maxiter(
        rule, maxiter=m, quantum_loss=j, llm_loss=llm, max_maxiter=cap, max_increment=inc, round_index=round_index
    )


# hand-computed: r = 2.5 (J = 2.5, l = 1.0) and r = 1.3 (J = 1.3, l = 1.0)
@pytest.mark.parametrize(
    ("rule", "m", "j", "inc", "expected"),
    [
        ("incremental", 10, 2.5, 100, 25),  # 10 + floor(10 * 1.5)
        ("dynamic_weighted", 10, 2.5, 100, 17),  # floor(5 + 12.5)
        ("logarithmic", 10, 2.5, 100, 22),  # 10 + floor(ln(3.5) * 10) = 10 + floor(12.53)
        ("adaptive", 10, 2.5, 100, 25),  # floor(25.0)
        ("hybrid", 10, 2.5, 100, 35),  # 10 + min(25, 100)
        ("hybrid", 10, 2.5, 7, 17),  # 10 + min(25, 7)
        ("none", 10, 2.5, 100, 10),
        ("incremental", 7, 1.3, 100, 9),  # 7 + floor(2.1)
        ("dynamic_weighted", 7, 1.3, 100, 8),  # floor(3.5 + 4.55)
        ("logarithmic", 7, 1.3, 100, 12),  # 7 + floor(ln(2.3) * 7) = 7 + floor(5.83)
        ("adaptive", 7, 1.3, 100, 9),  # floor(9.1)
        ("hybrid", 7, 1.3, 3, 10),  # 7 + min(9, 3)
    ],
)
def test_guidance_rule_matches_hand_computed_value(rule: str, m: int, j: float, inc: int, expected: int) -> None:
    # Prepare / Execute
    result = _next(rule, m, j, 1.0, inc=inc)
    # Assert
    assert result == expected


@pytest.mark.parametrize("rule", ["incremental", "dynamic_weighted", "logarithmic", "adaptive", "hybrid"])
def test_guidance_is_capped_and_only_fires_from_round_two_when_quantum_loss_is_worse(rule: str) -> None:
    # Prepare / Execute / Assert
    assert _next(rule, 10, 2.5, 1.0, cap=15) == 15  # capped at max_maxiter (every rule proposes >= 17)
    assert _next(rule, 10, 2.5, 1.0, round_index=1) == 10  # round 1: no quantum loss yet
    assert _next(rule, 10, 0.9, 1.0) == 10  # J <= l: unchanged
    assert _next(rule, 10, 1.0, 1.0) == 10
    assert _next(rule, 10, 2.5, math.nan) == 10  # no LLM signal
    assert _next(rule, 10, 2.5, 0.0) == 10  # ratio undefined
    assert _next(rule, 10, 1.0001, 1.0) >= 10  # never decreases (dynamic_weighted floors to m here)


def test_guidance_example_from_paper_notes_grows_geometrically_to_the_cap() -> None:
    # Prepare: r = 1.6, adaptive, m0 = 10 (docs/method.md: 10 -> 16 -> 25 -> 40 -> 64 -> 100)
    m, trajectory = 10, []
    # Execute
    for round_index in range(2, 7):
        m = _next("adaptive", m, 1.6, 1.0, round_index=round_index)
        trajectory.append(m)
    # Assert
    assert trajectory == [16, 25, 40, 64, 100]


def test_guidance_rejects_unknown_rule_and_bad_budget() -> None:
    with pytest.raises(ConfigError, match=r"qfl\.guidance\.rule: 'greedy' is not one of: adaptive, "):
        _next("greedy", 10, 2.0, 1.0)
    with pytest.raises(ValueError, match="maxiter"):
        _next("adaptive", 0, 2.0, 1.0)


def _select(
    kind: str,
    clients: list[int],
    fraction: float,
    *,
    seed: int = 0,
    losses: dict[int, float] | None = None,
    server: float | None = None,
) -> tuple[int, ...]:
    rng = np.random.default_rng(seed)
    return select_clients(
        strategy(kind), clients=clients, fraction=fraction, rng=rng, last_losses=losses or {}, server_loss=server
    )


def test_selection_all_returns_every_client_sorted() -> None:
    assert _select("all", [3, 1, 2], 0.1) == (1, 2, 3)


def test_selection_random_draws_k_clients_reproducibly() -> None:
    # Prepare
    clients = list(range(10))
    # Execute
    first = _select("random", clients, 0.3, seed=7)
    again = _select("random", clients, 0.3, seed=7)
    draws = {_select("random", clients, 0.3, seed=s) for s in range(20)}
    # Assert
    assert len(first) == 3 and set(first) <= set(clients) and first == tuple(sorted(first))
    assert first == again
    assert len(draws) > 1


def test_selection_k_is_at_least_one_and_floors() -> None:
    assert n_selected(0.1, 3) == 1
    assert n_selected(0.1, 10) == 1
    assert n_selected(0.7, 10) == 7
    assert n_selected(0.29, 100) == 29
    assert n_selected(1.0, 4) == 4


def test_selection_closest_to_server_picks_smallest_distances_and_all_in_round_one() -> None:
    # Prepare: distances to 0.8 are 0.2, 0.3, 0.1, 1.2
    losses = {0: 1.0, 1: 0.5, 2: 0.9, 3: 2.0}
    # Execute
    picked = _select("closest_to_server", [0, 1, 2, 3], 0.5, losses=losses, server=0.8)
    first_round = _select("closest_to_server", [0, 1, 2, 3], 0.5)
    tie = _select("closest_to_server", [1, 0], 0.5, losses={1: 0.25, 0: 0.75}, server=0.5)
    never_trained = _select("closest_to_server", [0, 1, 2], 0.67, losses={1: 5.0, 2: 0.8}, server=0.8)
    # Assert
    assert picked == (0, 2)
    assert first_round == (0, 1, 2, 3)
    assert tie == (0,)
    assert never_trained == (1, 2)


def test_selection_rejects_an_unknown_kind_and_the_config_a_bad_fraction() -> None:
    # the fraction is checked once, where it enters: the config's validation (the schema's (0, 1])
    from llmqfl.config import validate_config

    for fraction in (0.0, 1.5):
        with pytest.raises(ConfigError, match=r"federation\.selection\.fraction"):
            validate_config({"federation": {"selection": {"kind": "random", "fraction": fraction}}})
    with pytest.raises(ConfigError, match=r"federation\.selection\.kind: 'best' is not one of: all, "):
        _select("best", [0, 1], 0.5)


def test_fedavg_weights_by_train_size_over_the_given_clients_only() -> None:
    # Prepare
    weights = {0: np.array([1.0, 1.0]), 1: np.array([3.0, 5.0])}
    # Execute
    averaged = fedavg(weights, {0: 1, 1: 3, 2: 100})
    # Assert: (1*[1,1] + 3*[3,5]) / 4; client 2's size plays no part
    np.testing.assert_allclose(averaged, [2.5, 4.0])


def test_fedavg_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="at least one"):
        fedavg({}, {})
    with pytest.raises(ValueError, match="no train size"):
        fedavg({0: np.zeros(2)}, {})
    with pytest.raises(ValueError, match="shapes"):
        fedavg({0: np.zeros(2), 1: np.zeros(3)}, {0: 1, 1: 1})


def test_termination_llm_threshold_fires_only_when_close_and_on() -> None:
    on = TerminationConfig(llm_threshold=0.1)
    state = PlateauState()
    assert check_termination(on, plateau=state, server_loss=0.65, server_llm_loss=0.6, shots_used=0) == "llm_threshold"
    assert check_termination(on, plateau=state, server_loss=0.9, server_llm_loss=0.6, shots_used=0) == ""
    assert check_termination(on, plateau=state, server_loss=0.6, server_llm_loss=math.nan, shots_used=0) == ""
    off = TerminationConfig()
    assert check_termination(off, plateau=state, server_loss=0.6, server_llm_loss=0.6, shots_used=0) == ""


def test_termination_plateau_keeps_its_state_across_rounds() -> None:
    # Prepare: improvements 0.1, then 0.0005 and -0.0001 (< tolerance 0.001), then a real one
    config = TerminationConfig(plateau_rounds=2, plateau_tolerance=0.001)
    state, reasons = PlateauState(), []
    # Execute
    for distance in [1.0, 0.9, 0.8995, 0.8996]:
        state = update_plateau(state, distance, config.plateau_tolerance)
        reasons.append(check_termination(config, plateau=state, server_loss=1.0, server_llm_loss=0.0, shots_used=0))
    # Assert: the best value persists (the paper's code resets it to infinity each round and never stops)
    assert reasons == ["", "", "", "plateau"]
    assert state.best == 0.9 and state.stalled == 2
    assert PlateauState.from_dict(state.to_dict()) == state
    assert update_plateau(state, 0.5, 0.001) == PlateauState(best=0.5, stalled=0)


def test_termination_shot_budget_and_bad_config() -> None:
    config, state = TerminationConfig(shot_budget=1000), PlateauState()
    assert check_termination(config, plateau=state, server_loss=1, server_llm_loss=0, shots_used=1000) == "shot_budget"
    assert check_termination(config, plateau=state, server_loss=1, server_llm_loss=0, shots_used=999) == ""
    with pytest.raises(ValueError, match="plateau_rounds"):
        TerminationConfig(plateau_rounds=0)
    with pytest.raises(ValueError, match="llm_threshold"):
        TerminationConfig(llm_threshold=0.0)


def test_schedule_replays_selection_and_maxiter_and_rejects_gaps() -> None:
    # Prepare: an llm_guided history of 2 rounds, 2 clients and the server row
    frame = pd.DataFrame(
        {
            "round": [1, 1, 1, 2, 2, 2],
            "client": [-1, 0, 1, -1, 0, 1],
            "selected": [False, True, True, False, False, True],
            "maxiter": [0, 10, 10, 0, 10, 16],
        }
    )
    # Execute
    schedule = _schedule_from_frame(frame, clients=[0, 1], source="h")
    # Assert
    assert schedule.rounds == 2
    assert schedule.selected == {1: (0, 1), 2: (1,)}
    assert schedule.maxiter[(2, 1)] == 16
    with pytest.raises(DataError, match="clients"):
        _schedule_from_frame(frame, clients=[0, 1, 2], source="h")
    with pytest.raises(DataError, match="without gaps"):
        _schedule_from_frame(frame[frame["round"] == 2], clients=[0, 1], source="h")


def test_paper_loss_unit_scales_the_quantum_loss_to_bits() -> None:
    # Prepare: the paper's code divides a log2 quantum loss by a natural-log LLM loss (D4)
    from llmqfl.config import load_settings
    from llmqfl.stages.qfl import build_plan

    nats = load_settings({})
    bits = load_settings({"qfl": {"guidance": {"quantum_loss_unit": "bits"}}})
    # Execute
    plan_nats = build_plan(nats, "llm_guided", None)
    plan_bits = build_plan(bits, "llm_guided", None)
    # Assert: J = 0.62 nats against l = 0.69 does not fire; in bits (0.894) it does
    import math

    from llmqfl.federated.guidance import next_maxiter

    def step(plan) -> int:
        j = 0.62 * plan.quantum_loss_scale
        return next_maxiter("adaptive", maxiter=10, quantum_loss=j, llm_loss=0.69, max_maxiter=100,
                            max_increment=100, round_index=2)

    assert plan_nats.quantum_loss_scale == 1.0
    assert math.isclose(plan_bits.quantum_loss_scale, 1 / math.log(2))
    assert step(plan_nats) == 10
    assert step(plan_bits) == 12


def test_a_plan_resolves_its_guidance_rule_once_and_travels_with_it() -> None:
    import pickle

    from llmqfl.federated.federation_plan import FederationPlan
    from llmqfl.federated.guidance import Adaptive

    plan = FederationPlan(rounds=2, initial_maxiter=5, max_maxiter=50, guidance_rule="adaptive")
    assert isinstance(plan.guidance, Adaptive) and plan.guidance is plan.guidance
    by_object = next_maxiter(plan.guidance, maxiter=5, quantum_loss=2.0, llm_loss=0.5, max_maxiter=50,
                             max_increment=100, round_index=2)
    by_name = next_maxiter("adaptive", maxiter=5, quantum_loss=2.0, llm_loss=0.5, max_maxiter=50,
                           max_increment=100, round_index=2)
    assert by_object == by_name == 20
    assert pickle.loads(pickle.dumps(plan)) == plan  # Flower bundles pickle plans
