"""What the workflow runs for a config: optional stages, stage config files, typed ``--config`` values.

Shared by the Snakemake rules (``workflow/rules/common.smk``) and the ``dvc.yaml`` generator
(:mod:`llmqfl.dvc_yaml`), so both agree on which stages an experiment has.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmqfl.config import stage_config_json
from llmqfl.contracts import uses_llm
from llmqfl.registry import trait
from llmqfl.replicates import replicate_config


def needs_embeddings(config: Mapping[str, Any]) -> bool:
    """Text items (or an explicit ``embedding`` source) use the base-LLM embeddings as qfl features.

    A source whose items decide their kind (``item_kind`` None: csv) is only known after the data stage,
    so without feature columns it depends on the embeddings too (the stage ignores them for DNA items).
    """
    data, features = config["data"], config["qfl"]["features"]
    if features["source"] != "auto":
        return features["source"] == "embedding"
    if data["feature_columns"]:
        return False
    return trait("data_source", data["source"], "item_kind") != "dna"


def needs_distill(config: Mapping[str, Any]) -> bool:
    """Only the llm_guided arm (and budget_matched, through it) uses the LLM teachers."""
    return "llm_guided" in config["arms"]


def typed_cli_values(raw: Any) -> Any:
    """``--config`` values with YAML types: Snakemake parses nested values as strings only.

    ``backend={kind: fake, shots: 1024}`` arrives as ``{"kind": "fake", "shots": "1024"}``; each
    string leaf inside a mapping or list is read again with ``yaml.safe_load`` (1024 -> int).
    """
    if isinstance(raw, Mapping):
        return {key: _typed_leaf(value) for key, value in raw.items()}
    return raw


def _typed_leaf(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _typed_leaf(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed_leaf(item) for item in value]
    if isinstance(value, str):
        try:
            return yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            return value
    return value


@dataclass(frozen=True)
class StageConfigFile:
    """A stage's config slice as a content-addressed file: ``folder/{stage}-{digest}.json``.

    The name carries the digest of the text, so a file once written never changes: a job reads
    exactly the config it was planned with, whatever another invocation (another config, a dry run)
    plans meanwhile. Rules keep ``digest`` as a param, so a config change re-runs the stage.
    """

    path: str
    digest: str
    text: str


def plan_stage_config(config: Mapping[str, Any], stage: str, folder: str | Path) -> StageConfigFile:
    """The stage's config file for ``config``, without writing anything (see :func:`write_stage_configs`)."""
    text = stage_config_json(config, stage) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return StageConfigFile((Path(folder) / f"{stage}-{digest}.json").as_posix(), digest, text)


def write_stage_configs(files: Iterable[StageConfigFile]) -> list[str]:
    """Write each planned config file that is not there yet (atomically); returns the paths written.

    Called by the Snakefile's ``onstart``, under Snakemake's lock and never in a dry run. An existing
    file with the same name is left alone unless its text differs (a damaged file: it is replaced by
    the one text its name stands for).
    """
    written = []
    for planned in files:
        path = Path(planned.path)
        if path.is_file() and path.read_text() == planned.text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(handle, "w") as out:
            out.write(planned.text)
        os.replace(tmp, path)
        written.append(planned.path)
    return written


def arm_config(config: Mapping[str, Any], arm: str) -> dict[str, Any]:
    """The config an arm's qfl and evaluate jobs read: only what the arm uses decides their re-runs.

    An arm without the LLM (``contracts.uses_llm``) runs no guidance rule (``federated.run`` sets
    ``none`` for it), so its slice names ``none`` whatever ``qfl.guidance.rule`` says: changing the
    rule re-runs the LLM arm and what reads its history, never the baseline.
    """
    resolved = copy.deepcopy(dict(config))
    if not uses_llm(arm):
        resolved["qfl"]["guidance"]["rule"] = "none"
    return resolved


def full_reference_config(config: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The distill config of claim C6's reference: llm.peft full, one fine-tuning per client, no federated
    LoRA rounds, as many epochs as a client trains over its federated rounds, from replicate ``seed``."""
    full = replicate_config(config, seed)  # the seed of the distill jobs it is compared with
    rounds = full["llm"]["federated_rounds"]
    full["llm"].update(peft="full", federated_rounds=0, epochs=full["llm"]["epochs"] * max(1, rounds))
    return full
