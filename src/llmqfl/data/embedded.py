"""The small real datasets committed to ``data/`` (see data/README.md for provenance)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from llmqfl.config import PROJECT_ROOT
from llmqfl.data.labelled import Kind, LabelledData, from_named_labels
from llmqfl.errors import DataError

# the checkout's data/ (source tree or editable install); an installed wheel reads ./data of the
# working directory the workflow runs in
DATA_DIR = PROJECT_ROOT / "data" if (PROJECT_ROOT / "data").is_dir() else Path("data")


@dataclass(frozen=True)
class EmbeddedDataset:
    """One committed CSV (columns ``item,label``; label = class name) and its fixed class order."""

    name: str
    kind: Kind
    classes: tuple[str, ...]

    @property
    def path(self) -> Path:
        return DATA_DIR / f"{self.name}.csv"


EMBEDDED: dict[str, EmbeddedDataset] = {
    d.name: d
    for d in (
        EmbeddedDataset("coding_vs_intergenic", "dna", ("coding", "intergenic")),
        EmbeddedDataset("splice", "dna", ("EI", "IE", "N")),
        EmbeddedDataset("rotten_tomatoes", "text", ("fresh", "plot", "rotten")),
    )
}


def load_embedded(name: str) -> LabelledData:
    """Read one embedded dataset; a missing or damaged file is a :class:`DataError` naming it."""
    if name not in EMBEDDED:
        raise DataError(f"data.source: {name!r} is not an embedded dataset ({', '.join(EMBEDDED)})")
    spec = EMBEDDED[name]
    try:
        frame = pd.read_csv(spec.path, dtype=str, keep_default_na=False)
    except OSError as exc:
        raise DataError(f"embedded dataset {name}: cannot read {spec.path}: {exc.strerror or exc}") from exc
    if list(frame.columns) != ["item", "label"]:
        raise DataError(f"embedded dataset {name}: {spec.path} must have columns item,label")
    return from_named_labels(frame["item"], frame["label"], source=name, classes=spec.classes, kind=spec.kind)
