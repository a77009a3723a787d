"""The validated config as frozen, typed sections: what every layer below the stage CLIs reads.

A stage validates its config once (:func:`llmqfl.config.validate_config` fills every default) and builds
one :class:`Settings` from it (:func:`llmqfl.config.load_settings`); the package functions it calls take
that object or one of its sections, never the raw dict. A typo in a field name is then an
``AttributeError`` at the line that makes it, not a silent ``.get`` default, and a reader sees each
section's fields and their types here. The schema (``workflow/schemas/config.schema.yaml``) stays the one
place that holds defaults and limits; ``tests/unit/test_settings.py`` checks every class below against
it, field by field and type by type. This module imports nothing heavy, so checking a config stays light.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

Auto = Literal["auto"]


@dataclass(frozen=True)
class LeakageSettings:
    k: int
    min_shared_kmers: int


@dataclass(frozen=True)
class DataSettings:
    source: str
    path: str | None
    item_column: str | None
    label_column: str | None
    feature_columns: tuple[str, ...] | None
    kind: Literal["auto", "dna", "text"]
    na_values: tuple[str, ...]
    max_items: int | None
    test_fraction: float
    server_val_fraction: float
    conflicts: Literal["refuse", "drop", "majority"]
    leakage: LeakageSettings


@dataclass(frozen=True)
class PartitionSettings:
    kind: Literal["iid", "dirichlet", "quantity"]
    alpha: float


@dataclass(frozen=True)
class SecAggSettings:
    enabled: bool
    num_shares: int
    reconstruction_threshold: int
    clipping_range: float
    quantization_range: int


@dataclass(frozen=True)
class FlowerSettings:
    round_timeout_s: float
    connect_timeout_s: float
    min_clients: int
    rejoin: bool
    secagg: SecAggSettings


@dataclass(frozen=True)
class SelectionSettings:
    kind: str
    fraction: float


@dataclass(frozen=True)
class FederationSettings:
    aggregator: str
    n_clients: int
    partition: PartitionSettings
    client_test_fraction: float
    rounds: int
    transport: Literal["inprocess", "flower"]
    flower: FlowerSettings
    selection: SelectionSettings


@dataclass(frozen=True)
class LoraSettings:
    r: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...] | None


@dataclass(frozen=True)
class LlmSettings:
    model: str
    peft: Literal["lora", "qlora", "full"]
    lora: LoraSettings
    epochs: int
    batch_size: int
    learning_rate: float
    max_length: int
    kmer: int
    dna_tokens: Literal["overlap", "kmer", "frames"]
    token_learning_rate: float | None
    pooling: Literal["auto", "mean", "model"]
    head_init: Literal["random", "probe"]
    head_learning_rate: float | None
    eval_fraction: float
    federated_rounds: int
    references: bool
    adapter_aggregation: Literal["factorwise", "ffa"]
    threads: int
    device: Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class CircuitPartSettings:
    """A feature map or an ansatz: a registered name and its repetitions (None: the model's own)."""

    name: str | None
    reps: int | None


@dataclass(frozen=True)
class FeatureSettings:
    method: Literal["pca"]
    source: str
    k: int
    fit: Literal["pooled", "client", "server"]


@dataclass(frozen=True)
class OptimizerSettings:
    name: Literal["cobyla", "spsa", "adam"]
    maxiter: int
    max_maxiter: int
    learning_rate: float


@dataclass(frozen=True)
class GuidanceSettings:
    rule: str
    max_increment: int
    signal: Literal["eval_loss", "train_loss"]
    quantum_loss_unit: Literal["nats", "bits"]


@dataclass(frozen=True)
class DistillationSettings:
    weight: float
    temperature: float


@dataclass(frozen=True)
class TerminationSettings:
    llm_threshold: float | None
    llm_threshold_quantile: float | None
    loss_delta_quantile: float
    plateau_rounds: int | None
    plateau_tolerance: float
    tests: tuple[str, ...]


@dataclass(frozen=True)
class QflSettings:
    references: bool
    model: str
    feature_map: CircuitPartSettings
    ansatz: CircuitPartSettings
    n_qubits: int
    feature_map_reps: int
    ansatz_reps: int
    readout: Literal["mod", "parity"]
    initial_point: float | None
    features: FeatureSettings
    optimizer: OptimizerSettings
    guidance: GuidanceSettings
    distillation: DistillationSettings
    termination: TerminationSettings


@dataclass(frozen=True)
class TwirlingSettings:
    gates: bool
    measure: bool
    num_randomizations: int | Auto
    shots_per_randomization: int | Auto


@dataclass(frozen=True)
class DynamicalDecouplingSettings:
    enable: bool
    sequence_type: Literal["XX", "XpXm", "XY4"]


@dataclass(frozen=True)
class ReadoutMitigationSettings:
    enable: bool
    method: Literal["full", "tensored"]
    shots: int | None


@dataclass(frozen=True)
class MitigationSettings:
    resilience_level: int
    twirling: TwirlingSettings
    dynamical_decoupling: DynamicalDecouplingSettings
    readout: ReadoutMitigationSettings


@dataclass(frozen=True)
class BackendSettings:
    kind: str
    name: str | None
    shots: int | None
    mode: Literal["batch", "session", "job"]
    optimization_level: int
    shot_budget: int | None
    retries: int
    timeout_s: float | None
    backoff_s: float
    threads: int
    aer_sampler: Literal["distribution", "native"]
    noisy_engine: Literal["auto", "aer"]
    qpu_seconds_budget: float | None
    mitigation: MitigationSettings
    batching: Literal["lockstep", "sequential"]


@dataclass(frozen=True)
class ReportSettings:
    peft_reference_clients: int


@dataclass(frozen=True)
class SweepSettings:
    guidance_rules: tuple[str, ...]
    distillation_weights: tuple[float, ...]
    selections: tuple[Literal["all", "random", "closest_to_server"], ...]
    fraction: float


@dataclass(frozen=True)
class ReplicatesSettings:
    scope: Literal["quantum_init", "pipeline"]


@dataclass(frozen=True)
class DpSgdSettings:
    enabled: bool
    noise_multiplier: float
    max_grad_norm: float
    delta: float
    accountant: Literal["rdp", "prv"]
    grad_sample_mode: Literal["hooks", "functorch", "ew"]


@dataclass(frozen=True)
class QuantumDpSettings:
    enabled: bool
    noise_multiplier: float
    clip_norm: float
    delta: float
    accountant: Literal["rdp", "prv"]


@dataclass(frozen=True)
class PrivacySettings:
    llm: DpSgdSettings
    quantum: QuantumDpSettings


@dataclass(frozen=True)
class TrackingSettings:
    experiment_name: str | None


@dataclass(frozen=True)
class ClusterSettings:
    partition: str | None
    account: str | None
    gpu_partition: str | None


@dataclass(frozen=True)
class Settings:
    """One validated config. Build it with :func:`llmqfl.config.load_settings` or :meth:`from_config`."""

    experiment: str
    extensions: tuple[str, ...]
    seed: int
    data: DataSettings
    federation: FederationSettings
    llm: LlmSettings
    qfl: QflSettings
    backend: BackendSettings
    arms: tuple[str, ...]
    report: ReportSettings
    sweep: SweepSettings
    replicates: ReplicatesSettings
    seeds: tuple[int, ...]
    privacy: PrivacySettings
    tracking: TrackingSettings
    cluster: ClusterSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """The typed view of a config that :func:`llmqfl.config.validate_config` returned (defaults filled)."""
        return _build(cls, config, "")

    def as_config(self) -> dict[str, Any]:
        """The plain, JSON-ready dict again (lists for tuples): for files, hashes and MLflow params."""
        return as_plain(self)

    def with_values(self, updates: Mapping[str, Any]) -> Settings:
        """A copy with dotted fields replaced, e.g. ``{"qfl.optimizer.maxiter": 5}`` (no re-validation)."""
        result = self
        for dotted, value in updates.items():
            result = _replace_path(result, dotted.split("."), value)
        return result


def as_plain(section: Any) -> Any:
    """A section (or any value in one) as plain JSON-ready data: dicts, lists and scalars."""
    if dataclasses.is_dataclass(section) and not isinstance(section, type):
        return {f.name: as_plain(getattr(section, f.name)) for f in dataclasses.fields(section)}
    if isinstance(section, (tuple, list)):
        return [as_plain(value) for value in section]
    return section


def _replace_path(section: Any, path: list[str], value: Any) -> Any:
    head, *rest = path
    if head not in _field_types(type(section)):
        raise KeyError(f"{type(section).__name__} has no field {head!r}")
    new = _replace_path(getattr(section, head), rest, value) if rest else value
    return dataclasses.replace(section, **{head: new})


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """``cls`` from a validated mapping: nested sections become their classes, lists become tuples."""
    hints = _field_types(cls)
    missing = [name for name in hints if name not in data]
    unknown = [name for name in data if name not in hints]
    if missing or unknown:  # validate_config fills every default and refuses unknown keys: a bug, not input
        raise ValueError(f"{where or 'config'}: not a validated config (missing {missing}, unknown {unknown})")
    return cls(**{name: _value(hint, data[name], f"{where}{name}") for name, hint in hints.items()})


def _value(hint: Any, value: Any, where: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where + ".")
    if value is None:
        return None
    args = get_args(hint)
    if get_origin(hint) in (Union, types.UnionType):  # X | None: build as X
        return _value(next(arg for arg in args if arg is not type(None)), value, where)
    if get_origin(hint) is tuple and isinstance(value, (list, tuple)):
        return tuple(_value(args[0], item, where) for item in value)
    return value
