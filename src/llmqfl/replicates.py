"""Seed replicates: what one entry of ``seeds`` re-draws (``replicates.scope``).

* ``quantum_init`` (the cheap scope): one split, partition and set of fine-tuned teachers from the
  root ``seed``; a replicate S changes only the quantum initial point and the optimizer and
  selection seeds (``derive_seed(seed, "qfl", S)`` in the qfl stage). Intervals then cover one
  split and one teacher.
* ``pipeline``: replicate S runs the whole pipeline from its own root seed
  ``derive_seed(seed, "replicate", S)``: split, partition, LLM fine-tuning and quantum
  initialisation are all re-drawn. Its upstream outputs live under ``results/{exp}/rep_{S}/``.

Every stage reads ``config["seed"]`` as its root, so a replicate is just the config with that seed
replaced (:func:`replicate_config`); no stage needs to know about replicates.

The Snakefile (and :mod:`llmqfl.pipeline`, :mod:`llmqfl.dvc_yaml`) call these with the validated config
dict they hold: the workflow layer, above the stages. The stages read ``settings.replicates.scope``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from llmqfl.config import derive_seed

SCOPES = ("quantum_init", "pipeline")


def replicate_scope(config: Mapping[str, Any]) -> str:
    """The Snakefile's configured scope (``quantum_init`` when a workflow dict predates the setting); the
    stages read ``settings.replicates.scope``."""
    return str((config.get("replicates") or {}).get("scope", "quantum_init"))


def replicate_seed(config: Mapping[str, Any], replicate: int) -> int:
    """The root seed the upstream stages (data, partition, distill, embed) use for ``replicate``."""
    if replicate_scope(config) == "pipeline":
        return derive_seed(int(config["seed"]), "replicate", int(replicate))
    return int(config["seed"])


def replicate_config(config: Mapping[str, Any], replicate: int) -> dict[str, Any]:
    """``config`` with the root seed of ``replicate`` (a copy; unchanged for quantum_init)."""
    resolved = copy.deepcopy(dict(config))
    resolved["seed"] = replicate_seed(config, replicate)
    return resolved


def upstream_dir(results: str, config: Mapping[str, Any], replicate: int) -> str:
    """Where the replicate's data, partitions, distill and features live."""
    return f"{results}/rep_{replicate}" if replicate_scope(config) == "pipeline" else results
