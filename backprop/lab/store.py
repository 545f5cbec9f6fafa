"""The MLflow store: where it is, its URI without secrets, its SQLite file and lock, its logging,
and what its failures mean.

The store is ``MLFLOW_TRACKING_URI`` when set (a team's tracking server), otherwise
``sqlite:///<project root>/mlflow.db`` with artifacts in ``<project root>/mlartifacts``. The project
root is ``DVC_ROOT``, which DVC sets to the user's repository also inside the temporary copies
where ``dvc exp run --queue``/``--temp`` execute, so no run is left behind in a copy that DVC
deletes.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


class MachineError(Exception):
    """The machine, not the input: a disk, memory, a tracking store. The message names which."""


CORRUPT_STORE = ("database disk image is malformed", "file is not a database")
# What SQLite says, somewhere in the chain of errors MLflow and SQLAlchemy wrap it in, and what to
# tell the user about the store (the file for a full disk).
STORE_PROBLEMS = {
    "database is locked": "database is locked (another process holds a write lock on it for too long)",
    "database or disk is full": "no space left on the device (disk full)",
    "attempt to write a readonly database": "read-only file system or file",
    "unable to open database file": "unable to open database file (missing folder or no permission)",
    "disk I/O error": "input/output error (failing disk or network file system?)",
    "error code 401": (
        "the server refused the credentials (401 not authenticated): set MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD to a user of the server"
    ),
    "error code 403": "the user lacks the permission (403 forbidden): ask the admin for EDIT on the experiment",
}


def quiet_mlflow() -> None:
    """A stage prints one summary line of its own; MLflow's INFO lines (and alembic's, while
    MLflow creates the schema of a new store) would bury it. Warnings and errors still show.
    Called once MLflow is imported: its import sets up its own logger at INFO."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("mlflow", "alembic", "sqlalchemy.engine"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _OneLine) for f in handler.filters):
                handler.addFilter(_OneLine())


class _OneLine(logging.Filter):
    """MLflow's warnings as one line each, without a traceback. A record that carries an exception
    is MLflow logging what it then raises: the stage reports that error in one line, which the
    traceback would bury, so the record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            return False
        lines = record.getMessage().strip().splitlines()
        record.msg, record.args = (lines[0] if lines else ""), ()
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def fast_sqlite(dbapi_connection, _record) -> None:
    """Write-ahead logging for the SQLite store: a commit appends to the log instead of rewriting
    pages under a rollback journal, which makes a run's writes about a third cheaper, and the UI can
    read while a stage writes. NORMAL sync is durable across a crashed process (not a power cut)."""
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        _sqlite_connections.append(dbapi_connection)


_sqlite_connections: list = []  # every SQLite connection this process opened to a store


def close_stores() -> None:
    """Close this process's SQLite connections to the store: the last one to close folds the
    write-ahead log into mlflow.db and removes it. A stage's exit skips the collection that
    would otherwise close them (``stage_run.run_stage``), so it calls this first."""
    while _sqlite_connections:
        with contextlib.suppress(Exception):  # already closed by its pool
            _sqlite_connections.pop().close()


def check_store_file(path: Path) -> None:
    """Raise sqlite3.DatabaseError at once if ``path`` exists but is not a readable SQLite file.
    MLflow would find out too, after retrying its engine 10 times with back-off (about 100 s and
    9 warnings); ``failures.environment_message`` turns the error into the recovery instructions."""
    import sqlite3

    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as error:
        if any(sign in str(error) for sign in CORRUPT_STORE):
            raise
        # Anything else (a store locked right now) is MLflow's to wait for or report.


def tracking_uri() -> str:
    """The store: MLFLOW_TRACKING_URI with a relative sqlite/file path anchored at the project
    root (never inside a DVC temp copy that is deleted afterwards), or the project's SQLite file."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{project_root() / DB_NAME}"
    scheme, _, rest = uri.partition(":")
    if scheme == "sqlite" and rest.startswith("///") and not rest.startswith("////") and rest != "///:memory:":
        return f"sqlite:///{project_root() / rest[3:]}"
    if scheme == "file" and not rest.startswith("/"):
        return (project_root() / rest).as_uri()
    if not rest or len(scheme) == 1:  # no scheme (a Windows drive letter at most): a local path
        return str(project_root() / uri)
    return uri


def redact(uri: str) -> str:
    """The URI without secrets, for files, logs and tags: ``user:***@host``, query values ``***``."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = "&".join(f"{key}=***" for key, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def secrets(uri: str) -> list[str]:
    """The parts of ``uri`` that ``redact`` hides."""
    parts = urlsplit(uri)
    found = [value for _, value in parse_qsl(parts.query)]
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found.append(userinfo.split(":", 1)[1] if ":" in userinfo else userinfo)
    return [secret for secret in found if len(secret) >= 3]  # "a" or "1" would blank out half a line


# MLflow's own defaults wait up to 120 s per request and retry 7 times with backoff, minutes
# in all before an unreachable server is reported; a stage should say so within seconds.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
}
REACH_TIMEOUT = 5  # seconds for the server to accept and answer /health


def check_reachable(uri: str, timeout: float = REACH_TIMEOUT) -> None:
    """Raise MachineError naming the host (no password) unless the server answers at all."""
    parts = urlsplit(uri)
    base = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path.rstrip("/"), "", ""))
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:  # it answered, if only to refuse: the server is there
        return
    except (OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise MachineError(
            f"the MLflow tracking server {redact(uri)} did not answer within {timeout} s ({reason}); "
            f"check MLFLOW_TRACKING_URI or unset it to use the project's own store"
        ) from None


def shareable_uri(uri: str) -> str:
    """``uri`` as written into versioned files: a SQLite store inside the project relative to the
    project root (``sqlite:///mlflow.db``, what a clone has after its own run), so no file holds
    this machine's paths; any other URI as it is."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if path.is_absolute() and path.is_relative_to(project_root()):
            return f"sqlite:///{path.relative_to(project_root())}"
    return uri


@contextlib.contextmanager
def store_lock(path: Path | None) -> Iterator[None]:
    """An exclusive lock on the file ``path`` beside a SQLite store (no lock for None: a server)."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
