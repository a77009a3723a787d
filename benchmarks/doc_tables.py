"""Rewrite a generated table in a doc: the text between its start and end markers, markers kept."""

from __future__ import annotations

from pathlib import Path


def rewrite_between(path: Path, markers: tuple[str, str], body: str, tool: str) -> None:
    """Put ``body`` between ``markers`` in ``path``; a doc without both markers stops ``tool`` in one line."""
    start, end = markers
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{tool}: {path} has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{body}{end}{tail}")
