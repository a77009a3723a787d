"""Federated quantum learning without transport: clients, the server's round loop and its strategies.

One module per job, after Flower's ``flwr/serverapp/strategy``: :mod:`.selection` (who trains),
:mod:`.aggregation` (FedAvg), :mod:`.guidance` (the paper's LLM-guided maxiter rules),
:mod:`.termination` (LLM threshold, plateau, shot budget), :mod:`.client` and :mod:`.server`
(one round, the loop), :mod:`.checkpoint` (resume), :mod:`.accounting` (history and cost),
:mod:`.features` (quantum inputs) and :mod:`.schedule` (the budget-matched replay).

Conventions: J_i is client i's cross-entropy (natural log) of its locally trained weights on its
own train items; J_s the global model's on the server's ``server_val`` set. Between selections a
client's J is the one from the last round it trained (selection and the ``distance`` column use
it); guidance updates ``maxiter`` only for clients that trained in the round.
"""

from llmqfl.federated.client import Client, ClientData, ClientUpdate
from llmqfl.federated.server import Federation, FederationPlan, FederationResult, ServerData

__all__ = [
    "Client",
    "ClientData",
    "ClientUpdate",
    "Federation",
    "FederationPlan",
    "FederationResult",
    "ServerData",
]
