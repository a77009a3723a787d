"""The QFL client as a Flower ClientApp: one site, its own bundle, its own backend.

Which bundle: the SuperNode's ``--node-config bundle=PATH`` (deployment: each site names its own
file), else ``client_{partition-id}.pkl`` in the run config's ``bundles`` folder (simulation, where
Flower numbers the virtual nodes). Training is :meth:`llmqfl.federated.client.Client.train`, the
same call the in-process loop makes, keyed by (client, round) so shot draws match too.
"""

from __future__ import annotations

import os
from functools import lru_cache, partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from llmqfl.config import derive_seed
from llmqfl.contracts import Usage, uses_llm
from llmqfl.federated.client import Client
from llmqfl.federated.evaluation_scope import ScopedEvaluator, client_scope
from llmqfl.federated.flower import messages, secagg
from llmqfl.federated.flower.bundles import ClientBundle, client_file, load_client
from llmqfl.federated.protocols import snapshot
from llmqfl.federated.scores import classification_metrics

app = ClientApp(mods=[secagg.secagg_mod])  # the mod acts only on SecAgg+ messages (federation.flower.secagg)


def bundle_path(context: Context) -> Path:
    """This node's bundle: its own ``bundle`` node config, or its partition's file in ``bundles``."""
    node, run = context.node_config, context.run_config
    if "bundle" in node:
        return Path(str(node["bundle"]))
    folder = run.get("bundles") or os.environ.get("LLMQFL_FLOWER_BUNDLES")
    if folder is None or "partition-id" not in node:
        raise ValueError("flower client: no bundle (set --node-config bundle=PATH or run config 'bundles')")
    return Path(str(folder)) / client_file(int(node["partition-id"]))


@lru_cache(maxsize=4)
def _site(path: str) -> tuple[ClientBundle, Any, Client]:
    """The bundle, its model and its Client, built once per ClientApp process."""
    from llmqfl.federated.run import build_model
    from llmqfl.quantum import train_local

    bundle = load_client(Path(path))  # its config rebuilt as Settings (bundles.load_client)
    qfl = bundle.config.qfl
    optimizer, distill = qfl.optimizer, qfl.distillation
    llm = uses_llm(bundle.arm)

    trainer = partial(train_local, optimizer=optimizer.name, learning_rate=optimizer.learning_rate)
    client = Client(
        bundle.data,
        trainer=trainer,
        distill_weight=distill.weight if llm else 0.0,
        temperature=distill.temperature,
    )
    return bundle, build_model(bundle.config, bundle.n_classes), client


def _evaluator(bundle: ClientBundle, model: Any, backend: Any) -> Any:
    from llmqfl.quantum import make_evaluator

    return make_evaluator(model, backend=backend, seed=derive_seed(bundle.base_seed, "evaluator"))


def _backend(bundle: ClientBundle, model: Any) -> Any:
    from llmqfl.federated.run import open_backend

    return open_backend(SimpleNamespace(config=bundle.config, model=model, base_seed=bundle.base_seed))


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Who this site is: its client id, how many train items it holds, its LLM's loss."""
    bundle, _, _ = _site(str(bundle_path(context)))
    data = bundle.data
    return Message(messages.identity_content(data.client, data.n_train, data.llm_loss), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training from the global weights the server sent (under SecAgg+: its
    FitIns, and the reply is the update that :func:`.secagg.secagg_mod` masks)."""
    bundle, model, client = _site(str(bundle_path(context)))
    secure = secagg.is_fit(msg.content)
    if secure:
        global_weights, config = secagg.fit_instructions(msg.content)
    else:
        global_weights, config = messages.weights_of(msg.content), msg.content.config_records["config"]
    round_index = int(config["round"])
    with _backend(bundle, model) as backend:
        evaluator = _evaluator(bundle, model, backend)
        update = client.train(
            ScopedEvaluator(evaluator, client_scope(client.id, round_index)),
            global_weights=global_weights,
            maxiter=int(config["maxiter"]),
            seed=int(config["seed"]),
        )
    if secure:
        return Message(secagg.fit_reply(update, global_weights, config), reply_to=msg)
    return Message(messages.update_content(update), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The global model on this site's own test items (the server only sees the metrics and the work)."""
    bundle, model, _ = _site(str(bundle_path(context)))
    data = bundle.data
    weights = messages.weights_of(msg.content)
    usage = Usage()
    if len(data.test_y):
        with _backend(bundle, model) as backend:
            evaluator = _evaluator(bundle, model, backend)
            probs = evaluator.probabilities(np.asarray(data.test_x, dtype=np.float64), weights)
            usage = snapshot(evaluator)
    else:
        probs = np.zeros((0, bundle.n_classes))
    metrics = {k: float(v) for k, v in classification_metrics(probs, data.test_y).items()}
    return Message(RecordDict({"metrics": MetricRecord({**metrics, **messages.usage_metrics(usage)})}), reply_to=msg)
