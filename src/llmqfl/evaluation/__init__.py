"""Evaluation of QFL runs: metrics per arm and seed, the paper's claims, figures.

The evaluate stage turns one run's ``history.parquet`` + ``accounting.json`` into a per-run JSON
(:mod:`llmqfl.evaluation.metrics`); the report stage reads every per-run JSON and decides each
claim of the paper by code (:mod:`llmqfl.evaluation.claims`), then renders ``claims.md``,
``metrics.json`` (:mod:`llmqfl.evaluation.render`) and the figures (:mod:`llmqfl.evaluation.figures`).
"""
