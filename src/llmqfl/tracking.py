"""MLflow tracking: one parent run per ``snakemake`` invocation, a nested run per stage job.

The Snakefile's ``onstart`` creates the store, the experiment and the parent run before any job
starts, then hands the parent run id to jobs through ``LLMQFL_MLFLOW_PARENT_RUN_ID``. Two
``snakemake`` calls (or eight stage processes) may still meet a fresh sqlite store at the same
moment, and alembic's migrations are not safe under concurrency: every first touch of a sqlite store
by a process, and every experiment creation, holds an exclusive ``fcntl`` lock on ``mlflow.db.lock``
beside the database.

Every run is tagged with the host and process that opened it (``llmqfl.host``, ``llmqfl.pid``,
``llmqfl.pid_start``). A process killed with SIGKILL cannot close its run; the next invocation's
Snakefile parse (whatever the invocation then does: run, find nothing to do, dry-run) calls
:func:`mark_stale_runs`, which marks KILLED every RUNNING run of the experiment whose process is gone
from this host, with a tag saying why. An ``http(s)`` store is probed first (:func:`check_server`):
a server that does not answer is one line within seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from llmqfl.config import STAGE_SECTIONS, stage_config
from llmqfl.errors import FaultError
from llmqfl.settings import Settings

PARENT_ENV = "LLMQFL_MLFLOW_PARENT_RUN_ID"
DISABLE_ENV = "LLMQFL_TRACKING"  # "off" disables MLflow (unit tests of stages that do not test tracking)
DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT_ENV = "LLMQFL_MLFLOW_EXPERIMENT"  # set by the Snakefile: tracking.experiment_name stays out of stage params
HOST_TAG, PID_TAG, PID_START_TAG = "llmqfl.host", "llmqfl.pid", "llmqfl.pid_start"
STALE_TAG = "llmqfl.stale_reason"
ROOT_TAG = "llmqfl.store_root"  # the folder a sqlite store was last opened in (reroot_store)
SERVER_TIMEOUT_S = 5.0  # how long an http(s) tracking server may take to answer the first probe
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}
T = TypeVar("T")
log = logging.getLogger(__name__)
_READY: set[str] = set()  # tracking URIs this process has opened (the store exists and is migrated)


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the sqlite store in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "on").lower() not in {"off", "0", "false"}


def experiment_name(config: Mapping[str, Any]) -> str:
    """``tracking.experiment_name``, else what the invoking Snakefile exported, else ``llmqfl-EXPERIMENT``.

    Stages get the name from the environment, not from their config slice, so renaming the MLflow
    experiment does not make Snakemake re-run them. ``config``: the Snakefile's dict (the workflow layer);
    a stage's run names it from its :class:`~llmqfl.settings.Settings` (:func:`stage_run`).
    """
    return _experiment_name((config.get("tracking") or {}).get("experiment_name"), config.get("experiment", "default"))


def _experiment_name(named: str | None, experiment: str) -> str:
    return named or os.environ.get(EXPERIMENT_ENV) or f"llmqfl-{experiment}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory), None for other stores."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive inter-process lock on ``<db>.lock`` for a sqlite store; nothing for other stores.

    Held while a process first opens the store (table creation, alembic migrations) and while it
    creates an experiment, the two steps that fail when run concurrently on one sqlite file.
    """
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def with_retries(action: Callable[[], T], attempts: int = 8) -> T:
    """Run ``action``, retrying the transient sqlite errors that concurrent writers hit."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:  # mlflow wraps sqlite errors in several exception types
            transient = any(s in str(exc).lower() for s in ("database is locked", "already exists", "duplicate column"))
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (2**attempt) * (1 + random.random()))
    raise AssertionError("unreachable")


def check_server(uri: str | None = None, timeout_s: float = SERVER_TIMEOUT_S) -> None:
    """An ``http(s)://`` tracking server must answer within ``timeout_s``, else one line (``FaultError``).

    MLflow's own client retries an unanswered request for minutes (7 retries, growing back-off), then
    ends in a traceback; this probe (TCP connect, then ``GET /health``) fails in seconds with the fix.
    Other stores (sqlite, a folder) need no probe. MLflow's HTTP timeout and retries are capped for this
    process too (``MLFLOW_HTTP_REQUEST_TIMEOUT``, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``; a value the user
    set wins), so a server that stops answering later fails a stage in seconds as well.
    """
    import urllib.error
    import urllib.parse
    import urllib.request

    uri = uri or tracking_uri()
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)
    fix = "start it, fix MLFLOW_TRACKING_URI, or set LLMQFL_TRACKING=off to run without tracking"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout_s).close()
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return  # it answered (an older server without /health, or a proxy): that is all this checks
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        raise FaultError(f"MLflow tracking server {uri} does not answer ({reason}, waited at most {timeout_s:g} s); "
                         f"{fix}") from None


def _client():
    """A client of the tracking store; the process's first one opens (creates, migrates) it under the lock."""
    import mlflow

    uri = tracking_uri()
    if uri not in _READY:
        check_server(uri)
    mlflow.set_tracking_uri(uri)
    if uri in _READY:
        return mlflow.MlflowClient(uri)
    with store_lock(uri):
        client = mlflow.MlflowClient(uri)  # opening the store creates and migrates its tables
        database = sqlite_path(uri)
        if database is not None:
            reroot_store(database)
    _READY.add(uri)
    return client


# the tables and columns where a sqlite store keeps artifact locations (MLflow 3's schema)
ARTIFACT_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                    ("logged_models", "artifact_location"))


def reroot_store(database: Path) -> int:
    """Point a copied (or moved) project's artifact locations at its own folder; return the rows changed.

    MLflow stores absolute artifact paths (``<project>/mlruns/<experiment>/...``), so a copy of a project
    would read and write the original's artifacts. The store remembers the folder it lives in (the
    ``llmqfl.store_root`` row of ``experiment_tags`` on experiment 0, MLflow's ``Default``); when the
    database is opened from another folder, every artifact location under the old folder is rewritten
    to the same place under the new one (locations outside the old folder, a shared artifact store,
    are left as they are). Called under :func:`store_lock` when a process first opens the store.
    """
    import sqlite3

    here = str(database.resolve().parent)
    with contextlib.closing(sqlite3.connect(database, timeout=60)) as db, db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        default = db.execute("SELECT 1 FROM experiments WHERE experiment_id=0").fetchone() if tables else None
        if "experiment_tags" not in tables or not default:
            return 0
        row = db.execute("SELECT value FROM experiment_tags WHERE experiment_id=0 AND key=?", (ROOT_TAG,)).fetchone()
        old = row[0] if row else _default_root(db)
        changed = 0
        if old and old != here:
            for table, column in ARTIFACT_COLUMNS:
                if table in tables:
                    changed += db.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                        f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                        (here, len(old) + 1, old, len(old) + 1, old + "/"),
                    ).rowcount
            log.warning("MLflow store %s was made in %s: %d artifact location(s) now point under %s",
                        database, old, changed, here)
        if old != here:
            db.execute("INSERT OR REPLACE INTO experiment_tags (key, value, experiment_id) VALUES (?, ?, 0)",
                       (ROOT_TAG, here))
    return changed


def _default_root(db: Any) -> str | None:
    """The folder a store without the tag was made in: where MLflow put experiment 0's ``mlruns/0``."""
    row = db.execute("SELECT artifact_location FROM experiments WHERE experiment_id=0").fetchone()
    location = str(row[0] or "") if row else ""
    suffix = "/mlruns/0"
    return location[: -len(suffix)] if location.startswith("/") and location.endswith(suffix) else None


def ensure_experiment(name: str) -> str:
    """Create the store and the experiment if missing; return the experiment id."""
    client = _client()

    def get_or_create() -> str:
        found = client.get_experiment_by_name(name)
        if found:
            return found.experiment_id
        with store_lock(tracking_uri()):  # one creator; the others then find it
            found = client.get_experiment_by_name(name)
            return found.experiment_id if found else client.create_experiment(name)

    return with_retries(get_or_create)


def process_tags() -> dict[str, str]:
    """Who opened a run: host, pid and the pid's start time (a recycled pid is then not mistaken for it)."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PID_START_TAG: str(_start_time(pid))}


def _start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (Linux ``/proc``); -1 where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; fields 3.. follow the command name


def _alive(pid: int, start: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return start < 0 or _start_time(pid) in (start, -1)


def mark_stale_runs(config: Mapping[str, Any]) -> list[str]:
    """Mark KILLED the experiment's RUNNING runs whose process died on this host; return their ids.

    A run opened elsewhere (another host) or without the process tags (older code) is left as it is.
    """
    if not enabled():
        return []
    database = sqlite_path(tracking_uri())
    if database is not None and not database.exists():
        return []  # no store yet, so no run to mark (and no mlflow import on a fresh clone's parse)
    client = _client()
    found = with_retries(lambda: client.get_experiment_by_name(experiment_name(config)))
    if found is None:
        return []
    host = socket.gethostname()
    runs = with_retries(
        lambda: client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'", max_results=5000)
    )
    marked = []
    for run in runs:
        tags = run.data.tags
        if tags.get(HOST_TAG) != host or not str(tags.get(PID_TAG, "")).isdigit():
            continue
        pid, start = int(tags[PID_TAG]), int(tags.get(PID_START_TAG, "-1"))
        if _alive(pid, start):
            continue
        reason = f"process {pid} on {host} ended without closing the run (killed); marked by a later invocation"
        run_id = run.info.run_id
        with_retries(lambda r=run_id, why=reason: client.set_tag(r, STALE_TAG, why))
        with_retries(lambda r=run_id: client.set_terminated(r, status="KILLED"))
        marked.append(run_id)
    if marked:
        log.warning("marked %d run(s) left RUNNING by killed processes as KILLED", len(marked))
    return marked


def start_parent_run(config: Mapping[str, Any], run_name: str | None = None) -> str | None:
    """Create (or, within one ``dvc repro`` / ``dvc exp run``, reuse) the invocation's parent run; export its id.

    DVC runs one ``snakemake`` per DVC stage; they all belong to the DVC command that started them, so the
    second and later ones reopen the parent run the first one made (same ``llmqfl.invocation`` tag). Its
    name (``run_name``, else :func:`llmqfl.run_tags.parent_run_name`) is the DVC experiment's under
    ``dvc exp run`` whatever ``run_name`` says.
    """
    if not enabled():
        return None
    from llmqfl import run_tags

    client = _client()
    experiment_id = ensure_experiment(experiment_name(config))
    tags = {**run_tags.invocation_tags(config), **process_tags()}
    if tags.get("llmqfl.dvc.exp_name") or not run_name:
        run_name = run_tags.parent_run_name(config)
    run_id = _reusable_parent(client, experiment_id, tags) if tags.get("llmqfl.dvc.stage") else None
    if run_id:
        stages = client.get_run(run_id).data.tags.get("llmqfl.dvc.stages", "")
        tags["llmqfl.dvc.stages"] = ",".join(s for s in (*stages.split(","), tags["llmqfl.dvc.stage"]) if s)
        with_retries(lambda: client.update_run(run_id, status="RUNNING"))
        for key, value in tags.items():
            with_retries(lambda k=key, v=value: client.set_tag(run_id, k, v))
    else:
        tags["llmqfl.dvc.stages"] = tags.get("llmqfl.dvc.stage", "")
        run = with_retries(lambda: client.create_run(experiment_id, run_name=run_name, tags=tags))
        run_id = run.info.run_id
        with_retries(lambda: client.log_dict(run_id, dict(config), "config.resolved.yaml"))
        for key, value in flatten(config).items():
            with_retries(lambda k=key, v=value: client.log_param(run_id, k, v))
    os.environ[PARENT_ENV] = run_id
    return run_id


def _reusable_parent(client: Any, experiment_id: str, tags: Mapping[str, str]) -> str | None:
    """The parent run an earlier snakemake of the same DVC command made in this MLflow experiment, if any."""
    query = f"tags.`llmqfl.invocation` = '{tags['llmqfl.invocation']}'"
    found = with_retries(lambda: client.search_runs([experiment_id], filter_string=query, max_results=1))
    return found[0].info.run_id if found else None


def end_parent_run(status: str = "FINISHED") -> None:
    """Close the parent run opened by :func:`start_parent_run`."""
    run_id = os.environ.get(PARENT_ENV)
    if enabled() and run_id:
        client = _client()
        with_retries(lambda: client.set_terminated(run_id, status=status))


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys and string values: MLflow params."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


class StageRun:
    """The handle a stage logs through; every method is a no-op when tracking is off."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        self._client = _client() if run_id else None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self._client:
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(k, float(v), stamp, step or 0) for k, v in metrics.items() if v is not None]
        with_retries(lambda: self._client.log_batch(self.run_id, metrics=batch))

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self._client:
            return
        from mlflow.entities import Param

        batch = [Param(k, v) for k, v in flatten(params).items()]
        with_retries(lambda: self._client.log_batch(self.run_id, params=batch))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if not self._client:
            return
        for key, value in tags.items():
            with_retries(lambda k=key, v=value: self._client.set_tag(self.run_id, k, str(v)))

    def log_input(self, frame: Any, *, name: str, source: str | Path, context: str) -> None:
        """Log a data frame as an MLflow dataset input of this run (``context``: training, validation, test)."""
        if not self._client:
            return
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag

        from llmqfl.run_tags import frame_digest

        dataset = mlflow.data.from_pandas(frame, source=str(source), name=name, digest=frame_digest(frame))
        entity = DatasetInput(dataset._to_mlflow_entity(), [InputTag("mlflow.data.context", context)])
        with_retries(lambda: self._client.log_inputs(self.run_id, datasets=[entity]))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file or a whole directory."""
        if not self._client:
            return
        path = Path(path)
        if path.is_dir():
            with_retries(lambda: self._client.log_artifacts(self.run_id, str(path), artifact_path or path.name))
        elif path.exists():
            with_retries(lambda: self._client.log_artifact(self.run_id, str(path), artifact_path))


@contextlib.contextmanager
def stage_run(
    settings: Settings, stage: str, name: str | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[StageRun]:
    """A run for one stage job, nested under the invocation's parent run when there is one.

    Logs the stage's config slice (its ``STAGE_SECTIONS``, from ``settings.as_config()``) as params and as
    ``config.yaml``; marks the run FAILED when the body raises.
    """
    if not enabled():
        yield StageRun(None)
        return
    client = _client()
    experiment_id = ensure_experiment(_experiment_name(settings.tracking.experiment_name, settings.experiment))
    from llmqfl.run_tags import stage_code_tags

    all_tags = {"llmqfl.stage": stage, **stage_code_tags(stage), **(tags or {}), **process_tags()}
    parent = os.environ.get(PARENT_ENV)
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    run = with_retries(lambda: client.create_run(experiment_id, run_name=name or stage, tags=all_tags))
    handle = StageRun(run.info.run_id)
    # only the sections the stage reads: defaults of sections it never sees (e.g. the data stage's
    # backend) would tag a fake-device run's data and distill runs with backend.kind=aer
    plain = settings.as_config()
    own = stage_config(plain, stage) if stage in STAGE_SECTIONS else plain
    handle.log_params(own)
    with_retries(lambda: client.log_dict(run.info.run_id, own, "config.yaml"))
    try:
        yield handle
    except BaseException:
        with_retries(lambda: client.set_terminated(run.info.run_id, status="FAILED"))
        raise
    with_retries(lambda: client.set_terminated(run.info.run_id, status="FINISHED"))
