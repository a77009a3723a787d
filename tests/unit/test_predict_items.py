"""Prediction refuses what the model cannot read (kind, alphabet, length, type), and the predict CLI keeps
the input's columns beside distinctly named predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmqfl import cli
from llmqfl.errors import DataError
from llmqfl.serving.bundle import BUNDLE_FILE, Bundle
from llmqfl.serving.item_checks import ITEMS_KEY, distinct_columns, items_spec

WIDTH = 24


def _training_items(n: int = 30) -> list[str]:
    rng = np.random.default_rng(7)
    return ["".join(rng.choice(list("ACGT"), WIDTH)) for _ in range(n)]


def _bundle(folder: Path, *, kind: str = "dna", record: bool = True) -> Path:
    """A 3-qubit one-hot DNA model (or a text model) as the qfl stage saves one, with its items' record."""
    from llmqfl.data.encoders import AngleEncoder, onehot
    from llmqfl.quantum import build_model
    from llmqfl.serving.bundle import save_bundle

    items = _training_items()
    model = build_model(kind="vqc", n_qubits=3, n_classes=2)
    weights = np.random.default_rng(1).uniform(-np.pi, np.pi, model.n_params)
    features = {"source": "onehot"} if kind == "dna" else {
        "source": "embedding", "embedding": {"model": "tiny-gpt2", "max_length": 16, "kmer": 6, "models_root": "x"}}
    return save_bundle(folder, model=model, weights=weights, encoder=AngleEncoder(3).fit(onehot(items)),
                       class_names=["coding", "intergenic"], features=features,
                       items=items_spec(kind, items) if record else None)


@pytest.fixture(scope="module")
def dna_model(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return Bundle(_bundle(tmp_path_factory.mktemp("dna") / "model"))


def test_the_bundle_records_the_training_items_kind_alphabet_and_lengths(dna_model: Bundle) -> None:
    assert json.loads((dna_model.folder / BUNDLE_FILE).read_text())[ITEMS_KEY] == {
        "kind": "dna", "alphabet": "ACGT", "lengths": [WIDTH, WIDTH]}


def test_a_dna_model_refuses_letters_outside_its_alphabet_naming_letters_and_rows(dna_model: Bundle) -> None:
    # Prepare: row 1 has an IUPAC R, row 2 an X and an R; rows 0 and 3 are fine
    good = _training_items(2)
    items = [good[0], "R" + good[1][1:], "X" + good[0][1:-1] + "R", good[1]]
    # Execute / Assert
    with pytest.raises(DataError) as caught:
        dna_model.predict(items)
    message = str(caught.value)
    assert "outside the model's DNA alphabet ACGT" in message
    assert "'R' in row(s) 1, 2" in message and "'X' in row(s) 2" in message and "\n" not in message
    assert len(dna_model.predict([good[0], good[1]])) == 2  # the same model reads its own kind of item


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("The movie was a delight from start to end", "outside the model's DNA alphabet"),
        ("", "empty item(s) in row(s) 0"),
        (42, "not strings (int) in row(s) 0"),
        (None, "not strings (None) in row(s) 0"),
        (float("nan"), "not strings (float) in row(s) 0"),
        ("ACGT", "item length(s) 4 in row(s) 0 outside the training items' 24 letters"),
        ("ACGT" * 10, "item length(s) 40 in row(s) 0 outside"),
    ],
    ids=["english", "empty", "integer", "none", "nan", "too-short", "too-long"],
)
def test_a_dna_model_refuses_what_it_was_not_trained_on(dna_model: Bundle, item: object, expected: str) -> None:
    with pytest.raises(DataError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        dna_model.predict([item])


def test_a_text_model_refuses_non_strings_before_embedding_anything(tmp_path: Path) -> None:
    model = Bundle(_bundle(tmp_path / "model", kind="text"))
    with pytest.raises(DataError, match=r"not strings \(None, int\) in row\(s\) 1, 2; this model reads text items"):
        model.predict(pd.DataFrame({"item": ["a fine film", None, 7]}))


def test_a_model_saved_before_item_checks_loads_and_checks_its_one_hot_width(tmp_path: Path) -> None:
    model = Bundle(_bundle(tmp_path / "model", record=False))
    assert model.items_spec == {"kind": "dna", "alphabet": "ACGTN", "lengths": [WIDTH, WIDTH]}
    assert len(model.predict(_training_items(3))) == 3
    with pytest.raises(DataError, match="letters outside"):
        model.predict(["hello"])


def test_prediction_columns_that_clash_with_the_inputs_are_renamed() -> None:
    renames = distinct_columns(["label", "class_index", "prob_a"], ["item", "label", "predicted_label"])
    assert renames == {"label": "predicted_predicted_label"}


def test_predict_cli_keeps_the_inputs_label_column_and_names_the_prediction_distinctly(
    dna_model: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Prepare: a CSV of DNA items with the user's own label column
    items = tmp_path / "items.csv"
    pd.DataFrame({"item": _training_items(3), "label": ["mine", "mine", "yours"]}).to_csv(items, index=False)
    out = tmp_path / "predictions.csv"
    # Execute
    code = cli.main(["predict", str(dna_model.folder), str(items), "-o", str(out)])
    # Assert
    assert code == 0
    written = pd.read_csv(out)
    assert list(written.columns) == ["item", "label", "predicted_label", "class_index", "prob_coding",
                                     "prob_intergenic"]
    assert written["label"].tolist() == ["mine", "mine", "yours"]
    assert set(written["predicted_label"]) <= {"coding", "intergenic"}
    assert "label as predicted_label" in capsys.readouterr().out


def test_predict_cli_of_a_dna_model_on_text_fails_in_one_line_and_writes_nothing(
    dna_model: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    items = tmp_path / "reviews.csv"
    pd.DataFrame({"item": ["a fine film", "dull"], "label": ["pos", "neg"]}).to_csv(items, index=False)
    out = tmp_path / "predictions.csv"
    code = cli.main(["predict", str(dna_model.folder), str(items), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("llmqfl: input: letters outside")
    assert not out.exists()


def test_a_model_trained_on_an_extension_feature_source_serves_through_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a registered feature source (GC content per half, as a researcher's module) and a bundle that
    # names it and the module that registers it, as the qfl stage records them
    from llmqfl.data.encoders import AngleEncoder
    from llmqfl.quantum import build_model
    from llmqfl.serving.bundle import save_bundle

    (tmp_path / "gc_source_ext.py").write_text(
        "import numpy as np\n"
        "from llmqfl.registry import register\n\n"
        "@register('encoder', 'gc_halves')\n"
        "class GcHalves:\n"
        "    dna_only = True\n\n"
        "    def raw(self, frame, context):\n"
        "        items = frame['item'].astype(str).tolist()\n"
        "        return np.array([[s[:len(s)//2].count('G') + s[:len(s)//2].count('C'),\n"
        "                          s[len(s)//2:].count('G') + s[len(s)//2:].count('C')] for s in items], float)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    items = _training_items()
    raw = np.array([[s[:12].count("G") + s[:12].count("C"), s[12:].count("G") + s[12:].count("C")] for s in items],
                   dtype=float)
    model = build_model(kind="vqc", n_qubits=2, n_classes=2)
    folder = save_bundle(tmp_path / "model", model=model, weights=np.zeros(model.n_params),
                         encoder=AngleEncoder(2).fit(raw), class_names=["coding", "intergenic"],
                         features={"source": "gc_halves", "extensions": ["gc_source_ext"]},
                         items=items_spec("dna", items))
    # Execute
    bundle = Bundle(folder)
    features = bundle.raw_features(bundle.frame(items[:3]))
    # Assert: the extension's own features, and predictions for every item
    assert np.array_equal(features, raw[:3])
    assert len(bundle.predict(items[:3])) == 3


def test_a_feature_source_nobody_registers_is_one_line_naming_the_bundle(tmp_path: Path) -> None:
    from llmqfl.data.encoders import AngleEncoder
    from llmqfl.quantum import build_model
    from llmqfl.serving.bundle import save_bundle

    items = _training_items()
    model = build_model(kind="vqc", n_qubits=2, n_classes=2)
    folder = save_bundle(tmp_path / "model", model=model, weights=np.zeros(model.n_params),
                         encoder=AngleEncoder(2).fit(np.ones((4, 2)) * np.arange(4)[:, None]),
                         class_names=["a", "b"], features={"source": "gone", "extensions": ["no_such_ext_xyz"]},
                         items=items_spec("dna", items))
    with pytest.raises(DataError) as caught:
        Bundle(folder).predict(items[:2])
    message = str(caught.value)
    assert "feature source 'gone' is not registered" in message and "no_such_ext_xyz" in message
    assert "\n" not in message
