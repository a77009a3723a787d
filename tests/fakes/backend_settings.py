"""The typed ``backend`` section the backend code takes, built from a partial dict as a run builds it."""

from __future__ import annotations

from typing import Any

from llmqfl.config import load_settings
from llmqfl.settings import BackendSettings


def backend_settings(**fields: Any) -> BackendSettings:
    """``backend:`` with ``fields`` set and every other key at the schema's default (validated)."""
    return load_settings({"backend": fields}).backend
