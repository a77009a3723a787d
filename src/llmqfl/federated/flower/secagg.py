"""Secure aggregation on the Flower transport (``federation.flower.secagg``): Flower's SecAgg+ protocol.

Why: over the plain transport the server reads every client's trained weights. With SecAgg+ each
client uploads its update masked with pairwise and private masks that cancel only in the sum, so the
server learns the sum and nothing else. This module drives Flower's own protocol code
(:class:`flwr.server.workflow.SecAggPlusWorkflow` on the server, :func:`flwr.client.mod.secaggplus_mod`
on each ClientApp) inside the project's round loop: the loop still selects, guides and evaluates;
only how the selected clients' weights become the global weights changes.

What is summed: client i uploads its update d_i = (local - global weights), which Flower multiplies by
its weight ratio r_i = round(w_i / max_j w_j * Q) / Q (w_i its train size under ``fedavg``, 1 under
``mean``), clips to [-c, c], and quantises stochastically to a grid of step 2c/Q (c = ``clipping_range``,
Q = ``quantization_range``). The server unmasks sum_i r_i d_i and sum_i r_i, divides, and adds the
global weights back: FedAvg of the clients' weights, up to the quantisation. While no entry is clipped
(the history's ``clipped`` count is 0) every entry is within :func:`tolerance` of the plain FedAvg:
rounding error below one step per client (N steps over sum r_i) plus the rounding of the r_i
(half a step's worth): 3 N c / (Q sum_i r_i). The stochastic rounding is seeded from the round's
client seed, so a rerun gives the same numbers.

The bytes SecAgg+ adds are the four stages' messages (setup, key sharing, masked vectors, unmasking)
minus what the plain ``train`` message and its reply would have carried; per round, in the run's
``transport.secagg`` accounting. Clients that drop after sharing keys are unmasked from the others'
shares (at least ``reconstruction_threshold`` must answer); they are recorded as dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.common import Code, FitIns, FitRes, Parameters, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey

from llmqfl.config import derive_seed
from llmqfl.federated.client import ClientUpdate
from llmqfl.federated.flower import messages
from llmqfl.settings import SecAggSettings, Settings

FIT, FIT_RES = "fitins", "fitres"  # Flower's legacy record prefixes: the SecAgg+ mod reads FitIns, writes FitRes


def secagg_settings(settings: Settings) -> SecAggSettings | None:
    """The run's ``federation.flower.secagg``, or None when it is off (the default).

    ``clipping_range`` comes back a float whatever the config wrote (``8`` is a valid number there):
    Flower's SecAgg+ mod refuses a setup message whose clipping range is not exactly a float.
    """
    secagg = settings.federation.flower.secagg
    if not secagg.enabled:
        return None
    return replace(secagg, clipping_range=float(secagg.clipping_range))


def weight_ratios(weights: Iterable[float], quantization_range: int) -> list[float]:
    """The r_i Flower's mod applies: each client's weight over the largest, rounded to 1/Q."""
    weights = [float(w) for w in weights]
    top = max(weights)
    return [round(w / top * quantization_range) / quantization_range for w in weights]


def tolerance(settings: SecAggSettings, weights: Iterable[float]) -> float:
    """Bound on |SecAgg+ - plain FedAvg| per weight entry for clients of these aggregation weights
    (train sizes under fedavg, ones under mean), while no entry is clipped: 3 N c / (Q sum_i r_i)."""
    ratios = weight_ratios(weights, settings.quantization_range)
    return 3 * len(ratios) * settings.clipping_range / (settings.quantization_range * sum(ratios))


# -- client side ------------------------------------------------------------------------------------


def is_fit(content: RecordDict) -> bool:
    """Whether a ``train`` message is SecAgg+'s (Flower's FitIns records) rather than the plain one."""
    return f"{FIT}.parameters" in content.array_records


def fit_instructions(content: RecordDict) -> tuple[np.ndarray, ConfigRecord]:
    """The global weights and the round's config (round, maxiter, seed, weight, clip) of a SecAgg+ train."""
    fitins = compat.recorddict_to_fitins(content, keep_input=True)
    weights = np.asarray(parameters_to_ndarrays(fitins.parameters)[0], dtype=np.float64)
    return weights, ConfigRecord(dict(fitins.config))


def fit_reply(update: ClientUpdate, global_weights: np.ndarray, config: ConfigRecord) -> RecordDict:
    """The FitRes the SecAgg+ mod masks: the update (local - global), the weight the server asked for,
    and the update's scalars in the clear (losses, work: what the history needs, no weights)."""
    delta = np.asarray(update.weights, dtype=np.float64) - global_weights
    weight = int(config["weight"])
    ratio = float(config["ratio"])
    clipped = int(np.count_nonzero(np.abs(delta * ratio) > float(config["clip"])))
    scalars = {f.name: getattr(update, f.name) for f in fields(update) if f.name not in ("weights", "usage")}
    metrics = {**scalars, **messages.usage_metrics(update.usage), "secagg.clipped": clipped}
    fitres = FitRes(Status(Code.OK, "ok"), ndarrays_to_parameters([delta]), weight, metrics)
    return compat.fitres_to_recorddict(fitres, keep_input=True)


def secagg_mod(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
    """Flower's ``secaggplus_mod`` for SecAgg+ messages only; plain messages pass straight through.

    Its masked-vector stage rounds stochastically with NumPy's global generator: seeded here from the
    round's client seed, so a rerun of the run gives the same global weights.
    """
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    if configs is None:
        return call_next(msg, context)
    if configs.get(Key.STAGE) == Stage.COLLECT_MASKED_VECTORS and is_fit(msg.content):
        seed = int(msg.content.config_records[f"{FIT}.config"]["seed"])
        np.random.seed(derive_seed(seed, "secagg"))  # the generator Flower's quantiser uses
    return secaggplus_mod(msg, context, call_next)


# -- server side ------------------------------------------------------------------------------------


class _Proxy(ClientProxy):
    """A node as the legacy strategy API names it (the workflow only reads ``node_id``)."""

    def __init__(self, node_id: int) -> None:
        super().__init__(str(node_id))
        self.node_id = node_id

    def _unused(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("SecAgg+ proxies only carry a node id")

    get_properties = get_parameters = fit = evaluate = reconnect = _unused


class _Round(Strategy):
    """One round's instructions for the workflow, and where its unmasked sum lands."""

    def __init__(self, instructions: dict[int, FitIns]) -> None:
        self.instructions = instructions
        self.results: list[tuple[ClientProxy, FitRes]] = []
        self.mean_update: np.ndarray | None = None

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: Any) -> list:
        return [(_Proxy(node), fitins) for node, fitins in self.instructions.items()]

    def aggregate_fit(self, server_round: int, results: list, failures: list) -> tuple[Parameters | None, dict]:
        self.results = list(results)
        if results:  # every result carries the workflow's unmasked weighted mean
            self.mean_update = np.asarray(parameters_to_ndarrays(results[0][1].parameters)[0], dtype=np.float64)
        return (results[0][1].parameters if results else None), {}

    def initialize_parameters(self, client_manager: Any) -> None:
        return None

    def configure_evaluate(self, server_round: int, parameters: Parameters, client_manager: Any) -> list:
        return []

    def aggregate_evaluate(self, server_round: int, results: list, failures: list) -> tuple[None, dict]:
        return None, {}

    def evaluate(self, server_round: int, parameters: Parameters) -> None:
        return None


class _Nodes:
    """One node for the legacy client manager's ``num_available`` (only logged by the workflow)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def num_available(self) -> int:
        return self.n


class _CountingGrid:
    """The Grid the workflow talks through, counting every message's wire bytes per client, and
    keeping the envelope size of each client's masked-vector request and reply (see :func:`_plain_bytes`)."""

    def __init__(self, grid: Any, client_of: Mapping[int, int], down: dict[int, int], up: dict[int, int]) -> None:
        self.grid, self.client_of, self.down, self.up = grid, client_of, down, up
        self.envelope: dict[int, int] = {}  # client -> bytes of the train request and reply minus their contents

    def send_and_receive(self, outgoing: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        outgoing = list(outgoing)
        for message in outgoing:
            k = self.client_of[message.metadata.dst_node_id]
            self.down[k] += messages.wire_bytes(message)
            if is_fit(message.content):
                self.envelope[k] = self.envelope.get(k, 0) + _envelope(message)
        replies = list(self.grid.send_and_receive(outgoing, timeout=timeout))
        for reply in replies:
            k = self.client_of[reply.metadata.src_node_id]
            self.up[k] += messages.wire_bytes(reply)
            if not reply.has_error() and f"{FIT_RES}.metrics" in reply.content.config_records:
                self.envelope[k] = self.envelope.get(k, 0) + _envelope(reply)
        return replies

    def __getattr__(self, name: str) -> Any:
        return getattr(self.grid, name)


@dataclass(frozen=True)
class SecureRound:
    """What a SecAgg+ round gives the loop: the clients' updates without weights, the new global weights."""

    updates: dict[int, ClientUpdate]
    weights: np.ndarray
    failed: dict[int, str]
    bytes_added: int
    tolerance: float
    clipped: int


def secure_round(
    transport: Any,
    settings: SecAggSettings,
    round_index: int,
    contents: Mapping[int, RecordDict],
    aggregation_weights: Mapping[int, float],
    global_weights: np.ndarray,
    *,
    timeout_s: float,
) -> SecureRound:
    """Train the selected clients (``contents``: each one's plain train message) under SecAgg+.

    Raises :class:`llmqfl.federated.flower.transport.FlowerTransportError` when the round cannot be
    aggregated securely (fewer live clients than ``reconstruction_threshold``).
    """
    from llmqfl.federated.flower.transport import FlowerTransportError

    selected = sorted(contents)
    if len(selected) < max(settings.reconstruction_threshold, 2):
        raise FlowerTransportError(
            f"round {round_index}: {len(selected)} clients selected, SecAgg+ needs at least "
            f"federation.flower.secagg.reconstruction_threshold ({settings.reconstruction_threshold})"
        )
    online = set(transport.grid.get_node_ids())
    failed = {k: "node left the federation" for k in selected if transport.nodes[k] not in online}
    live = [k for k in selected if k not in failed]
    ratios = dict(zip(live, weight_ratios([aggregation_weights[k] for k in live], settings.quantization_range),
                      strict=True))  # fmt: skip
    top = max(aggregation_weights[k] for k in live) if live else 1.0
    instructions: dict[int, FitIns] = {}
    plain_bytes = 0
    for k in live:
        config = contents[k].config_records["config"]
        fit_config = {**dict(config), "weight": int(aggregation_weights[k]), "ratio": ratios[k],
                      "clip": settings.clipping_range}  # fmt: skip
        instructions[transport.nodes[k]] = FitIns(ndarrays_to_parameters([global_weights]), fit_config)
    workflow = SecAggPlusWorkflow(
        settings.num_shares,
        settings.reconstruction_threshold,
        max_weight=float(top),
        clipping_range=settings.clipping_range,
        quantization_range=settings.quantization_range,
        timeout=timeout_s,
    )
    strategy = _Round(instructions)
    state = RecordDict({
        MAIN_CONFIGS_RECORD: ConfigRecord({WorkflowKey.CURRENT_ROUND: int(round_index)}),
        MAIN_PARAMS_RECORD: messages.weights_record(global_weights),
    })  # fmt: skip
    context = LegacyContext(
        Context(run_id=0, node_id=0, node_config={}, state=state, run_config={}),
        strategy=strategy,
        client_manager=_Nodes(len(instructions)),  # type: ignore[arg-type]
    )
    down, up = transport.bytes_down[round_index], transport.bytes_up[round_index]
    before = sum(down.values()) + sum(up.values())
    client_of = {node: k for k, node in transport.nodes.items()}
    grid = _CountingGrid(transport.grid, client_of, down, up)
    if live:
        workflow(grid, context)  # type: ignore[arg-type]
    secure_bytes = sum(down.values()) + sum(up.values()) - before
    if strategy.mean_update is None:
        raise FlowerTransportError(
            f"round {round_index}: SecAgg+ halted (fewer than reconstruction_threshold "
            f"{settings.reconstruction_threshold} of clients {live} answered a stage); see the ServerApp log"
        )
    updates: dict[int, ClientUpdate] = {}
    nan = np.full_like(global_weights, np.nan)  # the server never sees a client's weights
    clipped = 0
    for proxy, fitres in strategy.results:
        k = client_of[proxy.node_id]
        updates[k] = messages.update_from(fitres.metrics, nan)
        clipped += int(fitres.metrics.get("secagg.clipped", 0))
        plain_bytes += grid.envelope.get(k, 0) + _plain_contents(contents[k], updates[k], global_weights)
    for k in live:
        if k not in updates:
            failed[k] = "SecAgg+: no masked update (unmasked from the others' shares)"
    weights = global_weights + strategy.mean_update
    bound = tolerance(settings, [aggregation_weights[k] for k in sorted(updates)])
    return SecureRound(updates, weights, failed, int(secure_bytes - plain_bytes), bound, clipped)


def _content_bytes(content: RecordDict) -> int:
    return messages.wire_bytes(content)  # type: ignore[arg-type]  # a RecordDict is inflatable too


def _envelope(message: Message) -> int:
    """A message's bytes without its content: its metadata, as the transport really carried it."""
    return messages.wire_bytes(message) - _content_bytes(message.content)


def _plain_contents(request: RecordDict, update: ClientUpdate, weights: np.ndarray) -> int:
    """What the plain ``train`` request and its reply would have carried in content (float64 weights
    of the model's length each way); with the real envelopes, the plain exchange's bytes."""
    reply = messages.update_content(replace(update, weights=np.zeros_like(weights)))
    return _content_bytes(request) + _content_bytes(reply)
