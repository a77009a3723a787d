"""One sweep grid point (sweep.smk rule sweep_point): every replicate's qfl run, then its evaluation.

The stages' own CLIs (llmqfl.stages.qfl, llmqfl.stages.evaluate) run in this one process, so their
imports (qiskit, pandas, scikit-learn) are paid once per point instead of twice per replicate: on a shared
2-core machine the imports, not the runs, dominated the sweep's time. Each call is exactly the
command line the per-run rules of the Snakefile use; a failing stage ends the job with its exit code.
Reference histories come one per seed, in the order of ``params.seeds``: ``tau_references`` (L: its
baseline's) and ``cost_references`` (E: its L point's, passed as ``--cost-reference``).
"""

import contextlib
import os
import sys

# Not tracked in MLflow: the sweep's table is its record, and MLflow's import and per-run model logging
# cost more than a sweep run itself on the shared machine.
os.environ["LLMQFL_TRACKING"] = "off"

from llmqfl.stages import evaluate, qfl

sm = snakemake  # type: ignore[name-defined]  # noqa: F821  (injected by Snakemake's script directive)
p = sm.params
with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    import logging

    logging.basicConfig(stream=log, level=logging.INFO, force=True,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for i, seed in enumerate(p.seeds):
        argv = ["--config", p.qfl_cfg, "--arm", p.arm, "--seed", str(seed), "--data-dir", p.data_dir,
                "--partitions-dir", p.partitions_dir, "--distill-dir", p.distill_dir,
                "--out-dir", os.path.dirname(sm.output.history[i]), "--resume"]
        if p.embeddings:
            argv += ["--embeddings", p.embeddings]
        if p.tau_references:
            argv += ["--tau-reference", p.tau_references[i]]
        if p.cost_references:  # equal_cost: the L point's history of this seed
            argv += ["--cost-reference", p.cost_references[i]]
        print(f"== qfl {' '.join(argv)}", flush=True)
        if rc := qfl.main(argv):
            sys.exit(rc)
        if rc := evaluate.main(["--config", p.evaluate_cfg, "--history", sm.output.history[i],
                                "--accounting", sm.output.accounting[i], "--out", sm.output.evals[i]]):
            sys.exit(rc)
