"""Quantum side of LLM-QFL: models (VQC, QCNN), batched evaluation (exact and primitive), losses,
optimizers and one client's local training. Backends live in ``llmqfl.quantum.backends``."""

from llmqfl.quantum.circuits import QuantumModel, build_model
from llmqfl.quantum.evaluators import EvaluationStats, Evaluator, ExactEvaluator, make_evaluator
from llmqfl.quantum.loss import accuracy, cross_entropy, distillation_loss, objective, weighted_f1
from llmqfl.quantum.optimizers import OptimizerResult, minimize
from llmqfl.quantum.training import LocalResult, train_local

__all__ = [
    "EvaluationStats",
    "Evaluator",
    "ExactEvaluator",
    "LocalResult",
    "OptimizerResult",
    "QuantumModel",
    "accuracy",
    "build_model",
    "cross_entropy",
    "distillation_loss",
    "make_evaluator",
    "minimize",
    "objective",
    "train_local",
    "weighted_f1",
]
