"""Shared plumbing of the stage CLIs: config parsing, one-line errors, logging set-up."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from llmqfl.config import (
    MAX_CONFIG_BYTES,
    RUNTIME_ENV,
    load_settings,
    parse_yaml,
    read_config_text,
    validate_config,
    with_runtime_settings,
)
from llmqfl.errors import ConfigError, LlmqflError
from llmqfl.faults import describe_os_error
from llmqfl.settings import Settings


def stage_parser(stage: str, description: str) -> argparse.ArgumentParser:
    """A parser with the ``--config`` option every stage takes."""
    parser = argparse.ArgumentParser(prog=f"llmqfl stage {stage}", description=description)
    parser.add_argument(
        "--config",
        required=True,
        help="the stage's config: a YAML/JSON file (Snakemake passes results/EXP/config/STAGE-DIGEST.json) "
        "or inline JSON",
    )
    return parser


def read_config(text: str) -> dict[str, Any]:
    """Parse ``--config`` (inline JSON or a file) and validate it against the schema."""
    stripped = text.strip()
    if stripped.startswith("{"):
        if len(stripped) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config error: --config is larger than {MAX_CONFIG_BYTES} bytes (the limit)")
        try:
            raw = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config error: --config is not valid JSON: {exc.msg}") from exc
    else:
        path = Path(stripped)
        if not path.is_file():
            raise ConfigError(f"config error: config file not found: {path}")
        text = read_config_text(path)
        if path.suffix == ".json":  # the Snakefile's stage files: JSON, where YAML would read 1e-05 as a string
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"config error: config file {path} is not valid JSON: {exc.msg}") from exc
        else:
            raw = parse_yaml(text, str(path)) or {}
    if isinstance(raw, dict):  # thread counts and the MLflow name come from the invoking Snakefile
        raw = with_runtime_settings(raw, os.environ.get(RUNTIME_ENV))
    return validate_config(raw)


def as_settings(config: Settings | Mapping[str, Any]) -> Settings:
    """A stage function's config as typed settings: a :class:`Settings` as is, a raw mapping validated first.

    The stage functions are also called from Python (tests, benchmarks, notebooks) with a loaded config
    dict; this is where such a dict becomes the typed object everything below the stage layer reads.
    """
    return config if isinstance(config, Settings) else load_settings(config)


def run_stage(
    stage: str,
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace, Settings], None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse, validate, build the typed settings, run ``body``; a :class:`LlmqflError` is one line, exit 2."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {stage} %(levelname)s %(message)s")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_config(read_config(args.config))
        body(args, settings)
    except LlmqflError as exc:
        print(f"llmqfl {stage}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine refused a write (permissions, a file for a folder, a full disk)
        logging.getLogger(__name__).debug("stage %s: OSError", stage, exc_info=True)
        print(f"llmqfl {stage}: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    return 0


SEED_FIELD = "{seed}"


def seed_runs(args: argparse.Namespace, path_options: Sequence[str]) -> list[tuple[int, argparse.Namespace]]:
    """One namespace per ``--seed`` (repeatable), with ``{seed}`` in the named path options filled in.

    One process can then run every replicate of an arm: the imports and the MLflow set-up are paid once
    per arm instead of once per replicate (they dominated a replicate's time). Several seeds need
    ``{seed}`` in every output path, or the replicates would write over each other.
    """
    seeds = list(args.seed)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seed: each seed once, got {seeds}")
    if any(seed < 0 for seed in seeds):
        raise ConfigError(f"--seed: must be >= 0, got {seeds}")
    runs = []
    for seed in seeds:
        values = {}
        for option in path_options:
            value = getattr(args, option)
            values[option] = None if value is None else type(value)(str(value).replace(SEED_FIELD, str(seed)))
        runs.append((seed, argparse.Namespace(**{**vars(args), **values, "seed": seed})))
    return runs


def require_seed_field(args: argparse.Namespace, outputs: Sequence[str]) -> None:
    """Several seeds write to ``{seed}``-templated outputs, or the replicates would overwrite each other."""
    if len(args.seed) > 1:
        flat = [o for o in outputs if SEED_FIELD not in str(getattr(args, o))]
        if flat:
            options = ", ".join("--" + o.replace("_", "-") for o in flat)
            raise ConfigError(f"{options}: with several --seed, write {SEED_FIELD} in the path (one folder per seed)")
