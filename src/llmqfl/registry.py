"""Named extension points: guidance rules, selection strategies, aggregators, termination tests,
feature maps, ansätze, quantum models, raw feature sources, backend kinds and data sources, each a small
class registered by name.

A class joins a kind with the decorator::

    from llmqfl.registry import register

    @register("guidance", "my_rule")
    class MyRule: ...

The built-in ones live in the package (one module per kind, imported on first use). The registry knows
their names, and the static traits of the kinds that have some (:func:`traits`: what a backend kind or a
data source can do), without importing them: checking a config loads no qiskit, torch or federated loop. A researcher's
own module joins by being imported: name it in the config's ``extensions: [module, ...]`` list, or
expose it under the entry-point group ``llmqfl.extensions`` of an installed package. The config
validator (:func:`check_config`) checks every named key against its registry, so an unknown name
ends in one line that lists the known ones. See ``docs/extending.md``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

from llmqfl.errors import ConfigError

ENTRY_POINT_GROUP = "llmqfl.extensions"
TRUST_ENV = "LLMQFL_TRUSTED_EXTENSIONS"  # comma-separated modules (pkg.* for a package) extensions may name
T = TypeVar("T")


@dataclass(frozen=True)
class Kind:
    """One extension point: where its built-ins live and which config key names one."""

    name: str
    builtins: str  # module that registers the built-in entries
    config_key: str  # dotted config path of the name (for error messages and validation)
    builtin_names: tuple[str, ...]  # what ``builtins`` registers (tests/unit/test_registry.py keeps them equal)
    reserved: tuple[str, ...] = ()  # config values that name no class (resolved elsewhere)
    # the static traits every entry declares (class attributes) and their defaults; the built-ins' values are
    # in builtin_traits, so code that asks what a kind can do imports nothing (test_config_light keeps them equal)
    trait_defaults: Mapping[str, Any] = field(default_factory=dict)
    builtin_traits: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


# what a backend kind can do (``backend.kind``; protocol llmqfl.quantum.backends.backend_kinds.BackendKind)
BACKEND_TRAITS: dict[str, Any] = {
    "exact_without_shots": False,  # with shots null the run takes the exact statevector path: no backend, no jobs
    "runtime_options": False,  # honours the runtime Sampler's options (twirling, dynamical decoupling)
    "readout_mitigation": False,  # has a readout error to mitigate
    "job_ledger": False,  # keeps a job ledger (a killed run's jobs are found again, not paid twice)
    "qpu": False,  # runs on a real QPU: the Snakemake resource ``qpu``, jobs fetched back from the service
    "device_checks": True,  # its parse-time checks (a device, an account) need the quantum stack loaded
}
# what a data source is (``data.source``; protocol llmqfl.data.sources.DataSource)
DATA_SOURCE_TRAITS: dict[str, Any] = {
    "item_kind": None,  # dna, text, or None when the items decide (data.kind, llmqfl.data.kinds)
    "online": False,  # downloaded by the data stage (no local copy to size a plan from)
    "required": (),  # data keys it needs (config validation names the first one missing)
}


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("guidance", "llmqfl.federated.guidance", "qfl.guidance.rule",
             ("adaptive", "dynamic_weighted", "hybrid", "incremental", "logarithmic", "none")),
        Kind("selection", "llmqfl.federated.selection", "federation.selection.kind",
             ("all", "closest_to_server", "random")),
        Kind("aggregator", "llmqfl.federated.aggregation", "federation.aggregator", ("fedavg", "mean")),
        Kind("termination", "llmqfl.federated.termination", "qfl.termination.tests",
             ("llm_threshold", "loss_delta", "plateau", "shot_budget")),
        Kind("feature_map", "llmqfl.quantum.models.feature_maps", "qfl.feature_map.name", ("pauli", "z", "zz")),
        Kind("ansatz", "llmqfl.quantum.models.ansatze", "qfl.ansatz.name", ("efficient_su2", "real_amplitudes")),
        Kind("model", "llmqfl.quantum.models.model_kinds", "qfl.model", ("qcnn", "reuploading", "vqc")),
        Kind("encoder", "llmqfl.federated.feature_sources", "qfl.features.source",
             ("columns", "embedding", "kmer", "onehot"), reserved=("auto",)),
        Kind("backend", "llmqfl.quantum.backends.backend_kinds", "backend.kind", ("aer", "aer_noisy", "fake", "ibm"),
             trait_defaults=BACKEND_TRAITS, builtin_traits={
                 "aer": {"exact_without_shots": True, "device_checks": False},
                 "aer_noisy": {"readout_mitigation": True},
                 "fake": {"runtime_options": True, "readout_mitigation": True, "job_ledger": True},
                 "ibm": {"runtime_options": True, "readout_mitigation": True, "job_ledger": True, "qpu": True},
             }),
        Kind("data_source", "llmqfl.data.sources", "data.source",
             ("coding_vs_intergenic", "csv", "human_or_worm", "rotten_tomatoes", "splice", "tweet_eval"),
             trait_defaults=DATA_SOURCE_TRAITS, builtin_traits={
                 "coding_vs_intergenic": {"item_kind": "dna"},
                 "splice": {"item_kind": "dna"},
                 "rotten_tomatoes": {"item_kind": "text"},
                 "csv": {"required": ("path", "item_column", "label_column")},
                 "tweet_eval": {"item_kind": "text", "online": True},
                 "human_or_worm": {"item_kind": "dna", "online": True},
             }),
    )
}

_ENTRIES: dict[str, dict[str, Any]] = {name: {} for name in KINDS}
_LOADED: set[str] = set()
_OVERRIDDEN: dict[str, set[str]] = {name: set() for name in KINDS}
_ENTRY_POINTS_LOADED = False


def _kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise ValueError(f"unknown extension kind {kind!r}; expected one of {', '.join(KINDS)}")
    return KINDS[kind]


def register(kind: str, name: str) -> Callable[[T], T]:
    """Class decorator: make ``cls`` available as ``name`` of ``kind`` (a later registration wins)."""
    spec = _kind(kind)

    def decorate(cls: T) -> T:
        if name in spec.builtin_names and getattr(cls, "__module__", None) != spec.builtins:
            _OVERRIDDEN[kind].add(name)  # an extension replaced a built-in: its traits are its own
        _ENTRIES[kind][name] = cls
        return cls

    return decorate


def _ensure(kind: str) -> None:
    _kind(kind)
    if kind not in _LOADED:
        _LOADED.add(kind)
        importlib.import_module(KINDS[kind].builtins)
    load_entry_points()


def names(kind: str) -> tuple[str, ...]:
    """Every registered name of ``kind``, sorted."""
    _ensure(kind)
    return tuple(sorted(_ENTRIES[kind]))


def get(kind: str, name: str) -> Any:
    """The class registered as ``name``; a one-line :class:`ConfigError` listing the known names otherwise."""
    _ensure(kind)
    try:
        return _ENTRIES[kind][name]
    except KeyError:
        raise ConfigError(
            f"config error: {KINDS[kind].config_key}: {name!r} is not one of: {', '.join(names(kind))}"
        ) from None


def traits(kind: str, name: str) -> dict[str, Any]:
    """What ``name`` of ``kind`` can do (its static traits with the kind's defaults filled in).

    A built-in's come from :attr:`Kind.builtin_traits`, without importing its module (unless an extension
    registered the name again); any other name's from its class attributes. An unknown name is the same one
    line as :func:`get`.
    """
    spec = _kind(kind)
    if name in spec.builtin_traits and name not in _OVERRIDDEN[kind]:
        return {**spec.trait_defaults, **spec.builtin_traits[name]}
    cls = get(kind, name)
    return {key: getattr(cls, key, default) for key, default in spec.trait_defaults.items()}


def trait(kind: str, name: str, key: str) -> Any:
    """One trait of ``name`` (see :func:`traits`)."""
    return traits(kind, name)[key]


def create(kind: str, name: str, **kwargs: Any) -> Any:
    """An instance of the class registered as ``name``."""
    return get(kind, name)(**kwargs)


def trusted(module: str, allowed: str | None) -> bool:
    """Whether ``module`` may be imported under the allow-list ``allowed`` (``TRUST_ENV``'s value).

    None (the variable unset) trusts every module; otherwise a comma-separated list of module names,
    where ``pkg.*`` also allows every module under ``pkg``.
    """
    if allowed is None:
        return True
    for pattern in (p.strip() for p in allowed.split(",")):
        if pattern and (module == pattern or (pattern.endswith(".*") and module.startswith(pattern[:-1]))):
            return True
    return False


def load_extensions(modules: Iterable[str]) -> None:
    """Import the named modules (each registers its classes when imported).

    Importing runs the module's code, and every config check (a dry run too) does it: with
    ``LLMQFL_TRUSTED_EXTENSIONS`` set, a module it does not list is refused before it is imported.
    """
    allowed = os.environ.get(TRUST_ENV)
    for module in modules:
        if not trusted(module, allowed):
            listed = allowed.strip() or "empty: no extension is allowed"
            raise ConfigError(f"config error: extensions: {module!r} is not trusted ({TRUST_ENV} = {listed}); "
                              f"add it there if you trust its code")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"config error: extensions: cannot import {module!r}: {exc}") from exc


def load_entry_points() -> None:
    """Import every module an installed package lists under the ``llmqfl.extensions`` entry points (once)."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as exc:  # a broken third-party package must not pass silently
            where = f"{ENTRY_POINT_GROUP}:{entry.name}"
            raise ConfigError(f"entry point {where}: cannot load {entry.value}: {exc}") from exc


def _at(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def check_config(config: Mapping[str, Any]) -> None:
    """Import ``config['extensions']``, then check every extension name the config gives against its registry.

    A built-in name is known without importing its module (``Kind.builtin_names``), so checking a config
    that names only built-ins loads neither qiskit nor torch nor the federated loop: every stage and every
    Snakefile parse checks its config, and those imports cost seconds. Any other name loads the kind's
    built-ins, the extensions and the entry points, and must be registered by one of them.
    """
    load_extensions(config.get("extensions") or ())
    for kind in KINDS.values():
        value = _at(config, kind.config_key)
        for name in value if isinstance(value, list) else [value]:
            if name is not None and name not in kind.reserved and name not in kind.builtin_names:
                load_entry_points()
                if name not in _ENTRIES[kind.name]:  # the built-in modules register only builtin_names
                    known = sorted({*kind.builtin_names, *_ENTRIES[kind.name]})
                    raise ConfigError(f"config error: {kind.config_key}: {name!r} is not one of: {', '.join(known)}")
