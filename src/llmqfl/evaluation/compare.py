"""Experiments side by side, or one experiment's arms: the numbers ``llmqfl compare EXP...`` prints and plots.

Reads each experiment's per-run eval records (``results/{exp}/eval/{arm}/seed_{s}.json``) and, when
present, its DVC metrics (``results/{exp}/metrics.json``: the claims' verdicts). Per arm and
experiment: final test accuracy and loss, rounds run, circuit evaluations and uplink bytes, each a
mean over the seeds found. An experiment may be a name under ``results/`` or a folder path, so two
backends or two DVC experiments checked out side by side compare the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmqfl import layout
from llmqfl.contracts import ARMS as ARM_ORDER
from llmqfl.errors import DataError
from llmqfl.io import atomic_path, read_json

# (row label, how to read it from an eval record, format)
METRICS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("test accuracy", ("final", "test_accuracy"), "{:.3f}"),
    ("test loss", ("final", "test_loss"), "{:.4f}"),
    ("rounds", ("rounds_run",), "{:.1f}"),
    ("circuit evaluations", ("totals", "circuits"), "{:,.0f}"),
    ("uplink bytes", ("totals", "bytes_up"), "{:,.0f}"),
)


def experiment_dir(name: str, results: str | Path = "results") -> Path:
    """``results/{name}``, or ``name`` itself when it is a folder with an ``eval/`` inside."""
    as_path = Path(name)
    if (as_path / layout.EVAL).is_dir():
        return as_path
    return Path(results) / name


def load_experiment(name: str, results: str | Path = "results") -> dict[str, Any]:
    """Eval records by arm (sorted by seed) and the DVC metrics of one experiment."""
    folder = experiment_dir(name, results)
    eval_dir = folder / layout.EVAL
    if not eval_dir.is_dir():
        raise DataError(f"experiment {name!r}: no eval records under {eval_dir} (run it first: llmqfl run)")
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(eval_dir.glob(f"*/{layout.seed_dir('*')}.json")):
        runs.setdefault(path.parent.name, []).append(read_json(path))
    if not runs:
        raise DataError(f"experiment {name!r}: {eval_dir} holds no {layout.seed_dir('*')}.json records")
    for records in runs.values():
        records.sort(key=lambda r: int(r.get("seed", 0)))
    metrics_path = folder / layout.METRICS
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    return {"name": name, "folder": str(folder), "runs": runs, "metrics": metrics}


def _lookup(record: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = record
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _mean(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return sum(found) / len(found) if found else None


def summarise(experiments: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{"arms": [...], "experiments": [...], "rows": [{"metric", "arm", "values": {exp: mean}}], "verdicts"}``."""
    present = {arm for e in experiments for arm in e["runs"]}
    arms = [a for a in ARM_ORDER if a in present] + sorted(present - set(ARM_ORDER))
    names = [e["name"] for e in experiments]
    rows = []
    for label, path, fmt in METRICS:
        for arm in arms:
            values = {e["name"]: _mean([_lookup(r, path) for r in e["runs"].get(arm, [])]) for e in experiments}
            rows.append({"metric": label, "arm": arm, "format": fmt, "values": values})
    claim_ids = sorted({c for e in experiments for c in (e["metrics"].get("claims") or {})})
    verdicts = {
        claim: {e["name"]: (e["metrics"].get("claims") or {}).get(claim, {}).get("verdict") for e in experiments}
        for claim in claim_ids
    }
    seeds = {e["name"]: sorted({int(r["seed"]) for rs in e["runs"].values() for r in rs}) for e in experiments}
    return {"arms": arms, "experiments": names, "rows": rows, "verdicts": verdicts, "seeds": seeds}


VERDICT_TEXT = {1: "holds", 0: "does not hold", 2: "inconclusive", -1: "not measurable", None: "—"}


def verdict_text(value: Any) -> str:
    """A claim's verdict as words: metrics.json holds the words; older files hold the codes."""
    if isinstance(value, str):
        return value
    return VERDICT_TEXT.get(value, str(value))


def _cell(row: dict[str, Any], name: str) -> str:
    value = row["values"][name]
    return row["format"].format(value) if value is not None else "—"


def render_table(summary: dict[str, Any]) -> str:
    """A plain-text table: one row per (metric, arm), one column per experiment, then the claims' verdicts.

    One experiment: one row per metric, one column per arm (its arms side by side).
    """
    names = summary["experiments"]
    if len(names) == 1:
        return _arms_table(summary)
    header = ["metric", "arm", *names]
    body = []
    for row in summary["rows"]:
        body.append([row["metric"], row["arm"], *(_cell(row, n) for n in names)])
    for claim, by_exp in summary["verdicts"].items():
        body.append([f"claim {claim}", "", *(verdict_text(by_exp[n]) for n in names)])
    body.append(["seeds", "", *(",".join(map(str, summary["seeds"][n])) or "—" for n in names)])
    return _layout(header, body, left=2)


def _arms_table(summary: dict[str, Any]) -> str:
    name, arms = summary["experiments"][0], summary["arms"]
    header = [f"metric ({name})", *arms]
    body = []
    for metric in dict.fromkeys(row["metric"] for row in summary["rows"]):
        by_arm = {row["arm"]: _cell(row, name) for row in summary["rows"] if row["metric"] == metric}
        body.append([metric, *(by_arm[arm] for arm in arms)])
    for claim, by_exp in summary["verdicts"].items():
        body.append([f"claim {claim}", verdict_text(by_exp[name]), *([""] * (len(arms) - 1))])
    body.append(["seeds", ",".join(map(str, summary["seeds"][name])) or "—", *([""] * (len(arms) - 1))])
    return _layout(header, body, left=1)


def _layout(header: Sequence[str], body: Sequence[Sequence[str]], left: int) -> str:
    """Columns padded to their widest cell; the first ``left`` columns flush left, numbers flush right."""
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = [str(c).ljust(w) for c, w in zip(cells[:left], widths[:left], strict=True)]
        rest = [str(c).rjust(w) for c, w in zip(cells[left:], widths[left:], strict=True)]
        return "  ".join(first + rest).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)]) + "\n"


def draw(experiments: Sequence[dict[str, Any]], summary: dict[str, Any], out: str | Path) -> Path:
    """Per-round test accuracy of every arm (one panel per arm, a line per experiment) and final-accuracy bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = summary["arms"]
    fig, axes = plt.subplots(1, len(arms) + 1, figsize=(4 * (len(arms) + 1), 3.4), squeeze=False)
    for ax, arm in zip(axes[0][:-1], arms, strict=True):
        for e in experiments:
            for record in e["runs"].get(arm, []):
                per_round = record.get("per_round") or {}
                if per_round.get("round"):
                    label = f"{e['name']} s{record.get('seed')}"
                    ax.plot(per_round["round"], per_round["test_accuracy"], marker="o", ms=3, label=label)
        ax.set_title(arm)
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy")
        if ax.lines:
            ax.legend(fontsize=7)
    bars = axes[0][-1]
    width = 0.8 / max(1, len(summary["experiments"]))
    for i, name in enumerate(summary["experiments"]):
        values = []
        for arm in arms:
            row = next(r for r in summary["rows"] if r["metric"] == "test accuracy" and r["arm"] == arm)
            values.append(row["values"][name] if row["values"][name] is not None else math.nan)
        bars.bar([a + i * width for a in range(len(arms))], values, width=width, label=name)
    bars.set_xticks([a + 0.4 - width / 2 for a in range(len(arms))], arms, fontsize=8)
    bars.set_ylabel("final test accuracy (mean over seeds)")
    bars.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return out


def default_figure(names: Sequence[str], results: str | Path = "results") -> Path:
    """Where the figure goes without ``-o``: beside the results, never into the current folder."""
    return Path(results) / "compare" / ("-".join(Path(n).name for n in names) + ".png")


def compare_experiments(names: Sequence[str], results: str | Path = "results") -> dict[str, Any]:
    """Load and summarise; the API behind ``llmqfl compare`` (``render_table`` prints the result)."""
    if not names:
        raise DataError("compare needs at least one experiment")
    experiments = [load_experiment(n, results) for n in names]
    summary = summarise(experiments)
    summary["loaded"] = experiments
    return summary
