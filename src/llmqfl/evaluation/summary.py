"""The arms side by side: what ``make run`` prints at its end (accuracy, rounds, circuits, uplink)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llmqfl.evaluation.claims import ARM_LABELS, ARMS
from llmqfl.evaluation.render import lookup
from llmqfl.evaluation.stats import Summary, bootstrap_ci, summarise

# (column, dotted path in an eval record, percent?, a count?) counts get percentile-bootstrap intervals, which
# stay inside their support (a t-interval of rounds run [7, 7, 2] reaches below 2)
COLUMNS: tuple[tuple[str, str, bool, bool], ...] = (
    ("test accuracy", "final.test_accuracy", True, False),
    ("rounds", "rounds_run", False, True),
    ("circuit evaluations", "totals.circuits", False, True),
    ("uplink bytes", "totals.bytes_up", False, True),
)


def _summary(values: Sequence[Any], count: bool) -> Summary | None:
    summary = summarise(values)
    if summary is None or not count or not summary.has_interval:
        return summary
    low, high = bootstrap_ci(list(summary.values))
    return Summary(summary.mean, low, high, summary.n, summary.values)


def _cell(summary: Summary | None, percent: bool) -> str:
    if summary is None:
        return "-"
    scale, suffix = (100.0, "%") if percent else (1.0, "")

    def show(x: float) -> str:
        x *= scale
        return f"{x:,.0f}{suffix}" if abs(x) >= 100 else f"{x:.3g}{suffix}"

    if not summary.has_interval:
        return f"{show(summary.mean)} (n=1)"
    return f"{show(summary.mean)} [{show(summary.low)}, {show(summary.high)}]"


def arms_table(runs: Mapping[str, Sequence[Mapping[str, Any]]], *, scope: str = "quantum_init") -> str:
    """A fixed-width table: one row per arm, mean [95% interval] over replicates per column."""
    arms = [a for a in ARMS if runs.get(a)]
    if not arms:
        return "no evaluated runs yet"
    rows = [["arm", *[name for name, _, _, _ in COLUMNS]]]
    for arm in arms:
        cells = [f"{ARM_LABELS[arm]} {arm}"]
        cells += [_cell(_summary([lookup(r, path) for r in runs[arm]], count), pct) for _, path, pct, count in COLUMNS]
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    n = max(len(runs[a]) for a in arms)
    lines.append(f"mean [95% interval: t for accuracy, percentile bootstrap for counts] over {n} replicate(s), "
                 f"replicate scope {scope}")
    return "\n".join(lines)
