"""Load and validate the pipeline config; derive every seed from the one root seed.

The Snakefile and every stage CLI call :func:`validate_config` with the same schema file
(``workflow/schemas/config.schema.yaml``, shipped in the package as ``llmqfl/schema/``), so a config
accepted by one is accepted by all.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from llmqfl.errors import ConfigError
from llmqfl.privacy_accounting import check_settings as check_privacy_settings
from llmqfl.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The schema ships inside the package (``llmqfl/schema/``, a link to the workflow's copy in a checkout and
# a real file in a wheel), so an installed package validates without the repository.
SCHEMA_RESOURCE = ("schema", "config.schema.yaml")

# The config fields each stage reads (top-level sections or dotted sub-keys). A stage gets only these,
# so that a change elsewhere (say, the guidance rule) does not re-run it.
_FEDERATION_SHAPE = ("federation.n_clients", "federation.partition", "federation.client_test_fraction")
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    # every slice with a named extension point (data.source, backend.kind, ...) carries the extensions list
    "data": ("experiment", "seed", "extensions", "data"),
    "partition": ("experiment", "seed", "extensions", "data", *_FEDERATION_SHAPE),
    "distill": ("experiment", "seed", "extensions", "data", *_FEDERATION_SHAPE, "llm", "privacy.llm", "tracking"),
    "embed": ("experiment", "seed", "extensions", "data", "llm", "tracking"),
    "qfl": ("experiment", "seed", "extensions", "data", "federation", "llm", "qfl", "backend", "privacy.quantum",
            "tracking"),
    # one (arm, seed) run each: the list of arms and seeds is not an input (adding a seed re-runs no evaluation)
    "evaluate": ("experiment", "seed", "extensions", "data", "federation", "llm", "qfl", "backend", "replicates"),
    # the report reads every (arm, seed) evaluation: the lists are its inputs
    "report": ("experiment", "seed", "extensions", "data", "federation", "llm", "qfl", "backend", "replicates",
               "report", "arms", "seeds"),
    "sweep": ("experiment", "seed", "seeds", "sweep"),
}
# Settings that change how fast a stage runs or where it logs, never what it writes. They stay out of
# every stage slice, so out of Snakemake's re-run params and the qfl checkpoint fingerprint; the
# Snakefile hands them to jobs in the environment (RUNTIME_ENV, see with_runtime_settings). llm.device is
# one: a GPU's float arithmetic differs from the CPU's in the last bits, as a thread count's reductions do.
RUNTIME_KEYS = ("llm.threads", "llm.device", "backend.threads", "tracking")
RUNTIME_ENV = "LLMQFL_RUNTIME"
# Limits on input, each refused with one line before anything else looks at the config. A config file
# holds a few hundred values; YAML aliases can make 500 bytes stand for billions of them (an "alias
# bomb"), which would hang every walk of the tree (validation, merging, the Snakefile's parse).
# The list and count limits (seeds, arms, clients) are in the schema as maxItems / maximum.
MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_VALUES = 100_000


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The JSON schema, parsed once."""
    return yaml.safe_load(resources.files("llmqfl").joinpath(*SCHEMA_RESOURCE).read_text())


def _fill_defaults(validator_class: type) -> type:
    """A validator that writes each property's ``default`` into the instance, as snakemake does."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _is_integer(checker: Any, instance: Any) -> bool:
    """Only a real int is an integer: 2.0 would reach ``range()`` in the Snakefile as a float."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    _fill_defaults(jsonschema.Draft7Validator),
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def _field_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        prefix = f"{path}." if path else ""
        return prefix + ",".join(unknown)
    return path or "<root>"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"{error.instance!r} is not one of: {allowed}"
    if error.validator == "additionalProperties":
        return "unknown key"
    if error.validator == "maxItems":
        return f"{len(error.instance)} items; the limit is {error.validator_value}"
    if error.validator == "minItems":
        return f"{len(error.instance)} items; at least {error.validator_value} needed"
    if error.validator == "type":
        value = error.instance
        if isinstance(value, float) and value.is_integer() and "integer" in str(error.validator_value):
            return f"{error.instance!r} is not of type {error.validator_value} (write {int(error.instance)})"
        return f"{error.instance!r} is not of type {error.validator_value}"
    return error.message


def validate_config(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a validated deep copy of ``raw`` with every default filled in.

    Raises :class:`ConfigError` with a one-line message naming the first bad field.
    """
    check_size(raw or {})
    config = copy.deepcopy(dict(raw or {}))
    # booleans are ints in Python; the schema's integers must not accept them
    _reject_booleans(config, "")
    _reject_non_finite(config, "")
    errors = sorted(_Validator(load_schema()).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        raise ConfigError(f"config error: {_field_path(first)}: {_message(first)}")
    _check_cross_field(config)
    from llmqfl.contracts import check_arms
    from llmqfl.registry import check_config  # extension names: checked against the registry

    check_arms(config.get("arms", ()))
    check_config(config)
    _check_source_fields(config["data"])
    return config


def load_settings(raw: Mapping[str, Any] | None) -> Settings:
    """Validate ``raw`` (defaults filled, one-line errors) and return its frozen, typed sections."""
    return Settings.from_config(validate_config(raw))


def read_settings(paths: str | Path | Iterable[str | Path]) -> Settings:
    """Config files (later ones win) validated into typed settings: what a command that names files reads."""
    return Settings.from_config(load_config(paths))


def _check_source_fields(data: Mapping[str, Any]) -> None:
    """The ``data`` keys the configured source requires (its ``required`` trait: csv's path and columns)."""
    from llmqfl.registry import trait

    for field in trait("data_source", data["source"], "required"):
        if not data.get(field):
            raise ConfigError(f"config error: data.{field}: required when data.source is {data['source']}")


def check_size(config: Any, what: str = "config") -> None:
    """Refuse a config of more than :data:`MAX_CONFIG_VALUES` values, counting each alias's copy.

    The walk stops at the first value past the limit, so an alias bomb costs microseconds, not forever.
    """
    count, stack = 0, [config]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(f"config error: {what} holds more than {MAX_CONFIG_VALUES} values (YAML aliases "
                              f"expanding, or a huge list); the limit is {MAX_CONFIG_VALUES}")
        if isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)


def read_config_text(path: str | Path) -> str:
    """A config file's text; one line when it is missing, unreadable or over :data:`MAX_CONFIG_BYTES`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"config error: cannot read config file {path}: {exc.strerror}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config error: config file {path} is larger than {MAX_CONFIG_BYTES} bytes (the limit)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config error: config file {path} is not UTF-8 text (byte {exc.start})") from exc


def parse_yaml(text: str, where: str) -> Any:
    """YAML (or JSON) text as Python values; a syntax error is one line naming ``where`` and the position."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config error: {where} is not valid YAML{at}: {problem}") from exc
    check_size(loaded, where)
    return loaded


def _reject_booleans(node: Any, path: str) -> None:
    schema = load_schema()
    for part in [p for p in path.split(".") if p]:
        schema = schema.get("properties", {}).get(part, {})
    if isinstance(node, bool):
        allowed = schema.get("type") or schema.get("enum")
        if allowed is not None and "boolean" not in str(allowed) and True not in (schema.get("enum") or []):
            raise ConfigError(f"config error: {path}: {node!r} is not of type {schema.get('type', 'enum')}")
    elif isinstance(node, dict):
        for key, value in node.items():
            _reject_booleans(value, f"{path}.{key}" if path else str(key))


def _reject_non_finite(node: Any, path: str) -> None:
    """No config number may be nan or inf (YAML's .nan / .inf): each one would poison a stage late."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"config error: {path or '<root>'}: {node!r} is not a finite number")
    if isinstance(node, dict):
        for key, value in node.items():
            _reject_non_finite(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _reject_non_finite(value, f"{path}[{i}]")


def _check_cross_field(config: dict[str, Any]) -> None:
    """Rules that span fields, so the schema cannot say them."""
    optimizer = config["qfl"]["optimizer"]
    if optimizer["max_maxiter"] < optimizer["maxiter"]:
        raise ConfigError("config error: qfl.optimizer.max_maxiter: must be >= qfl.optimizer.maxiter")
    if config["llm"]["peft"] == "qlora" and config["llm"].get("device") == "cpu":
        raise ConfigError("config error: llm.peft: qlora needs a CUDA GPU (bitsandbytes 4-bit); llm.device is cpu")
    check_privacy_settings(config.get("privacy") or {})
    _check_secagg(config["federation"], config.get("privacy") or {})


SECAGG_MODULUS = 2**32  # Flower's SecAgg+ mask modulus (its default); the quantised sum must stay below it


def _check_secagg(federation: dict[str, Any], privacy: dict[str, Any]) -> None:
    """SecAgg+ settings Flower's protocol cannot honour, refused before any process starts."""
    secagg = (federation.get("flower") or {}).get("secagg") or {}
    if not secagg.get("enabled"):
        return
    where, n = "config error: federation.flower.secagg", int(federation["n_clients"])
    shares, threshold = int(secagg.get("num_shares", 3)), int(secagg.get("reconstruction_threshold", 2))
    if federation.get("transport", "inprocess") != "flower":
        raise ConfigError(f"{where}.enabled: SecAgg+ runs only over federation.transport flower "
                          "(in-process the server holds every client's update anyway)")
    if federation.get("aggregator", "fedavg") not in ("fedavg", "mean"):
        raise ConfigError(f"{where}.enabled: SecAgg+ computes a weighted sum, so federation.aggregator must be "
                          f"fedavg or mean, not {federation.get('aggregator')}")
    if (privacy.get("quantum") or {}).get("enabled"):
        raise ConfigError(f"{where}.enabled: privacy.quantum clips and noises each client's update at the server, "
                          "which SecAgg+ hides from it; turn one of them off")
    if shares > n:
        raise ConfigError(f"{where}.num_shares: {shares} exceeds federation.n_clients ({n})")
    if threshold >= shares:
        raise ConfigError(f"{where}.reconstruction_threshold: {threshold} must be below num_shares ({shares})")
    if n * int(secagg.get("quantization_range", 2**22)) >= SECAGG_MODULUS:
        raise ConfigError(f"{where}.quantization_range: times federation.n_clients ({n}) must stay below 2**32 "
                          "(the sum of the quantised updates would overflow the mask modulus)")


def load_config(path: str | Path | Iterable[str | Path], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read one or more YAML files (later ones win), apply ``overrides``, validate."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    merged: dict[str, Any] = {}
    for item in paths:
        loaded = parse_yaml(read_config_text(item), str(item)) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config error: {item}: top level must be a mapping")
        merged = deep_merge(merged, loaded)
    return validate_config(deep_merge(merged, dict(overrides or {})))


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; values in ``update`` win."""
    result = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def stage_config(config: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """The slice of a validated config that ``stage`` depends on (the stage CLI re-fills the defaults)."""
    sliced: dict[str, Any] = {}
    for dotted in STAGE_SECTIONS[stage]:
        *parents, leaf = dotted.split(".")
        source: Any = config
        for part in parents:
            source = source.get(part) if isinstance(source, Mapping) else None
        if not isinstance(source, Mapping) or leaf not in source:
            continue  # a section the config does not hold (an unvalidated test config): nothing to slice
        target = sliced
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = copy.deepcopy(source[leaf])
    return without_runtime_settings(sliced)


def without_runtime_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` without the :data:`RUNTIME_KEYS` (thread counts, tracking names)."""
    stripped = copy.deepcopy(dict(config))
    for dotted in RUNTIME_KEYS:
        *parents, leaf = dotted.split(".")
        node: Any = stripped
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return stripped


def runtime_settings_json(config: Mapping[str, Any]) -> str:
    """The :data:`RUNTIME_KEYS` of a validated config as JSON: the value of :data:`RUNTIME_ENV` for jobs."""
    picked: dict[str, Any] = {}
    for dotted in RUNTIME_KEYS:
        *parents, leaf = dotted.split(".")
        source: Any = config
        target = picked
        for part in parents:
            source = source.get(part, {}) if isinstance(source, Mapping) else {}
            target = target.setdefault(part, {})
        if isinstance(source, Mapping) and leaf in source:
            target[leaf] = copy.deepcopy(source[leaf])
    return json.dumps(picked, sort_keys=True)


def with_runtime_settings(raw: Mapping[str, Any], text: str | None) -> dict[str, Any]:
    """``raw`` with the runtime settings of ``text`` (:func:`runtime_settings_json`) filled in where absent."""
    if not text:
        return dict(raw)
    try:
        runtime = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config error: {RUNTIME_ENV} is not valid JSON: {exc.msg}") from exc
    return deep_merge(runtime, raw) if isinstance(runtime, dict) else dict(raw)


def stage_config_json(config: Mapping[str, Any], stage: str) -> str:
    """Canonical JSON of :func:`stage_config`: what Snakemake passes to a stage CLI."""
    return json.dumps(stage_config(config, stage), sort_keys=True, separators=(",", ":"))


def derive_seed(root: int, *names: object) -> int:
    """A 32-bit seed derived from the root seed and a path of names (stage, arm, client, ...).

    Stable across processes and Python versions (no ``hash()``), so the same config gives the
    same numbers everywhere.
    """
    key = json.dumps([int(root), *[str(n) for n in names]]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")
