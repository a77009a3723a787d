"""Named extension points: each built-in model part agrees with qiskit's reference primitive, names are
checked against the registry, and a researcher's module joins by config key or by entry point."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import SparsePauliOp

from llmqfl import registry
from llmqfl.config import load_settings, validate_config
from llmqfl.errors import ConfigError
from llmqfl.quantum import build_model, make_evaluator


def _reference_probabilities(model, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Class probabilities from qiskit's StatevectorEstimator: <psi| P_c |psi>, P_c the class-c projector."""
    projectors = [SparsePauliOp.from_operator(np.diag(row.astype(complex))) for row in model.full_readout]
    pubs = []
    for x in features:
        bound = model.circuit.assign_parameters(
            {**dict(zip(model.input_params, x, strict=True)), **dict(zip(model.weight_params, weights, strict=True))}
        )
        pubs.append((bound, projectors))
    result = StatevectorEstimator().run(pubs).result()
    return np.array([np.real(r.data.evs) for r in result])


@pytest.mark.parametrize(
    ("kind", "feature_map", "ansatz"),
    [
        ("vqc", "zz", "real_amplitudes"),
        ("vqc", "pauli", "real_amplitudes"),
        ("vqc", "z", "efficient_su2"),
        ("qcnn", "z", None),
        ("qcnn", "zz", None),
        ("reuploading", "z", "real_amplitudes"),
        ("reuploading", "pauli", "efficient_su2"),
    ],
)
def test_each_built_in_model_part_matches_the_reference_estimator(kind: str, feature_map: str, ansatz: str) -> None:
    # Prepare: 3 qubits, 3 classes, random features and weights
    model = build_model(
        kind=kind, n_qubits=3, n_classes=3, feature_map_reps=2, ansatz_reps=2, feature_map=feature_map, ansatz=ansatz
    )
    rng = np.random.default_rng(7)
    features = rng.uniform(0, np.pi, (4, model.n_inputs))
    weights = rng.uniform(-np.pi, np.pi, model.n_params)
    # Execute: the project's exact evaluation path
    ours = make_evaluator(model, seed=0).probabilities(features, weights)
    # Assert
    np.testing.assert_allclose(ours, _reference_probabilities(model, features, weights), atol=1e-10)
    assert np.allclose(ours.sum(axis=1), 1.0)


def test_data_reuploading_encodes_the_inputs_once_per_layer() -> None:
    model = build_model(kind="reuploading", n_qubits=2, n_classes=2, ansatz_reps=3)
    uses = sum(1 for inst in model.circuit.data for p in inst.operation.params if getattr(p, "parameters", None)
               and set(p.parameters) & set(model.input_params))  # fmt: skip
    single = build_model(kind="reuploading", n_qubits=2, n_classes=2, ansatz_reps=1)
    uses_single = sum(1 for inst in single.circuit.data for p in inst.operation.params
                      if getattr(p, "parameters", None) and set(p.parameters) & set(single.input_params))  # fmt: skip
    assert uses == 3 * uses_single and model.n_params == 3 * single.n_params


def test_the_default_config_builds_todays_vqc() -> None:
    from qiskit.circuit.library import real_amplitudes, zz_feature_map

    from llmqfl.federated.run import build_model as from_config

    model = from_config(load_settings({"qfl": {"n_qubits": 3, "ansatz_reps": 2}}), n_classes=2)
    built = zz_feature_map(3, reps=1).compose(real_amplitudes(3, reps=2))

    def gates(circuit):
        return [(i.operation.name, [str(p) for p in i.operation.params], [circuit.find_bit(q).index for q in i.qubits])
                for i in circuit.data]  # fmt: skip

    assert gates(model.circuit) == gates(built)
    assert model.n_params == 9 and model.readout_rule == "mod"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"qfl": {"guidance": {"rule": "greedy"}}}, "qfl.guidance.rule: 'greedy' is not one of: adaptive, "),
        ({"qfl": {"feature_map": {"name": "amplitude"}}}, "qfl.feature_map.name: 'amplitude' is not one of: pauli, z"),
        ({"qfl": {"ansatz": {"name": "ladder"}}}, "qfl.ansatz.name: 'ladder' is not one of: efficient_su2"),
        ({"qfl": {"model": "cnn"}}, "qfl.model: 'cnn' is not one of: qcnn, reuploading, vqc"),
        ({"federation": {"aggregator": "median"}}, "federation.aggregator: 'median' is not one of: fedavg, mean"),
        ({"federation": {"selection": {"kind": "best"}}}, "federation.selection.kind: 'best' is not one of: all"),
        ({"qfl": {"termination": {"tests": ["budget"]}}}, "qfl.termination.tests: 'budget' is not one of:"),
        ({"extensions": ["no_such_module_xyz"]}, "extensions: cannot import 'no_such_module_xyz'"),
        ({"qfl": {"features": {"source": "tfidf"}}}, "qfl.features.source: 'tfidf' is not one of: columns, embedding"),
    ],
)
def test_an_unknown_name_is_one_line_listing_the_known_ones(override: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate_config(override)
    assert message in str(error.value) and "\n" not in str(error.value)


def _write_module(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def test_a_module_named_in_extensions_registers_its_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a researcher's module outside the package
    _write_module(tmp_path, "my_rules_ext", """
        from llmqfl.registry import register

        @register("guidance", "doubling")
        class Doubling:
            def propose(self, m, r, max_increment):
                return 2 * m
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    # Execute
    config = validate_config({"extensions": ["my_rules_ext"], "qfl": {"guidance": {"rule": "doubling"}}})
    # Assert: the rule is known and applied through the guidance gate and cap
    from llmqfl.federated.guidance import next_maxiter

    assert config["qfl"]["guidance"]["rule"] == "doubling" and "doubling" in registry.names("guidance")
    step = next_maxiter("doubling", maxiter=5, quantum_loss=0.9, llm_loss=0.3, max_maxiter=8, max_increment=10,
                        round_index=2)  # fmt: skip
    assert step == 8


def test_an_installed_package_registers_through_the_entry_point_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a distribution on sys.path whose entry point names its module
    _write_module(tmp_path, "my_fedext", """
        from llmqfl.registry import register

        @register("aggregator", "first_client")
        class FirstClient:
            def aggregate(self, weights, sizes):
                return weights[min(weights)]
    """)
    info = tmp_path / "my_fedext-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-fedext\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nfirst = my_fedext\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", False)
    # the aggregator this test registers leaves with it (later tests list the registered names)
    monkeypatch.setitem(registry._ENTRIES, "aggregator", dict(registry._ENTRIES["aggregator"]))
    # Execute
    config = validate_config({"federation": {"aggregator": "first_client"}})
    # Assert
    assert config["federation"]["aggregator"] == "first_client"
    assert "my_fedext" in sys.modules


def test_every_stage_that_reads_extension_names_gets_the_extensions_list() -> None:
    # a stage re-validates its config slice: without `extensions` it could not know an extension's names
    from llmqfl.config import STAGE_SECTIONS

    for stage, sections in STAGE_SECTIONS.items():
        names_extensions = {"qfl", "federation", "data", "backend"} & set(sections)
        assert not names_extensions or "extensions" in sections, stage


def test_an_extension_backend_kind_and_data_source_bring_their_own_traits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: one module registering a backend kind and a data source, with traits as class attributes
    _write_module(tmp_path, "lab_kinds_ext", """
        from llmqfl.registry import register

        @register("backend", "lab_qpu")
        class LabQpu:
            qpu = True
            job_ledger = True

        @register("data_source", "lab_reads")
        class LabReads:
            item_kind = "dna"
            online = True
            required = ("path",)
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    # Execute
    config = validate_config({"extensions": ["lab_kinds_ext"], "backend": {"kind": "lab_qpu"},
                              "data": {"source": "lab_reads", "path": "reads"}})
    with pytest.raises(ConfigError) as missing:
        validate_config({"extensions": ["lab_kinds_ext"], "data": {"source": "lab_reads"}})
    # Assert: the traits the pipeline asks for are the classes' (the rest the kind's defaults)
    from llmqfl.pipeline import needs_embeddings

    assert registry.traits("backend", "lab_qpu") == {**registry.BACKEND_TRAITS, "qpu": True, "job_ledger": True}
    assert registry.trait("data_source", "lab_reads", "online") is True
    assert needs_embeddings(config) is False  # DNA items: one-hot features, no LLM embeddings
    assert str(missing.value) == "config error: data.path: required when data.source is lab_reads"
    with pytest.raises(ConfigError, match=r"data\.item_column: required when data\.source is csv"):
        validate_config({"data": {"source": "csv", "path": "x.csv"}})


def test_a_data_source_and_a_backend_kind_outside_the_registry_are_one_line() -> None:
    for override, message in (({"data": {"source": "imagenet"}}, "data.source: 'imagenet' is not one of: "
                                                                   "coding_vs_intergenic, csv, human_or_worm"),
                              ({"backend": {"kind": "ionq"}}, "backend.kind: 'ionq' is not one of: aer, aer_noisy")):
        with pytest.raises(ConfigError) as error:
            validate_config(override)
        assert message in str(error.value) and "\n" not in str(error.value)

