"""The two steps around a multi-site Flower run that the ``qfl`` stage does by itself on one machine.

    python -m llmqfl.stages.flower_sites bundles QFL-STAGE-ARGS --out-dir BUNDLES
    python -m llmqfl.stages.flower_sites collect --bundles BUNDLES --out-dir OUT

``bundles`` takes the ``qfl`` stage's arguments (``--config``, ``--arm``, ``--seed``, the input
folders), checks every input as the stage does and writes ``server.pkl``, one ``client_{k}.pkl``
per client and the Flower app folder ``app/`` into ``--out-dir``; each site gets only its own
client file. Sites that keep their data (``docs/federation.md``) use ``server`` instead of ``bundles``:

    python -m llmqfl.stages.flower_sites server --config CFG --arm A --seed S --data-dir DATA --out-dir BUNDLES
    python -m llmqfl.stages.flower_sites site --config CFG --arm A --seed S --client K \
        --agreement BUNDLES/agreement.pkl --partition SITE/client_K.parquet --distill-dir SITE/distill \
        --out SITE/client_K.pkl

``server`` reads only the coordinator's ``meta.json``, ``server_val`` and ``test`` sets and writes
``server.pkl``, ``agreement.pkl`` (the encoder every site uses) and the Flower apps ``app/`` (QFL)
and ``lora_app/`` (federated LoRA, :mod:`llmqfl.federated.flower.lora`); ``site`` runs at each site on its
own files. ``collect`` turns the ServerApp's result in ``OUT`` into the stage's files
(``history.parquet``, ``weights.npy``, ``accounting.json``). Step by step: ``docs/federation.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from llmqfl.errors import ConfigError, DataError
from llmqfl.settings import Settings
from llmqfl.stages._cli import run_stage, seed_runs


def _bundles(args: argparse.Namespace, settings: Settings) -> None:
    from llmqfl.federated import run
    from llmqfl.federated.flower.bundles import write_bundles
    from llmqfl.federated.flower.deployment import write_app
    from llmqfl.stages.qfl import PATH_OPTIONS, paths_of

    if len(args.seed) != 1:
        raise ConfigError(f"--seed: bundles are written for one seed at a time, got {args.seed}")
    [(seed, seed_args)] = seed_runs(args, PATH_OPTIONS)
    prepared = run.prepare(paths_of(seed_args), settings, args.arm, seed)
    written = write_bundles(prepared, args.out_dir)
    write_app(args.out_dir / "app")
    print("\n".join(f"{name}: {path}" for name, path in written.items()))


def _server(args: argparse.Namespace, settings: Settings) -> None:
    """The coordinator's side of sites that keep their data: server.pkl, agreement.pkl and app/."""
    from llmqfl.federated.flower.deployment import write_app
    from llmqfl.federated.flower.sites import write_server

    written = write_server(settings, args.arm, args.seed, args.data_dir, args.out_dir)
    write_app(args.out_dir / "app")
    write_app(args.out_dir / "lora_app", "lora")  # the sites' federated LoRA rounds (llm.federated_rounds > 0)
    print("\n".join(f"{name}: {path}" for name, path in written.items()))


def _site(args: argparse.Namespace, settings: Settings) -> None:
    """One site's bundle from its own partition and its own teacher (run at the site)."""
    from llmqfl.federated.flower.sites import load_agreement, write_site

    agreement = load_agreement(args.agreement)
    print(write_site(settings, args.arm, args.seed, args.client, agreement, args.partition, args.distill_dir, args.out))


def _parser(prog: str, *, site: bool) -> argparse.ArgumentParser:
    from llmqfl.stages._cli import stage_parser

    p = stage_parser(prog, __doc__ or "")
    p.add_argument("--arm", required=True)
    p.add_argument("--seed", type=int, default=0)
    if site:
        p.add_argument("--client", type=int, required=True)
        p.add_argument("--agreement", type=Path, required=True, help="agreement.pkl from the coordinator")
        p.add_argument("--partition", type=Path, required=True, help="the site's own client_K.parquet")
        p.add_argument("--distill-dir", type=Path, help="the site's own distill stage output (llm_guided)")
        p.add_argument("--out", type=Path, required=True, help="the site's bundle, client_K.pkl")
    else:
        p.add_argument("--data-dir", type=Path, required=True, help="the coordinator's meta.json, server_val, test")
        p.add_argument("--out-dir", type=Path, required=True)
    return p


def collect(bundles: Path, out_dir: Path) -> list[Path]:
    """The stage's output files from a finished Flower run's ``flower_result.pkl`` in ``out_dir``."""
    from llmqfl.federated import run
    from llmqfl.federated.accounting import accounting_summary
    from llmqfl.federated.flower.bundles import load_server
    from llmqfl.federated.flower.launch import transport_summary
    from llmqfl.federated.flower.server_app import RESULT_FILE, load_outcome

    if not (out_dir / RESULT_FILE).is_file():
        raise DataError(f"{out_dir / RESULT_FILE}: missing (the ServerApp writes it when the run ends)")
    server, outcome = load_server(bundles), load_outcome(out_dir)
    result = outcome.result
    accounting = accounting_summary(result.history, arm=server.arm, seed=server.seed, stop_reason=result.stop_reason)
    accounting["transport"] = transport_summary(outcome)
    if server.plan.privacy is not None:  # Flower's DP wrapper aggregated (federated/flower/dp.py)
        from llmqfl.federated.privacy import accounting_entry

        accounting["privacy"] = accounting_entry(server.plan.privacy, result.rounds_run, outcome.privacy)
    return run.write_outputs(out_dir, result, accounting)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bundles"]:
        from llmqfl.stages.qfl import build_parser

        return run_stage("flower-bundles", build_parser(), _bundles, argv[1:])
    if argv[:1] == ["server"]:
        return run_stage("flower-server", _parser("flower-server", site=False), _server, argv[1:])
    if argv[:1] == ["site"]:
        return run_stage("flower-site", _parser("flower-site", site=True), _site, argv[1:])
    if argv[:1] == ["collect"]:
        parser = argparse.ArgumentParser(prog="llmqfl.stages.flower_sites collect")
        parser.add_argument("--bundles", required=True, type=Path)
        parser.add_argument("--out-dir", required=True, type=Path)
        args = parser.parse_args(argv[1:])
        try:
            for path in collect(args.bundles, args.out_dir):
                print(path)
        except DataError as exc:
            print(f"llmqfl flower collect: {exc}", file=sys.stderr)
            return 2
        return 0
    print("usage: python -m llmqfl.stages.flower_sites {bundles,server,site,collect} ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
