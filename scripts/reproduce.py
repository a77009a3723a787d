"""Run every offline experiment, time each, and refresh REPRODUCTION.md from the pipeline's output.

    .venv/bin/python scripts/reproduce.py                 # run (snakemake each), add to dvc.yaml, dvc repro, refresh
    .venv/bin/python scripts/reproduce.py --refresh-only  # only rewrite REPRODUCTION.md from results/
    .venv/bin/python scripts/reproduce.py --backends      # the default pipeline on every offline backend, then refresh
    .venv/bin/python scripts/reproduce.py --sweep         # where does guidance help? (sweep.smk per task), then refresh

The wall time of each experiment goes to results/{exp}/timing.json; REPRODUCTION.md's marked blocks are
rewritten from those files and from results/{exp}/report/claims.md, so every number there traces to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = {
    "default": "config/config.yaml",
    "paper-genomic": "config/experiments/paper-genomic.yaml",
    "paper-tweet": "config/experiments/paper-tweet.yaml",
    "ibm-hardware": "config/experiments/ibm-hardware.yaml",
    "claims-dna": "config/experiments/claims-dna.yaml",
    "claims-text": "config/experiments/claims-text.yaml",
}
# The experiments whose answer.md (primary endpoint, secondary claims after Holm, cost) REPRODUCTION.md shows,
# each with its accuracy-at-equal-cost figure copied to docs/figures/answer-{name}.png
ANSWERS = ("default", "claims-dna", "claims-text")
# The default pipeline on each offline backend: only backend.kind/name change (and the experiment
# name, so that each backend's results and MLflow experiment sit beside the others).
BACKENDS = {
    "default": None,
    "default-aer-noisy": "{kind: aer_noisy, name: FakeManilaV2}",
    "default-fake-manila": "{kind: fake, name: FakeManilaV2}",
    "default-fake-brisbane": "{kind: fake, name: FakeBrisbane}",
}
BIN = Path(sys.executable).parent
# The guidance sweep (sweep.smk): one experiment per task; their tables are joined into one table and
# one figure (docs/figures/sweep.png, committed so that REPRODUCTION.md can show it).
SWEEPS = {"sweep-dna": "config/experiments/sweep-dna.yaml", "sweep-text": "config/experiments/sweep-text.yaml"}
SWEEP_FIGURE = Path("docs/figures/sweep.png")


def run_experiment(name: str, configfile: str, cores: int) -> float:
    """Run one experiment's DAG to its report; return the wall seconds."""
    start = time.perf_counter()
    subprocess.run([str(BIN / "snakemake"), "--cores", str(cores), "--configfile", configfile], cwd=ROOT, check=True)
    seconds = time.perf_counter() - start
    timing = {"experiment": name, "wall_seconds": round(seconds, 1), "cores": os.cpu_count(), "commit": _head()}
    (ROOT / "results" / name / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    return seconds


def _head() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip()


def _run_commit(name: str, fallback: str) -> str:
    """The commit an experiment's results were made by (its timing.json), else ``fallback``."""
    timing = ROOT / "results" / name / "timing.json"
    return (json.loads(timing.read_text()).get("commit") if timing.is_file() else None) or fallback


def run_backend(name: str, backend: str, cores: int) -> None:
    """The default config with ``backend`` (a YAML mapping) and experiment ``name``."""
    command = [str(BIN / "snakemake"), "--cores", str(cores), "--config", f"experiment={name}", f"backend={backend}"]
    subprocess.run(command, cwd=ROOT, check=True)


def backends_table() -> str:
    """Final accuracy, test loss and cost of each arm of the default pipeline, per backend."""
    rows = ["| experiment | backend | arm | test accuracy | test loss (nats) | shots | jobs | qfl wall s |",
            "|---|---|---|---|---|---|---|---|"]
    for name, backend in BACKENDS.items():
        metrics = ROOT / "results" / name / "metrics.json"
        if not metrics.is_file():
            rows.append(f"| {name} | {backend or '{kind: aer}'} | not run yet | | | | | |")
            continue
        timings_file = metrics.parent / "report" / "timings.json"  # measured times are not DVC metrics
        timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
        for arm, m in json.loads(metrics.read_text())["arms"].items():
            wall = timings.get(arm, {}).get("wall_seconds", m.get("wall_seconds"))
            rows.append(f"| {name} | {backend or '{kind: aer}'} | {arm} | {m['test_accuracy']:.3f} | "
                        f"{m['server_loss']:.4f} | {int(m['shots']):,} | {int(m['jobs'])} | "
                        f"{'n/a' if wall is None else f'{wall:.0f}'} |")
    return "\n".join(rows)


def run_sweep(name: str, configfile: str, cores: int) -> None:
    """One task's sweep, timed like an experiment."""
    start = time.perf_counter()
    # --nolock: the sweep writes only under results/{name}/ and reads the shared model assets, so it can
    # run beside `make run` (whose lock covers those assets as its outputs)
    command = [str(BIN / "snakemake"), "-s", "sweep.smk", "--cores", str(cores), "--nolock", "--configfile", configfile]
    subprocess.run(command, cwd=ROOT, check=True)
    (ROOT / "results" / name / "sweep" / "timing.json").write_text(
        json.dumps({"experiment": name, "wall_seconds": round(time.perf_counter() - start, 1),
                    "cores": os.cpu_count()}, indent=2) + "\n"
    )


def sweep_block() -> str:
    """The sweep's table (every task) and its figure, from results/sweep-*/sweep/sweep.csv."""
    from llmqfl.evaluation.sweep_table import combine_figure, combine_markdown, read_tables

    tables = [ROOT / "results" / name / "sweep" / "sweep.csv" for name in SWEEPS]
    done = [t for t in tables if t.is_file()]
    if not done:
        return "_Not run yet: `.venv/bin/python scripts/reproduce.py --sweep`._"
    table = read_tables(done)
    combine_figure(table, ROOT / SWEEP_FIGURE)
    timings = []
    for path in done:
        timing = path.with_name("timing.json")
        if timing.is_file():
            seconds = json.loads(timing.read_text())["wall_seconds"]
            timings.append(f"{path.parents[1].name} {seconds / 60:.1f} min")
    sources = ", ".join(f"`{t.relative_to(ROOT)}`" for t in done)
    missing = [t.parents[1].name for t in tables if not t.is_file()]
    lines = [f"_From {sources}" + (f" ({'; '.join(timings)} here)" if timings else "") + "._"]
    if missing:
        lines.append(f"_Not run yet: {', '.join(missing)}._")
    return "\n".join([*lines, "", combine_markdown(table), f"![sweep]({SWEEP_FIGURE.as_posix()})"])


def _answer_parts(text: str) -> dict[str, str]:
    """The answer block's part per experiment, as it was written (the text before each part's heading included)."""
    match = re.search(r"<!-- BEGIN answer -->\n(.*?)<!-- END answer -->", text, re.S)
    pieces = re.split(r"(?=^_Run [^\n]*\n\n#### Answer: experiment `)|(?=^#### Answer: experiment `[^`]+`\n\n_Not run)",
                      match.group(1) if match else "", flags=re.M)
    parts = {}
    for piece in pieces:
        name = re.search(r"#### Answer: experiment `([^`]+)`", piece)
        if name:
            parts[name.group(1)] = piece.rstrip() + "\n"
    return parts


def answer_block(commit: str, machine: str, before: dict[str, str]) -> str:
    """Each answer experiment's answer.md and its accuracy-at-equal-cost figure (copied into docs/figures/).

    An experiment not run here keeps the part it was written with (``before``), like the timings.
    """
    parts = []
    for name in ANSWERS:
        answer = ROOT / "results" / name / "report" / "answer.md"
        if not answer.is_file():
            parts.append(before.get(name) or f"#### Answer: experiment `{name}`\n\n_Not run yet: `.venv/bin/python "
                         f"scripts/reproduce.py --experiments {name}`._\n")
            continue
        stamp = datetime.fromtimestamp(answer.stat().st_mtime, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        figure = Path("docs/figures") / f"answer-{name}.png"
        shutil.copyfile(ROOT / "results" / name / "report" / "figures" / "cost.png", ROOT / figure)
        parts.append(f"_Run {stamp}, commit {_run_commit(name, commit) or 'unknown'}, {machine}; "
                     f"from `results/{name}/report/answer.md`._"
                     f"\n\n{answer.read_text()}\n![accuracy against circuit executions, {name}]({figure})\n")
    return "\n".join(parts)


def _block_rows(text: str, key: str) -> dict[str, str]:
    """The table rows of a generated block, by their first cell."""
    match = re.search(rf"<!-- BEGIN {re.escape(key)} -->\n(.*?)<!-- END {re.escape(key)} -->", text, re.S)
    rows = [line for line in (match.group(1).splitlines() if match else []) if line.startswith("| ")]
    return {line.split("|")[1].strip(): line for line in rows}


def _replace_block(text: str, key: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- BEGIN {re.escape(key)} -->\n).*?(<!-- END {re.escape(key)} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"REPRODUCTION.md has no block {key}")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def refresh() -> None:
    """Rewrite the timing table and the claims tables of REPRODUCTION.md from results/."""
    path = ROOT / "REPRODUCTION.md"
    text = path.read_text()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    machine = f"{platform.machine()}, {os.cpu_count()} cores, no GPU"
    rows = ["| experiment | wall time here | source |", "|---|---|---|"]
    ran = any((ROOT / "results" / name / "timing.json").is_file() for name in EXPERIMENTS)
    before = _block_rows(text, "timings")  # an experiment not run here keeps the row it was written with
    for name in EXPERIMENTS:
        timing = ROOT / "results" / name / "timing.json"
        if timing.is_file():
            seconds = json.loads(timing.read_text())["wall_seconds"]
            rows.append(f"| {name} | {seconds / 60:.1f} min | `results/{name}/timing.json` |")
        else:
            rows.append(before.get(name, f"| {name} | not run yet | |"))
    # a block whose sources are absent here (a fresh clone) keeps the numbers it was written with
    if ran:
        text = _replace_block(text, "timings", "\n".join(rows))
    if any((ROOT / "results" / name / "metrics.json").is_file() for name in BACKENDS if name != "default"):
        text = _replace_block(text, "backends", backends_table())
    if any((ROOT / "results" / name / "sweep" / "sweep.csv").is_file() for name in SWEEPS):
        text = _replace_block(text, "sweep", sweep_block())
    if any((ROOT / "results" / name / "report" / "answer.md").is_file() for name in ANSWERS):
        text = _replace_block(text, "answer", answer_block(commit.strip(), machine, _answer_parts(text)))
    for name in EXPERIMENTS:
        claims = ROOT / "results" / name / "report" / "claims.md"
        if not claims.is_file():
            continue
        stamp = datetime.fromtimestamp(claims.stat().st_mtime, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        source = f"`results/{name}/report/claims.md`"
        body = f"_Run {stamp}, commit {_run_commit(name, commit.strip()) or 'unknown'}, {machine}; from {source}._\n\n"
        body += re.sub(r"^# ", "#### ", claims.read_text(), flags=re.M)
        text = _replace_block(text, f"claims:{name}", body)
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refresh-only", action="store_true")
    parser.add_argument("--cores", type=int, default=8)
    parser.add_argument("--experiments", nargs="*", default=list(EXPERIMENTS))
    parser.add_argument("--backends", action="store_true", help="run the default pipeline on every offline backend")
    parser.add_argument("--sweep", action="store_true", help="run the guidance sweep on the DNA and text tasks")
    parser.add_argument("--sweeps", nargs="*", default=list(SWEEPS), choices=list(SWEEPS),
                        help="with --sweep: only these tasks (separate invocations can run side by side)")
    args = parser.parse_args()
    if args.sweep:
        for name in args.sweeps:
            run_sweep(name, SWEEPS[name], args.cores)
    elif args.backends:
        for name, backend in BACKENDS.items():
            if backend is not None:
                run_backend(name, backend, args.cores)
    elif not args.refresh_only:
        for name in args.experiments:
            seconds = run_experiment(name, EXPERIMENTS[name], args.cores)
            print(f"{name}: {seconds / 60:.1f} min", flush=True)
        env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
        # dvc.yaml holds the default experiment; the ones just run join it (their stages, then their lock entries)
        subprocess.run([str(BIN / "python"), "-m", "llmqfl.dvc_yaml", "--add", *args.experiments], cwd=ROOT,
                       check=True, env=env)
        subprocess.run([str(BIN / "dvc"), "repro"], cwd=ROOT, check=True, env=env)
    refresh()


if __name__ == "__main__":
    main()
