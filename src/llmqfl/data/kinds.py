"""Whether a data set is DNA or text, decided once, explicitly, with the reason written down.

The kind decides everything downstream (k-mers or embeddings, one-hot or LLM features), so it is
never guessed silently: ``data.kind`` (``auto``, ``dna``, ``text``) sets it, and ``auto`` follows
these rules, in order (the decision and its reason go to the data stage's log and ``meta.json``):

* a source with a fixed kind (the embedded data sets, tweet_eval, human_or_worm) keeps it;
* every item is DNA in the IUPAC alphabet (A, C, G, T, N and the ambiguity codes R Y S W K M B D
  H V, any case) and more than half are plain A/C/G/T/N: ``dna``;
* more than half the items are plain DNA but some have letters outside the IUPAC alphabet: refused,
  naming the letters and the first rows (fix them, or set ``data.kind: text``);
* otherwise ``text``.

How an ambiguity letter is encoded (as N: an unknown base) by each DNA encoder: one-hot gives its
position all-zero channels; the k-mer spectrum skips every k-mer that contains it; the LLM's added
DNA tokens (``llm.dna_tokens`` kmer, frames) map its chunk to the ``N`` token; ``overlap`` passes the
letter through the model's own tokenizer as text. ``data.kind: dna`` accepts exactly this alphabet.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from llmqfl.errors import DataError

Kind = Literal["dna", "text"]
KIND_SETTINGS = ("auto", "dna", "text")
AMBIGUITY_CODES = "RYSWKMBDHV"
IUPAC_DNA = "ACGTN" + AMBIGUITY_CODES
MIN_PLAIN_SHARE = 0.5  # auto: more than this share of plain A/C/G/T/N items makes a data set DNA
_PLAIN = re.compile(r"^[ACGTN]+$", re.IGNORECASE)
_IUPAC = re.compile(rf"^[{IUPAC_DNA}]+$", re.IGNORECASE)
_SHOWN = 5


@dataclass(frozen=True)
class KindDecision:
    """The chosen kind and why (``meta.json``: ``kind``, ``kind_reason``)."""

    kind: Kind
    reason: str


def decide_kind(
    items: Sequence[str], *, setting: str = "auto", declared: Kind | None = None, source: str = "data"
) -> KindDecision:
    """The kind of ``items`` under ``data.kind`` = ``setting`` (rules in the module docstring).

    ``declared`` is the kind a source fixes; rows in messages count data rows from 1, in source order.
    """
    if setting not in KIND_SETTINGS:
        raise DataError(f"data.kind: {setting!r} is not one of: {', '.join(KIND_SETTINGS)}")
    if setting == "text":
        return KindDecision("text", "data.kind is text")
    if setting == "dna":
        _require_iupac(items, source, why="data.kind is dna")
        return KindDecision("dna", "data.kind is dna" + _ambiguity_note(items))
    if declared is not None:
        return KindDecision(declared, f"the source {source} is {declared}")
    n = len(items)
    plain = sum(1 for item in items if _PLAIN.match(item))
    if n == 0 or plain <= MIN_PLAIN_SHARE * n:
        return KindDecision("text", f"{n - plain} of {n} items are not plain DNA (A/C/G/T/N)")
    _require_iupac(items, source, why=f"{plain} of {n} items are DNA; set data.kind: text to read them all as text")
    return KindDecision("dna", f"every item is DNA ({plain} of {n} plain A/C/G/T/N)" + _ambiguity_note(items))


def _require_iupac(items: Sequence[str], source: str, *, why: str) -> None:
    bad = [i for i, item in enumerate(items) if not _IUPAC.match(item)]
    if not bad:
        return
    letters = sorted({ch for i in bad for ch in items[i].upper() if ch not in IUPAC_DNA})
    shown = ", ".join(repr(ch) for ch in letters[:10]) + (", ..." if len(letters) > 10 else "")
    rows = ", ".join(str(i + 1) for i in bad[:_SHOWN]) + (", ..." if len(bad) > _SHOWN else "")
    raise DataError(f"{source}: {len(bad)} item(s) have letters outside the IUPAC DNA alphabet ({IUPAC_DNA}): "
                    f"{shown} in data row(s) {rows} ({why})")


def _ambiguity_note(items: Sequence[str]) -> str:
    ambiguous = sum(1 for item in items if not _PLAIN.match(item))
    if not ambiguous:
        return ""
    return f"; {ambiguous} item(s) carry IUPAC ambiguity codes, encoded as unknown bases (N)"
