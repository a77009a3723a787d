"""Report figures (matplotlib, Agg, PNG): one function per figure, one file each.

Every figure is always written, so the Snakemake outputs exist; when its data are missing
(say, no llm_guided arm), the figure says why instead of being left out.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llmqfl.evaluation.answer import accuracy_at_cost, cost_grid
from llmqfl.evaluation.claims import ARM_LABELS, ARMS
from llmqfl.evaluation.history import client_matrix
from llmqfl.evaluation.stats import summarise

FIGURES = ("accuracy", "loss", "maxiter", "cumulative", "idle", "selection", "cost")
COLORS = {"baseline": "#1f77b4", "llm_guided": "#d62728", "budget_matched": "#2ca02c", "equal_cost": "#9467bd",
          "loss_stopping": "#8c564b"}
STYLES = {"baseline": ("o", "-"), "llm_guided": ("s", "--"), "budget_matched": ("^", ":"), "equal_cost": ("D", "-."),
          "loss_stopping": ("v", (0, (1, 1)))}  # readable in greyscale
DPI = 110
Runs = Mapping[str, Sequence[Mapping[str, Any]]]
Histories = Mapping[tuple[str, int], pd.DataFrame]


def draw_figures(
    *, runs: Runs, histories: Histories, out_dir: str | Path, experiment: str, selection_kind: str = "all"
) -> dict[str, Path]:
    """Write every figure of :data:`FIGURES` to ``out_dir/{name}.png``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    painters: dict[str, Callable[[plt.Figure], None]] = {
        "accuracy": lambda fig: _series_panel(fig, runs, "test_accuracy", "server test accuracy", experiment),
        "loss": lambda fig: _series_panel(fig, runs, "server_loss", "server loss (CE, nats, server_val)", experiment),
        "maxiter": lambda fig: _maxiter(fig, histories, experiment),
        "cumulative": lambda fig: _cumulative(fig, runs, experiment),
        "idle": lambda fig: _idle(fig, runs, experiment),
        "selection": lambda fig: _selection(fig, histories, experiment, selection_kind),
        "cost": lambda fig: _cost(fig, runs, experiment),
    }
    paths = {}
    with plt.rc_context({"font.size": 10, "axes.titlesize": 11, "figure.dpi": DPI}):
        for name in FIGURES:
            fig = plt.figure(figsize=(8, 4.8))
            try:
                painters[name](fig)
                paths[name] = out / f"{name}.png"
                fig.savefig(paths[name], dpi=DPI, bbox_inches="tight")
            finally:
                plt.close(fig)
    return paths


def _padded(runs: Sequence[Mapping[str, Any]], key: str, cumulative: bool = False, carry: bool = True) -> np.ndarray:
    """(seed x round) matrix of a per-round series. A run that stopped early keeps its last value (a
    stopped run's accuracy or cumulative cost stays what it was), so the band is over every replicate;
    ``carry=False`` pads with NaN instead, for quantities of the round itself (idle work)."""
    series = [np.asarray([np.nan if v is None else v for v in r["per_round"][key]], dtype=float) for r in runs]
    if cumulative:
        series = [np.cumsum(np.nan_to_num(s)) for s in series]
    width = max(len(s) for s in series)
    matrix = np.full((len(series), width), np.nan)
    for row, values in enumerate(series):
        matrix[row, : len(values)] = values
        if carry and 0 < len(values) < width:
            matrix[row, len(values) :] = values[-1]
    return matrix


def _band(ax: plt.Axes, matrix: np.ndarray, arm: str, x: np.ndarray | None = None) -> None:
    """Mean line and 95% Student-t band over replicates (columns with one value get no band)."""
    rounds = np.arange(1, matrix.shape[1] + 1) if x is None else x
    columns = [summarise([v for v in column if np.isfinite(v)]) for column in matrix.T]
    mean = np.array([np.nan if c is None else c.mean for c in columns])
    low = np.array([np.nan if c is None or c.low is None else c.low for c in columns])
    high = np.array([np.nan if c is None or c.high is None else c.high for c in columns])
    label = f"{ARM_LABELS[arm]} {arm} (n={matrix.shape[0]})"
    marker, line = STYLES[arm]
    ax.plot(rounds, mean, marker=marker, markersize=4, linestyle=line, linewidth=1.6, color=COLORS[arm], label=label)
    if matrix.shape[0] > 1:
        ax.fill_between(rounds, low, high, color=COLORS[arm], alpha=0.2, linewidth=0)


def _cost(fig: plt.Figure, runs: Runs, experiment: str) -> None:
    """Accuracy against cumulative circuit executions: the comparison at equal quantum cost."""
    ax = fig.add_subplot()
    grid = cost_grid(runs)
    drawn = False
    for arm in ARMS:
        if runs.get(arm) and grid.size:
            matrix = np.array([accuracy_at_cost(r, grid) for r in runs[arm]])
            _band(ax, matrix, arm, x=grid)
            drawn = True
    ax.set(xlabel="cumulative circuit executions", ylabel="server test accuracy",
           title=f"{experiment}: accuracy at equal quantum cost (mean; band = 95% t-interval; stopped runs carried)")
    _finish(ax, drawn)


def _series_panel(fig: plt.Figure, runs: Runs, key: str, label: str, experiment: str) -> None:
    ax = fig.add_subplot()
    drawn = False
    for arm in ARMS:
        if runs.get(arm):
            _band(ax, _padded(runs[arm], key), arm)
            drawn = True
    title = f"{experiment}: {label} per round (mean; band = 95% t-interval; stopped runs carried)"
    ax.set(xlabel="round", ylabel=label, title=title)
    _finish(ax, drawn)


def _cumulative(fig: plt.Figure, runs: Runs, experiment: str) -> None:
    left, right = fig.subplots(1, 2)
    drawn = False
    for arm in ARMS:
        if runs.get(arm):
            _band(left, _padded(runs[arm], "circuits", cumulative=True), arm)
            up = _padded(runs[arm], "bytes_up", cumulative=True)
            down = _padded(runs[arm], "bytes_down", cumulative=True)
            _band(right, (up + down) / 1024.0, arm)
            drawn = True
    left.set(xlabel="round", ylabel="cumulative circuit executions", title="circuits")
    right.set(xlabel="round", ylabel="cumulative KiB (up + down)", title="communication")
    fig.suptitle(f"{experiment}: cumulative cost (mean; band = 95% t-interval over replicates)")
    _finish(left, drawn)
    _finish(right, drawn)
    fig.tight_layout()


def _idle(fig: plt.Figure, runs: Runs, experiment: str) -> None:
    left, right = fig.subplots(1, 2)
    drawn = False
    for arm in ARMS:
        if runs.get(arm):
            _band(left, _padded(runs[arm], "idle_circuits", carry=False), arm)
            _band(right, _padded(runs[arm], "idle_seconds", carry=False), arm)
            drawn = True
    left.set(xlabel="round", ylabel="idle work (circuit executions)", title="work short of the slowest client")
    right.set(xlabel="round", ylabel="idle seconds (wall clock)", title="waiting time (load-dependent)")
    fig.suptitle(f"{experiment}: idle per round, summed over clients (mean; band = 95% t-interval, runs reaching it)")
    _finish(left, drawn)
    _finish(right, drawn)
    fig.tight_layout()


def _maxiter(fig: plt.Figure, histories: Histories, experiment: str) -> None:
    seeds = sorted(s for a, s in histories if a == "llm_guided")[:3]
    if not seeds:
        _empty(fig, f"{experiment}: maxiter per client", "no llm_guided run")
        return
    axes = np.atleast_1d(fig.subplots(1, len(seeds), sharey=True))
    for ax, seed in zip(axes, seeds, strict=True):
        matrix, rounds, clients = client_matrix(histories[("llm_guided", seed)], "maxiter")
        cmap = plt.get_cmap("viridis", max(len(clients), 2))
        for column, client in enumerate(clients):
            ax.plot(rounds, matrix[:, column], marker="o", markersize=2.5, color=cmap(column), label=f"client {client}")
        ax.set(xlabel="round", title=f"seed {seed}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("COBYLA maxiter")
    axes[-1].legend(fontsize=7, ncol=2, loc="best")
    fig.suptitle(f"{experiment}: maxiter chosen per client and round (L llm_guided)")
    fig.tight_layout()


def _selection(fig: plt.Figure, histories: Histories, experiment: str, kind: str) -> None:
    arm = "llm_guided" if any(a == "llm_guided" for a, _ in histories) else next(iter(sorted(histories)), (None,))[0]
    if arm is None:
        _empty(fig, f"{experiment}: client selection", "no QFL history")
        return
    stacks = []
    for (name, _seed), history in sorted(histories.items()):
        if name == arm:
            frame = history.assign(selected=history["selected"].astype(float))
            matrix, _rounds, clients = client_matrix(frame, "selected")
            stacks.append(matrix)
    width = max(m.shape[0] for m in stacks)
    padded = np.full((len(stacks), width, stacks[0].shape[1]), np.nan)
    for index, matrix in enumerate(stacks):
        padded[index, : matrix.shape[0]] = matrix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        share = np.nanmean(padded, 0)
    ax = fig.add_subplot()
    image = ax.imshow(share.T, aspect="auto", cmap="Blues", vmin=0, vmax=1, origin="lower",
                      extent=(0.5, width + 0.5, -0.5, share.shape[1] - 0.5))
    fig.colorbar(image, ax=ax, label=f"share of {len(stacks)} seed(s) selected")
    title = f"{experiment}: clients aggregated per round ({ARM_LABELS[arm]} {arm}, selection {kind})"
    ax.set(xlabel="round", ylabel="client", title=title)
    ax.set_yticks(range(share.shape[1]), [str(c) for c in clients])
    ax.set_xticks(range(1, width + 1))


def _empty(fig: plt.Figure, title: str, why: str) -> None:
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, f"not available: {why}", ha="center", va="center", fontsize=12)
    ax.set(title=title, xticks=[], yticks=[])


def _finish(ax: plt.Axes, drawn: bool) -> None:
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "not available: no runs", ha="center", va="center", transform=ax.transAxes)
