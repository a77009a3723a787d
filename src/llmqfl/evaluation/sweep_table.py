"""Where does guidance help? The sweep over guidance rule x distillation weight x selection kind.

Each grid point is an llm_guided run (L) with those three settings; it has two comparisons, each paired by
replicate. L - B0: the baseline (B0) with the same selection kind (B0 ignores guidance and distillation).
L - E: the equal_cost arm (E, :data:`llmqfl.contracts.EQUAL_COST`) of this very point, which has the same
selection kind and fraction, reads no LLM (no guidance rule; the distillation weight is irrelevant) and
spends the same total circuit executions as L of the same replicate, spread evenly over the rounds
(:mod:`llmqfl.federated.cost_budget`; its qfl runs take ``--cost-reference`` = this point's L history).
L - B0 mixes "the LLM steered the budget" with "L spent more"; L - E asks whether the LLM helps at equal
quantum cost. Per point the table gives both paired differences in final test accuracy and the ratio L / B0
of circuit evaluations (with E's circuits beside them: E ~ L by construction), each with its 95% interval
over replicates, and verdicts from the accuracy intervals (helps: above 0; hurts: below 0; inconclusive:
straddles; no difference: equal on every replicate). A table of many points tests many comparisons, so each
comparison also carries the paired t-test's p (``p`` for L - B0, ``p_e`` for L - E; the same test as its
interval), its Holm-adjusted p (``p_holm``, ``p_holm_e``) and whether it still clears 0 after that correction
(``holds_after_holm``, ``holds_after_holm_e``: adjusted p < 0.05). Holm's family is every comparison of the
table, L - B0 and L - E together (2 per grid point): one task's rows in its sweep.csv, every task's rows once
:func:`read_tables` joins them. The tasks' tables are joined into one table and one figure by
:func:`combine_markdown` and :func:`combine_figure` (scripts/reproduce.py puts them in REPRODUCTION.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from scipy import stats

from llmqfl.contracts import BASELINE, EQUAL_COST, LLM_GUIDED
from llmqfl.evaluation.stats import CONFIDENCE, Summary, holm, paired_t_test, summarise
from llmqfl.settings import Settings, SweepSettings

BASELINE_RULE = "baseline"
# the L - E comparison's columns come last, so a sweep.csv written before them reads with them empty
E_COLUMNS = ("acc_e", "circuits_e", "n_e", "acc_diff_e", "acc_diff_e_low", "acc_diff_e_high", "verdict_e", "p_e",
             "p_holm_e", "holds_after_holm_e")
COLUMNS = ("task", "selection", "rule", "weight", "n", "acc_l", "acc_b0", "acc_diff", "acc_diff_low",
           "acc_diff_high", "circuits_l", "circuits_b0", "circuits_ratio", "circuits_ratio_low",
           "circuits_ratio_high", "verdict", "p", "p_holm", "holds_after_holm", *E_COLUMNS)
# each row's comparisons: (p column, Holm-adjusted p column, holds-after-Holm column)
COMPARISONS = (("p", "p_holm", "holds_after_holm"), ("p_e", "p_holm_e", "holds_after_holm_e"))
HOLM_ALPHA = 1 - CONFIDENCE


@dataclass(frozen=True)
class Point:
    """One grid point: the llm_guided arm with these settings (rule ``baseline``: the B0 arm).

    ``equal_cost``: the equal_cost arm E of the L point (selection, rule, weight): L's total circuit
    executions of each replicate, spread evenly, no LLM (rule and weight only name the L point it matches).
    """

    selection: str
    rule: str
    weight: float
    equal_cost: bool = False

    def __post_init__(self) -> None:
        if self.equal_cost and self.rule == BASELINE_RULE:
            raise ValueError("an equal_cost point matches an llm_guided point, not the baseline")

    @property
    def id(self) -> str:
        if self.rule == BASELINE_RULE:
            return f"{self.selection}__baseline"
        guided = f"{self.selection}__{self.rule}__w{self.weight:g}"
        return f"{guided}__{EQUAL_COST}" if self.equal_cost else guided

    @property
    def arm(self) -> str:
        if self.equal_cost:
            return EQUAL_COST
        return BASELINE if self.rule == BASELINE_RULE else LLM_GUIDED

    @property
    def baseline(self) -> Point:
        """B0 of this point's selection kind."""
        return Point(self.selection, BASELINE_RULE, 0.0)

    @property
    def guided(self) -> Point:
        """The llm_guided point of these settings (for E: the L point whose cost it spends)."""
        return replace(self, equal_cost=False)

    @property
    def matched(self) -> Point:
        """The equal_cost point E of this llm_guided point."""
        return replace(self, equal_cost=True)


def grid_points(grid: SweepSettings) -> list[Point]:
    """Every guided point of the grid (the ``sweep`` section), then one baseline per selection kind, then each
    guided point's E."""
    guided = [Point(s, r, float(w)) for s, r, w in itertools.product(
        grid.selections, grid.guidance_rules, grid.distillation_weights)]
    return guided + [Point(s, BASELINE_RULE, 0.0) for s in grid.selections] + [p.matched for p in guided]


def point_config(settings: Settings, point: Point, fraction: float) -> Settings:
    """The settings of one grid point: selection kind (with ``fraction``), guidance rule, distillation weight.

    B0 and E keep the config's qfl settings: neither reads guidance nor a teacher (E's budget is its
    ``--cost-reference``, the L point's history). ``.as_config()`` gives the plain config (stage config files).
    """
    updates: dict[str, Any] = {"federation.selection.kind": point.selection, "federation.selection.fraction": fraction}
    if point.arm == LLM_GUIDED:
        updates.update({"qfl.guidance.rule": point.rule, "qfl.distillation.weight": point.weight})
    return settings.with_values(updates)


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
    """One row per guided point: L vs B0 of the same selection and L vs its E, paired by replicate.

    A point whose E has no records (``records`` without its id) gets empty L - E columns.
    """
    rows = []
    for point in points:
        if point.arm != LLM_GUIDED:
            continue
        guided, base = records[point.id], records[point.baseline.id]
        matched = records.get(point.matched.id) or []
        diff = _paired(guided, base, "diff", "final", "test_accuracy")
        ratio = _paired(guided, base, "ratio", "totals", "circuits")
        diff_e = _paired(guided, matched, "diff", "final", "test_accuracy")
        acc_l = summarise([_number(r, "final", "test_accuracy") for r in guided])
        acc_b0 = summarise([_number(r, "final", "test_accuracy") for r in base])
        acc_e = summarise([_number(r, "final", "test_accuracy") for r in matched])
        circ_l = summarise([_number(r, "totals", "circuits") for r in guided])
        circ_b0 = summarise([_number(r, "totals", "circuits") for r in base])
        circ_e = summarise([_number(r, "totals", "circuits") for r in matched])
        rows.append({
            "task": task, "selection": point.selection, "rule": point.rule, "weight": point.weight,
            "n": diff.n if diff else 0,
            "acc_l": _mean(acc_l), "acc_b0": _mean(acc_b0),
            "acc_diff": _mean(diff), "acc_diff_low": _low(diff), "acc_diff_high": _high(diff),
            "circuits_l": _mean(circ_l), "circuits_b0": _mean(circ_b0),
            "circuits_ratio": _mean(ratio), "circuits_ratio_low": _low(ratio), "circuits_ratio_high": _high(ratio),
            "verdict": _verdict(diff),
            "p": paired_t_test(diff.values).p if diff else math.nan,
            "acc_e": _mean(acc_e), "circuits_e": _mean(circ_e), "n_e": diff_e.n if diff_e else 0,
            "acc_diff_e": _mean(diff_e), "acc_diff_e_low": _low(diff_e), "acc_diff_e_high": _high(diff_e),
            "verdict_e": _verdict(diff_e) if matched else "not run",
            "p_e": paired_t_test(diff_e.values).p if diff_e else math.nan,
        })
    return with_holm(rows)


def with_holm(rows: list[dict]) -> list[dict]:
    """``rows`` with each comparison's Holm-adjusted p and whether it holds (adjusted p < 0.05).

    One family: every row's ``p`` (L - B0) and ``p_e`` (L - E) together, 2 per row; a NaN (or absent) p is
    no test and not counted. Adds ``p_holm`` / ``holds_after_holm`` and ``p_holm_e`` / ``holds_after_holm_e``.
    """
    family = [_float(row.get(p)) for p, _, _ in COMPARISONS for row in rows]
    adjusted = holm(family)
    out = [dict(row) for row in rows]
    for i, (_, p_holm, holds) in enumerate(COMPARISONS):
        for row, p in zip(out, adjusted[i * len(rows):(i + 1) * len(rows)], strict=True):
            row[p_holm], row[holds] = p, bool(p < HOLM_ALPHA)
    return out


def family_size(table: pd.DataFrame) -> int:
    """How many comparisons Holm's correction of ``table`` counts: every non-empty ``p`` and ``p_e``."""
    return int(sum(table[p].notna().sum() for p, _, _ in COMPARISONS if p in table.columns))


def _float(value: Any) -> float:
    return math.nan if value is None or pd.isna(value) else float(value)


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
        return "no difference"  # L trained exactly as its comparison (guidance never fired, no distillation)
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
    if pd.isna(value):
        return "-"
    return f"{value:.2g}" if value >= 0.001 else "<0.001"


def _percent(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.1%}"


def _text(value: Any) -> str:
    return "-" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _count(value: Any) -> str:
    return "-" if pd.isna(value) else f"{int(value)}"


def _holds(p_holm: float, holds: Any) -> str:
    return "-" if pd.isna(p_holm) else ("yes" if bool(holds) else "no")


def _ratio(numerator: float, denominator: float) -> str:
    if pd.isna(numerator) or pd.isna(denominator) or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}"


def combine_markdown(table: pd.DataFrame) -> str:
    """One markdown table over every task and grid point: each point's L - B0 and L - E, with their p-values
    Holm-adjusted together over all its comparisons (2 per row: L - B0 and L - E)."""
    m = family_size(table)
    lines = [
        "| task | selection | guidance rule | distillation weight | accuracy L | accuracy B0 | L - B0 accuracy "
        "[95% CI] | circuit evaluations L / B0 [95% CI] | n | guidance | p | "
        f"p Holm ({m} comparisons: L - B0 and L - E together) | holds after Holm | accuracy E (equal cost) | "
        "L - E accuracy [95% CI] | circuit evaluations E / L | n (L - E) | guidance at equal cost | p (L - E) | "
        f"p Holm (L - E, of the same {m}) | holds after Holm (L - E) |",
        "|" + "---|" * 21,
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.task} | {row.selection} | {row.rule} | {row.weight:g} | {_percent(row.acc_l)} | "
            f"{_percent(row.acc_b0)} | {_interval(row.acc_diff, row.acc_diff_low, row.acc_diff_high, percent=True)} | "
            f"{_interval(row.circuits_ratio, row.circuits_ratio_low, row.circuits_ratio_high, percent=False)} | "
            f"{_count(row.n)} | {_text(row.verdict)} | {_p(row.p)} | {_p(row.p_holm)} | "
            f"{_holds(row.p_holm, row.holds_after_holm)} | {_percent(row.acc_e)} | "
            f"{_interval(row.acc_diff_e, row.acc_diff_e_low, row.acc_diff_e_high, percent=True)} | "
            f"{_ratio(row.circuits_e, row.circuits_l)} | {_count(row.n_e)} | {_text(row.verdict_e)} | "
            f"{_p(row.p_e)} | {_p(row.p_holm_e)} | {_holds(row.p_holm_e, row.holds_after_holm_e)} |"
        )
    return "\n".join(lines) + "\n"


FIGURE_PANELS = (("acc_diff", "final accuracy L - B0", 0.0), ("acc_diff_e", "final accuracy L - E (equal cost)", 0.0),
                 ("circuits_ratio", "circuit evaluations L / B0", 1.0))


def combine_figure(table: pd.DataFrame, path: str | Path) -> Path:
    """Accuracy differences L - B0 and L - E and the circuit ratio L / B0 per grid point, one row of panels
    per task, with intervals."""
    tasks = list(dict.fromkeys(table["task"]))
    fig, axes = plt.subplots(len(tasks), len(FIGURE_PANELS), figsize=(15, 2.2 + 2.0 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        rows = table[table["task"] == task].reset_index(drop=True)
        labels = [f"{r.selection.replace('closest_to_server', 'closest')}\n{r.rule} w={r.weight:g}"
                  for r in rows.itertuples()]
        for j, (key, title, ref) in enumerate(FIGURE_PANELS):
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
    """The tasks' sweep.csv files, stacked, with the Holm adjustment redone over every task's comparisons.

    The joined table is read as one family of comparisons (L - B0 and L - E of every row), so each file's
    own adjustment is replaced. A file written before the ``p`` column existed gets it back from its
    t-interval (same test); one written before the L - E columns existed reads with them empty (no test,
    not counted in the family).
    """
    table = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    adjusted = {column for _, p_holm, holds in COMPARISONS for column in (p_holm, holds)}
    table = table.reindex(columns=[c for c in COLUMNS if c not in adjusted])
    for p, mean, n in (("p", "acc_diff", "n"), ("p_e", "acc_diff_e", "n_e")):
        table[p] = [_p_from_interval(r[mean], r[f"{mean}_low"], r[f"{mean}_high"], r[n]) if pd.isna(r[p]) else r[p]
                    for r in table.to_dict("records")]
    return pd.DataFrame(with_holm(table.to_dict("records")), columns=list(COLUMNS))


def _p_from_interval(mean: float, low: float, high: float, n: float) -> float:
    """The paired t-test's p from its symmetric t-interval: the standard error is the half-width over t_crit."""
    if any(math.isnan(float(x)) for x in (mean, low, high, n)) or n < 2:
        return math.nan
    if high == low:
        return 1.0 if mean == 0 else 0.0
    se = (high - low) / 2 / float(stats.t.ppf(0.5 + CONFIDENCE / 2, df=int(n) - 1))
    return float(2 * stats.t.sf(abs(mean) / se, df=int(n) - 1))
