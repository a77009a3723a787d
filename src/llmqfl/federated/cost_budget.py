"""The ``equal_cost`` arm's budget: L's total circuit executions, spread evenly over rounds and clients.

Guidance only raises step budgets and termination cuts rounds, so L's accuracy mixes "the LLM steered
the budget" with "a different budget was spent". The ``equal_cost`` arm spends the same total quantum
cost as L (every circuit execution of the run: client fits, their train reads and the server's
evaluations), without any LLM signal, spread evenly: at the start of round r each selected client
gets the same ``maxiter``, the largest whose round fits (budget left) / (rounds left). The round's
share is recomputed from what is left, so flooring in one round is made up in the next, and the run
ends with less than one optimizer step of the selected clients unspent; it stops early
(``cost_budget``) only when not even one step per selected client is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmqfl.contracts import SERVER
from llmqfl.errors import DataError
from llmqfl.file_contract import HISTORY
from llmqfl.io import read_checked_parquet
from llmqfl.quantum.training.optimizers import fit_calls


@dataclass(frozen=True)
class CostBudget:
    """Total circuit executions the run may spend, and what one client round costs per step."""

    total_circuits: int
    optimizer: str
    n_params: int

    def __post_init__(self) -> None:
        if self.total_circuits < 1:
            raise ValueError(f"cost budget must be >= 1 circuit execution, got {self.total_circuits}")

    def client_round(self, maxiter: int, n_train: int) -> int:
        """Circuit executions of one client's round: the fit's calls, then the train-metrics read."""
        return n_train * (sum(fit_calls(self.optimizer, maxiter, self.n_params)) + 1)

    def round_cost(self, maxiter: int, sizes: Sequence[int], server_circuits: int) -> int:
        return server_circuits + sum(self.client_round(maxiter, n) for n in sizes)

    def even_maxiter(self, *, spent: int, rounds_left: int, sizes: Sequence[int], server_circuits: int) -> int:
        """The selected clients' common ``maxiter`` this round; 0 when not even one step fits what is left."""
        left, one_step = self.total_circuits - spent, self.round_cost(1, sizes, server_circuits)
        if rounds_left < 1 or one_step > left:
            return 0
        per_step = self.round_cost(2, sizes, server_circuits) - one_step
        fits = int((left / rounds_left - one_step) // per_step) + 1 if per_step > 0 else 1
        return max(1, fits)


def total_circuits(history_path: Path) -> int:
    """Every circuit execution in a run's history (client and server rows): the reference arm's cost."""
    if not Path(history_path).is_file():
        raise DataError(f"cost reference not found: {history_path} (the llm_guided history of the same seed)")
    frame = read_checked_parquet(history_path, ("client", "circuits"), HISTORY)
    if not (frame["client"] == SERVER).any():
        raise DataError(f"{history_path}: no server rows: not a finished run's history")
    total = int(frame["circuits"].sum())
    if total < 1:
        raise DataError(f"{history_path}: the reference run spent no circuit executions")
    return total
