"""llmqfl: LLM-guided quantum federated learning (Gurung & Pokhrel, arXiv 2505.18656) as a pipeline."""

__version__ = "0.1.0"
