"""The typed settings match the schema field by field and type by type, and round-trip every shipped config."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import pytest

from llmqfl.config import load_config, load_schema, load_settings
from llmqfl.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCALARS = {"string": str, "integer": int, "number": float, "boolean": bool}


def expected_hint(subschema: dict[str, Any]) -> Any:
    """The Python annotation a schema node stands for (None for a nested section: checked by recursion)."""
    if "oneOf" in subschema:
        return Union[tuple(expected_hint(option) for option in subschema["oneOf"])]  # noqa: UP007
    if "const" in subschema:
        return Literal[subschema["const"]]
    if "enum" in subschema:
        return Literal[tuple(subschema["enum"])]
    kinds = subschema["type"] if isinstance(subschema["type"], list) else [subschema["type"]]
    hints = []
    for kind in kinds:
        if kind == "null":
            hints.append(type(None))
        elif kind == "array":
            hints.append(tuple[expected_hint(subschema["items"]), ...])
        else:
            hints.append(SCALARS[kind])
    return Union[tuple(hints)]  # noqa: UP007


def normalise(hint: Any) -> Any:
    """``X | None`` and ``Optional[X]`` compare equal; union members compare as a set."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return frozenset(normalise(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return ("tuple", normalise(typing.get_args(hint)[0]))
    if typing.get_origin(hint) is Literal:
        return ("literal", frozenset(typing.get_args(hint)))
    return frozenset({hint})


def mismatches(cls: type, schema: dict[str, Any], where: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    properties = schema["properties"]
    problems = [f"{where}{name}: in the schema, not in {cls.__name__}" for name in properties.keys() - hints]
    problems += [f"{where}{name}: in {cls.__name__}, not in the schema" for name in hints.keys() - properties]
    for name in properties.keys() & hints.keys():
        node, hint = properties[name], hints[name]
        if node.get("type") == "object":
            if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
                problems.append(f"{where}{name}: a section in the schema, {hint} in {cls.__name__}")
            else:
                problems += mismatches(hint, node, f"{where}{name}.")
        elif normalise(hint) != normalise(expected_hint(node)):
            problems.append(f"{where}{name}: schema says {expected_hint(node)}, {cls.__name__} says {hint}")
    return problems


def test_every_section_matches_the_schema_field_by_field_and_type_by_type():
    assert mismatches(Settings, load_schema(), "") == []


def test_a_drifted_class_is_caught():
    """The comparison itself bites: a renamed field and a widened type are both reported."""

    @dataclasses.dataclass(frozen=True)
    class Drifted:
        kind: str  # the schema's enum [iid, dirichlet, quantity]
        concentration: float  # the schema calls it alpha

    problems = mismatches(Drifted, load_schema()["properties"]["federation"]["properties"]["partition"], "p.")
    assert sorted(problems) == sorted([
        "p.alpha: in the schema, not in Drifted",
        "p.concentration: in Drifted, not in the schema",
        "p.kind: schema says typing.Literal['iid', 'dirichlet', 'quantity'], Drifted says <class 'str'>",
    ])


@pytest.mark.parametrize("path", [ROOT / "config/config.yaml", *sorted((ROOT / "config/experiments").glob("*.yaml"))],
                         ids=lambda p: p.stem)
def test_every_shipped_config_round_trips(path):
    files = [path] if path.parent.name == "config" else [ROOT / "config/config.yaml", path]
    config = load_config(files)
    settings = Settings.from_config(config)
    assert settings.as_config() == config
    assert isinstance(settings.seeds, tuple) and isinstance(settings.qfl.termination.tests, tuple)


def test_sections_are_frozen_and_replaced_by_dotted_path():
    settings = load_settings({"qfl": {"optimizer": {"maxiter": 4}}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.qfl.optimizer.maxiter = 5  # type: ignore[misc]
    changed = settings.with_values({"qfl.optimizer.maxiter": 9, "federation.rounds": 2})
    assert (changed.qfl.optimizer.maxiter, changed.federation.rounds) == (9, 2)
    assert settings.qfl.optimizer.maxiter == 4  # the original is untouched
    with pytest.raises(KeyError, match="no field 'maxiters'"):
        settings.with_values({"qfl.optimizer.maxiters": 9})


def test_an_unvalidated_dict_is_refused_naming_what_is_missing():
    with pytest.raises(ValueError, match=r"not a validated config \(missing \['experiment'"):
        Settings.from_config({"seed": 0})
