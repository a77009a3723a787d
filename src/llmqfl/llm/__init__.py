"""The LLM side of LLM-QFL: assets, per-client (Q)LoRA fine-tuning, teacher outputs, LoRA FedAvg, embeddings."""
