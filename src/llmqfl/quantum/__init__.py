"""Quantum side of LLM-QFL, one subpackage per subject: ``models`` (feature map + ansatz + readout),
``simulators`` (exact and noisy engines), ``training`` (evaluators, losses, optimizers, local training),
``backends`` (where circuits run, mitigation) and ``jobs`` (retries, shot budget, job ledger).
This module re-exports what the federated layer calls."""

from llmqfl.quantum.models.circuits import QuantumModel, build_model, configured_model
from llmqfl.quantum.training.evaluators import EvaluationStats, Evaluator, ExactEvaluator, make_evaluator
from llmqfl.quantum.training.local_training import LocalResult, train_local
from llmqfl.quantum.training.loss import accuracy, cross_entropy, distillation_loss, objective, weighted_f1
from llmqfl.quantum.training.optimizers import OptimizerResult, minimize

__all__ = [
    "EvaluationStats",
    "Evaluator",
    "ExactEvaluator",
    "LocalResult",
    "OptimizerResult",
    "QuantumModel",
    "accuracy",
    "build_model",
    "configured_model",
    "cross_entropy",
    "distillation_loss",
    "make_evaluator",
    "minimize",
    "objective",
    "train_local",
    "weighted_f1",
]
