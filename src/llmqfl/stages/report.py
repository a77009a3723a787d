"""The report: claims.md (one row per paper claim, verdicts by code), answer.md, both as HTML, figures, DVC metrics
(numbers and verdicts in words; measured times in report/timings.json).

python -m llmqfl.stages.report --config JSON --eval-dir results/{exp}/eval --qfl-dir results/{exp}/qfl \
    --distill-dir results/{exp}/distill [--data-dir results/{exp}/data] \
    [--distill-full-dir results/{exp}/distill_full] --out-dir results/{exp}/report \
    --metrics results/{exp}/metrics.json
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np

from llmqfl import layout, tracking
from llmqfl.evaluation.answer import build_answer, teacher_summary
from llmqfl.evaluation.claims import VERDICT_CODES, Evidence, evaluate_claims
from llmqfl.evaluation.collect import load_data_info, load_distill, load_feature_ceilings, load_histories, load_runs
from llmqfl.evaluation.figures import draw_figures
from llmqfl.evaluation.reference_rows import load_student_references, reference_rows, references_markdown
from llmqfl.evaluation.render import (
    answer_markdown,
    claims_markdown,
    claims_payload,
    markdown_html,
    metrics_payload,
    primary_line,
    timings_payload,
)
from llmqfl.io import atomic_path, write_json
from llmqfl.settings import Settings
from llmqfl.stages._cli import run_stage, stage_parser

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("report", "Claims table, figures and DVC metrics of an experiment.")
    parser.add_argument("--eval-dir", required=True, help="results/{exp}/eval")
    parser.add_argument("--qfl-dir", required=True, help="results/{exp}/qfl (histories for per-client figures)")
    parser.add_argument("--distill-dir", default=None, help="results/{exp}/distill (PEFT metrics); optional")
    parser.add_argument("--data-dir", default=None, help="results/{exp}/data (data kind, majority rate); optional")
    parser.add_argument("--distill-full-dir", default=None,
                        help="full fine-tuning reference of the same model and data (C6); optional")
    parser.add_argument("--out-dir", required=True, help="results/{exp}/report")
    parser.add_argument("--metrics", required=True, help="results/{exp}/metrics.json")
    return parser


def body(args: argparse.Namespace, settings: Settings) -> None:
    arms, seeds = settings.arms, settings.seeds
    runs = load_runs(args.eval_dir, arms=arms, seeds=seeds)
    histories = load_histories(args.qfl_dir, arms=arms, seeds=seeds)
    kind, majority = load_data_info(args.data_dir)
    evidence = Evidence(runs=runs, config=settings, distill=load_distill(args.distill_dir), data_kind=kind,
                        majority_rate=majority, distill_full=load_distill(args.distill_full_dir),
                        scope=settings.replicates.scope)
    results = evaluate_claims(evidence)
    metrics = metrics_payload(results, evidence)
    ceilings = load_feature_ceilings(args.qfl_dir, arms=arms, seeds=seeds)
    answer = build_answer(evidence, results, feature_ceiling=float(np.mean(ceilings)) if ceilings else None,
                          teacher=teacher_summary(evidence))
    answer["references"] = reference_rows(evidence, load_student_references(args.qfl_dir, seeds=seeds))
    metrics["primary"] = {k: answer["primary"][k] for k in ("effect", "p", "n", "mde", "verdict")}
    timings = timings_payload(evidence)
    with tracking.stage_run(settings, "report", name="report") as run:
        with atomic_path(args.out_dir) as tmp:
            tmp.mkdir()
            claims = claims_markdown(results, evidence) + "\n## Primary endpoint (pre-registered)\n\n"
            claims += primary_line(answer["primary"]) + "\n"
            if answer["references"]:  # centralised and local-only training around the federated numbers
                claims += "\n## Reference rows\n\n" + references_markdown(answer["references"])
            (tmp / layout.CLAIMS).write_text(claims)
            write_json(tmp / layout.CLAIMS_JSON, claims_payload(results))
            write_json(tmp / layout.ANSWER_JSON, answer)
            write_json(tmp / layout.TIMINGS, timings)  # measured times: not DVC metrics
            answer_text = answer_markdown(answer) + (
                "\nReference rows: the federated numbers beside training on the pooled client items (centralised) "
                "and on each client's items alone (local only), same splits and seeds.\n\n"
                + references_markdown(answer["references"]) if answer["references"] else "")
            (tmp / layout.ANSWER_MD).write_text(answer_text)
            # the same as HTML pages, which the Snakemake report shows inline (a .md is only a download there)
            title = f"llmqfl {settings.experiment}"
            (tmp / layout.CLAIMS_HTML).write_text(markdown_html(claims, f"{title}: claims"))
            (tmp / layout.ANSWER_HTML).write_text(markdown_html(answer_text + "\n" + claims, f"{title}: answer"))
            draw_figures(runs=runs, histories=histories, out_dir=tmp / layout.FIGURES, experiment=settings.experiment,
                         selection_kind=settings.federation.selection.kind)
        write_json(args.metrics, metrics)
        run.log_metrics({f"claim_{r.id}": VERDICT_CODES[r.verdict] for r in results})
        for arm, values in metrics["arms"].items():
            run.log_metrics({f"{arm}.{k}": v for k, v in {**values, **timings[arm]}.items() if v is not None})
        run.log_artifact(args.out_dir, "report")
        run.log_artifact(args.metrics)
    for result in results:
        log.info("%s %s: %s (%s)", result.id, result.claim, result.verdict, result.reason)
    primary = answer["primary"]
    log.info("primary endpoint %s: %s (n=%d, %s)", primary["comparison"],
             "not measurable" if primary["effect"] is None else
             f"{primary['effect']:+.3f} [{primary['ci'][0]:+.3f}, {primary['ci'][1]:+.3f}], MDE {primary['mde']:.3f}",
             primary["n"], primary["verdict"])


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("report", build_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
