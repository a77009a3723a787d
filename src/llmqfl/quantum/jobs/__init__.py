"""What happens to each job: timeouts and retries, the shot budget, and the job ledger (its file, codec,
round records and the ``llmqfl ledger`` report)."""
