"""Where does guidance help? The sweep over guidance rule x distillation weight x selection kind.

Each grid point is an llm_guided run with those three settings; its comparison is the baseline
(B0) with the same selection kind, same replicate (B0 ignores guidance and distillation). Per point
the table gives the paired differences L - B0 in final test accuracy and the ratio L / B0 of
circuit evaluations, each with its 95% interval over replicates, and a verdict from the accuracy
interval (helps: above 0; hurts: below 0; inconclusive: straddles; no difference: L equals B0 on every
replicate). A table of many points tests many comparisons, so each row also carries the paired t-test's p
(``p``, the same test as the interval), its Holm-adjusted p over every row of the table (``p_holm``: one
task's rows in its sweep.csv, every task's rows once :func:`read_tables` joins them) and whether the row
still clears 0 after that correction (``holds_after_holm``: p_holm < 0.05). The tasks' tables are joined
into one table and one figure by :func:`combine_markdown` and :func:`combine_figure` (scripts/reproduce.py
puts them in REPRODUCTION.md).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from scipy import stats

from llmqfl.evaluation.stats import CONFIDENCE, Summary, holm, paired_t_test, summarise

BASELINE_RULE = "baseline"
COLUMNS = ("task", "selection", "rule", "weight", "n", "acc_l", "acc_b0", "acc_diff", "acc_diff_low",
           "acc_diff_high", "circuits_l", "circuits_b0", "circuits_ratio", "circuits_ratio_low",
           "circuits_ratio_high", "verdict", "p", "p_holm", "holds_after_holm")
HOLM_ALPHA = 1 - CONFIDENCE


@dataclass(frozen=True)
class Point:
    """One grid point: the llm_guided arm with these settings (rule ``baseline``: the B0 arm)."""

    selection: str
    rule: str
    weight: float

    @property
    def id(self) -> str:
        if self.rule == BASELINE_RULE:
            return f"{self.selection}__baseline"
        return f"{self.selection}__{self.rule}__w{self.weight:g}"

    @property
    def arm(self) -> str:
        return "baseline" if self.rule == BASELINE_RULE else "llm_guided"


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[Point]:
    """Every guided point of the grid, then one baseline per selection kind."""
    guided = [Point(s, r, float(w)) for s, r, w in itertools.product(
        grid["selections"], grid["guidance_rules"], grid["distillation_weights"])]
    return guided + [Point(s, BASELINE_RULE, 0.0) for s in grid["selections"]]


def point_config(config: Mapping[str, Any], point: Point, fraction: float) -> dict[str, Any]:
    """The config of one grid point: selection kind (with ``fraction``), guidance rule, distillation weight."""
    resolved = copy.deepcopy(dict(config))
    resolved["federation"]["selection"] = {"kind": point.selection, "fraction": fraction}
    if point.rule != BASELINE_RULE:
        resolved["qfl"]["guidance"]["rule"] = point.rule
        resolved["qfl"]["distillation"]["weight"] = point.weight
    return resolved


def _number(record: Mapping[str, Any], *path: str) -> float:
    node: Any = record
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return math.nan if node is None else float(node)


def _paired(
    guided: Sequence[Mapping[str, Any]], base: Sequence[Mapping[str, Any]], how: str, *path: str
) -> Summary | None:
    theirs = {int(r["seed"]): _number(r, *path) for r in base}
    values = []
    for record in guided:
        mine, other = _number(record, *path), theirs.get(int(record["seed"]), math.nan)
        values.append(mine - other if how == "diff" else (mine / other if other else math.nan))
    return summarise(values)


def point_rows(task: str, points: Sequence[Point], records: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict]:
    """One row per guided point: L vs B0 of the same selection, paired by replicate."""
    rows = []
    for point in points:
        if point.rule == BASELINE_RULE:
            continue
        guided, base = records[point.id], records[Point(point.selection, BASELINE_RULE, 0.0).id]
        diff = _paired(guided, base, "diff", "final", "test_accuracy")
        ratio = _paired(guided, base, "ratio", "totals", "circuits")
        acc_l = summarise([_number(r, "final", "test_accuracy") for r in guided])
        acc_b0 = summarise([_number(r, "final", "test_accuracy") for r in base])
        circ_l = summarise([_number(r, "totals", "circuits") for r in guided])
        circ_b0 = summarise([_number(r, "totals", "circuits") for r in base])
        rows.append({
            "task": task, "selection": point.selection, "rule": point.rule, "weight": point.weight,
            "n": diff.n if diff else 0,
            "acc_l": _mean(acc_l), "acc_b0": _mean(acc_b0),
            "acc_diff": _mean(diff), "acc_diff_low": _low(diff), "acc_diff_high": _high(diff),
            "circuits_l": _mean(circ_l), "circuits_b0": _mean(circ_b0),
            "circuits_ratio": _mean(ratio), "circuits_ratio_low": _low(ratio), "circuits_ratio_high": _high(ratio),
            "verdict": _verdict(diff),
            "p": paired_t_test(diff.values).p if diff else math.nan,
        })
    return with_holm(rows)


def with_holm(rows: list[dict]) -> list[dict]:
    """``rows`` with ``p_holm`` (Holm over every row's ``p``) and ``holds_after_holm`` (p_holm < 0.05)."""
    adjusted = holm([row["p"] for row in rows])
    return [{**row, "p_holm": p, "holds_after_holm": bool(p < HOLM_ALPHA)}
            for row, p in zip(rows, adjusted, strict=True)]


def _mean(s: Summary | None) -> float:
    return math.nan if s is None else s.mean


def _low(s: Summary | None) -> float:
    return math.nan if s is None or s.low is None else s.low


def _high(s: Summary | None) -> float:
    return math.nan if s is None or s.high is None else s.high


def _verdict(diff: Summary | None) -> str:
    if diff is None or not diff.has_interval:
        return "no interval"
    if diff.low == diff.high == 0:
        return "no difference"  # L trained exactly as B0 (guidance never fired, no distillation)
    if diff.low > 0:
        return "helps"
    if diff.high < 0:
        return "hurts"
    return "inconclusive"


def _interval(mean: float, low: float, high: float, *, percent: bool) -> str:
    scale, unit = (100.0, " pt") if percent else (1.0, "")
    if math.isnan(mean):
        return "-"
    if math.isnan(low):
        return f"{mean * scale:+.1f}{unit}" if percent else f"{mean:.2f}"
    if percent:
        return f"{mean * scale:+.1f} [{low * scale:+.1f}, {high * scale:+.1f}]{unit}"
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def _p(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2g}" if value >= 0.001 else "<0.001"


def combine_markdown(table: pd.DataFrame) -> str:
    """One markdown table over every task and grid point, with its p-values Holm-adjusted over all its rows."""
    m = int(table["p"].notna().sum())
    lines = [
        "| task | selection | guidance rule | distillation weight | accuracy L | accuracy B0 | L - B0 accuracy "
        f"[95% CI] | circuit evaluations L / B0 [95% CI] | n | guidance | p | p Holm ({m} comparisons) "
        "| holds after Holm |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.task} | {row.selection} | {row.rule} | {row.weight:g} | {row.acc_l:.1%} | {row.acc_b0:.1%} | "
            f"{_interval(row.acc_diff, row.acc_diff_low, row.acc_diff_high, percent=True)} | "
            f"{_interval(row.circuits_ratio, row.circuits_ratio_low, row.circuits_ratio_high, percent=False)} | "
            f"{row.n} | {row.verdict} | {_p(row.p)} | {_p(row.p_holm)} | {'yes' if row.holds_after_holm else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def combine_figure(table: pd.DataFrame, path: str | Path) -> Path:
    """Accuracy difference and circuit ratio per grid point, one row of panels per task, with intervals."""
    tasks = list(dict.fromkeys(table["task"]))
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 2.2 + 2.0 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        rows = table[table["task"] == task].reset_index(drop=True)
        labels = [f"{r.selection.replace('closest_to_server', 'closest')}\n{r.rule} w={r.weight:g}"
                  for r in rows.itertuples()]
        for j, (key, title, ref) in enumerate((("acc_diff", "final accuracy L - B0", 0.0),
                                                ("circuits_ratio", "circuit evaluations L / B0", 1.0))):
            ax = axes[i][j]
            mean = rows[key].to_numpy(dtype=float)
            low = (mean - rows[f"{key}_low"].to_numpy(dtype=float))
            high = (rows[f"{key}_high"].to_numpy(dtype=float) - mean)
            x = range(len(rows))
            ax.errorbar(x, mean, yerr=[pd.Series(low).fillna(0), pd.Series(high).fillna(0)], fmt="o", capsize=3)
            ax.axhline(ref, color="grey", lw=0.8, ls="--")
            ax.set_xticks(list(x), labels, fontsize=6, rotation=60, ha="right")
            ax.set_title(f"{task}: {title} (95% CI)", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def read_tables(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The tasks' sweep.csv files, stacked, with ``p_holm`` adjusted again over every task's rows.

    The joined table is read as one family of comparisons, so each file's own adjustment is replaced.
    A file written before the ``p`` column existed gets it back from its t-interval (same test).
    """
    table = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    if "p" not in table.columns:
        table["p"] = math.nan
    table["p"] = [_p_from_interval(r.acc_diff, r.acc_diff_low, r.acc_diff_high, r.n) if pd.isna(r.p) else r.p
                  for r in table.itertuples(index=False)]
    table = table.reindex(columns=[c for c in COLUMNS if c not in ("p_holm", "holds_after_holm")])
    return pd.DataFrame(with_holm(table.to_dict("records")), columns=list(COLUMNS))


def _p_from_interval(mean: float, low: float, high: float, n: float) -> float:
    """The paired t-test's p from its symmetric t-interval: the standard error is the half-width over t_crit."""
    if any(math.isnan(float(x)) for x in (mean, low, high, n)) or n < 2:
        return math.nan
    if high == low:
        return 1.0 if mean == 0 else 0.0
    se = (high - low) / 2 / float(stats.t.ppf(0.5 + CONFIDENCE / 2, df=int(n) - 1))
    return float(2 * stats.t.sf(abs(mean) / se, df=int(n) - 1))
