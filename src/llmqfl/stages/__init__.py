"""One CLI entry point per pipeline stage (``python -m llmqfl.stages.<stage>``); each is thin."""
