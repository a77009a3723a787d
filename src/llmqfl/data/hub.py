"""Online datasets from the Hugging Face hub, with a fast offline check and readers for local copies.

The machine may have no network: before any download we probe the hub endpoint with a short TCP
timeout (or honour ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``) so that a missing network is an
:class:`OfflineError` in about a second, not a minute of retries. ``data.path`` points to a local copy
in one of the formats the dataset really comes in (a ``save_to_disk`` folder, a hub snapshot with
parquet files, or the upstream project's own layout).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from llmqfl.errors import DataError, OfflineError

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on"}
_PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the hub endpoint (``HF_ENDPOINT``, default huggingface.co) answers a TCP connect quickly.

    Offline flags win; behind a proxy we cannot probe directly, so we let the client try.
    """
    if any(os.environ.get(flag, "").lower() in _TRUE for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    if any(os.environ.get(name) for name in _PROXIES):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def load_hub_splits(repo: str, config: str | None, *, source: str, local_hint: str) -> dict[str, pd.DataFrame]:
    """Every split of ``repo`` (``config``) as DataFrames, or :class:`OfflineError` naming what to do."""
    how = f"set data.path to a local copy ({local_hint})"
    if not hub_reachable():
        raise OfflineError(f"data.source {source}: the Hugging Face hub is not reachable (offline or "
                           f"HF_HUB_OFFLINE set) and data.path is not set; {how}")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    import datasets  # imported late: it costs seconds

    try:
        loaded = datasets.load_dataset(repo, config) if config else datasets.load_dataset(repo)
    except Exception as exc:  # datasets/huggingface_hub raise many network error types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OfflineError(f"data.source {source}: could not download {repo} from the hub ({first}); {how}") from exc
    return {name: split.to_pandas() for name, split in loaded.items()}


def read_saved_dataset(path: Path) -> dict[str, pd.DataFrame] | None:
    """A folder written by ``datasets``' ``save_to_disk`` (a DatasetDict or one Dataset); None otherwise."""
    if not ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        return None
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded.to_pandas()}
    return {name: split.to_pandas() for name, split in loaded.items()}


def read_parquet_snapshot(path: Path, subdirs: tuple[str, ...]) -> dict[str, pd.DataFrame] | None:
    """A hub snapshot: ``<split>-*.parquet`` files in ``path`` or one of ``subdirs``; None if there are none."""
    for folder in (path, *(path / sub for sub in subdirs)):
        files = sorted(folder.glob("*.parquet"))
        if files:
            splits: dict[str, list[pd.DataFrame]] = {}
            for file in files:
                splits.setdefault(file.name.split("-")[0], []).append(pd.read_parquet(file))
            return {name: pd.concat(parts, ignore_index=True) for name, parts in splits.items()}
    return None


def read_local(
    path: str | Path,
    readers: list[Callable[[Path], dict[str, pd.DataFrame] | None]],
    *,
    source: str,
    formats: str,
) -> dict[str, pd.DataFrame]:
    """Try each reader on ``path``; the first that recognises its layout wins."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data.path: {path} does not exist (data.source {source})")
    for reader in readers:
        try:
            found = reader(path)
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"data.path: cannot read {path} as {source}: {str(exc).splitlines()[0]}") from exc
        if found:
            return found
    raise DataError(f"data.path: {path} is not a local copy of {source} (expected {formats})")
