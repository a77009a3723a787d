"""What the workflow runs for a config: optional stages, stage config files, typed ``--config`` values.

Shared by the Snakemake rules (``workflow/rules/common.smk``) and the ``dvc.yaml`` generator
(:mod:`llmqfl.dvc_yaml`), so both agree on which stages an experiment has.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from llmqfl.config import stage_config_json
from llmqfl.registry import trait


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


def write_stage_config(config: Mapping[str, Any], stage: str, folder: str | Path) -> tuple[str, str]:
    """Write the stage's config slice to ``folder/{stage}.json`` if its content changed.

    Returns (path, content digest): rules pass the short path to the stage CLI and keep the digest
    as a param, so a config change re-runs the stage while logs stay one line a job.
    """
    text = stage_config_json(config, stage) + "\n"
    path = Path(folder) / f"{stage}.json"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{stage}.", dir=path.parent)
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    return path.as_posix(), hashlib.sha256(text.encode()).hexdigest()[:16]
