"""Stage plumbing: all-or-nothing outputs, one-line errors, interruption, JSON that diffs well."""

from __future__ import annotations

import contextlib
import csv
import ctypes
import errno
import gc
import hashlib
import json
import math
import os
import shutil
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from backprop.lab.config import ConfigError
from backprop.lab.datasets import DataError, check_header
from backprop.lab.executor import ExecutorError, FitError

INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# Outputs are written under <where the stage runs>/.backprop-staging/<pid>/ first: outside every
# folder dvc.yaml declares, so a stage killed with SIGKILL leaves nothing that DVC would record
# or git would show, and on the same file system as the outputs, so the final moves are atomic.
STAGING_DIR = ".backprop-staging"


def staging_root() -> Path:
    return Path.cwd() / STAGING_DIR


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_staging(root: Path | None = None) -> None:
    """Remove the staging folders of stages whose process is gone (killed, machine restarted)."""
    root = root or staging_root()
    if not root.is_dir():
        return
    for folder in root.iterdir():
        if folder.name.isdigit() and int(folder.name) != os.getpid() and not pid_alive(int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)


class Outputs:
    """Outputs are written to a hidden staging folder and moved into place together only when
    the stage body succeeds, so a failed or interrupted stage leaves nothing that looks real."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._folders: set[Path] = set()

    def path(self, final: str | Path) -> Path:
        """Where to write ``final`` for now: same file name (so an MLflow artifact logged from it
        is named right), same file system (so the move is atomic), in a folder of its own."""
        final = Path(final)
        folder = self._staging_for(final) / str(len(self._pending))
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / final.name
        self._pending.append((temporary, final))
        return temporary

    def _staging_for(self, final: Path) -> Path:
        root = staging_root()
        root.mkdir(exist_ok=True)
        anchor = next(p for p in (final.absolute(), *final.absolute().parents) if p.exists())
        if anchor.stat().st_dev != root.stat().st_dev:
            # An output on another file system: stage beside it, where os.replace stays atomic.
            root = anchor / STAGING_DIR
        folder = root / str(os.getpid())
        self._folders.add(folder)
        return folder

    def json(self, final: str | Path, data) -> None:
        self.text(final, dumps(data))

    def text(self, final: str | Path, text: str) -> None:
        with naming(final):
            self.path(final).write_text(text)

    def commit(self) -> None:
        # Signals wait until every file is in place: a half-moved set of outputs would look real.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPT_SIGNALS)
        try:
            for temporary, final in self._pending:
                final.parent.mkdir(parents=True, exist_ok=True)
                if temporary.is_dir() and final.is_dir():  # a folder output (a model) is replaced whole
                    shutil.rmtree(final)
                os.replace(temporary, final)
            self.discard()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def discard(self) -> None:
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):  # still holds another live stage's folder
                folder.parent.rmdir()
        self._pending.clear()
        self._folders.clear()


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """An OSError raised while writing ``path`` names it: a full disk often shows only when the
    file is flushed, as an error that names no file."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            error.filename = str(path)
        raise


@contextlib.contextmanager
def staged_outputs() -> Iterator[Outputs]:
    outputs = Outputs()
    try:
        yield outputs
    except BaseException:
        outputs.discard()
        raise
    outputs.commit()


# Tracked numbers keep the digits the arithmetic supports: a fit's last digits move with the CPU's
# BLAS kernel and SIMD paths (about 1e-13 relative), so 6 significant digits are the same on every
# machine of a kind, and a table diff shows only changes that mean something.
SIGNIFICANT_DIGITS = 6


def finite_or_none(value):
    """JSON has no NaN: a diverged metric is written as null next to ``diverged: true``. Floats
    keep ``SIGNIFICANT_DIGITS`` digits."""
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


def dumps(data) -> str:
    return json.dumps(finite_or_none(data), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_table(frame, path: str | Path) -> None:
    """A CSV with floats at ``SIGNIFICANT_DIGITS`` digits (the same rule as the JSON files)."""
    with naming(path):
        frame.to_csv(path, index=False, float_format=f"%.{SIGNIFICANT_DIGITS}g")


def read_csv(path: str | Path):
    """The raw table, or a DataError that says what is wrong with the file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} {_not_a_file(path)}")
    try:
        with open(path, newline="") as handle:
            header = next(csv.reader(line for line in handle if line.strip()), None)
        frame = pd.read_csv(path)
        check_header(header or [], source=str(path))
        return frame
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not a readable CSV: {str(error).splitlines()[0]}") from None
    except csv.Error as error:  # the header: a field past the csv module's limit (128 KiB)
        reason = str(error).splitlines()[0] if str(error) else "unreadable"
        if "field larger than field limit" in reason:
            reason = f"a header field is longer than {csv.field_size_limit()} characters (a column name?)"
        raise DataError(f"{path} is not a readable CSV: {reason}") from None


def _not_a_file(path: Path) -> str:
    """What is at ``path`` instead of a regular file, for the error message."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    kinds = {
        stat.S_ISDIR: "is a directory",
        stat.S_ISFIFO: "is a FIFO (named pipe)",
        stat.S_ISSOCK: "is a socket",
        stat.S_ISCHR: "is a character device",
        stat.S_ISBLK: "is a block device",
    }
    kind = next((text for test, text in kinds.items() if test(mode)), "is not a regular file")
    return f"{kind}, not a CSV file"


def progress_bar(total: int, description: str, unit: str = "epoch"):
    """A tqdm bar on stderr for interactive runs; silent in CI and when output is not a terminal."""
    from tqdm import tqdm

    quiet = bool(os.environ.get("CI")) or None  # None: tqdm turns itself off without a TTY
    return tqdm(total=total, desc=description, unit=unit, leave=False, disable=quiet, mininterval=0.5)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _record_timing(seconds: float) -> None:
    """With BACKPROP_TIMINGS=<file>, append this stage's time and its MLflow share (benchmarks)."""
    path = os.environ.get("BACKPROP_TIMINGS")
    if not path:
        return
    tracking, executor = sys.modules.get("backprop.lab.tracking"), sys.modules.get("backprop.lab.executor")
    record = {
        "stage": os.environ.get("DVC_STAGE", " ".join(sys.argv[:2])),
        "seconds": seconds,
        "mlflow_seconds": tracking.time_in_mlflow if tracking else 0.0,
        "mlflow_cpu_seconds": tracking.cpu_in_mlflow if tracking else 0.0,
        "mlflow_open_seconds": tracking.time_opening_mlflow if tracking else 0.0,
        "mlflow_open_cpu_seconds": tracking.cpu_opening_mlflow if tracking else 0.0,
        "runs": tracking.runs_created if tracking else 0,
        "fits": executor.fits_completed if executor else 0,
    }
    with naming(path), open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


class MachineError(Exception):
    """The machine, not the input: a disk, memory, a tracking store. The message names which."""


PR_SET_PDEATHSIG = 1  # linux/prctl.h
# errno -> what to tell the user about the file it names.
OS_PROBLEMS = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error (failing disk or network file system?)",
}
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


def end_with_parent() -> None:
    """On Linux, ask the kernel for SIGTERM when the parent (dvc) dies, so a stage does not train
    on as an orphan; SIGTERM then unwinds like Ctrl-C. Elsewhere there is no such call."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _store_uri() -> str:
    tracking = sys.modules.get("backprop.lab.tracking")
    return tracking.redact(tracking.tracking_uri()) if tracking else "the MLflow store"


def scrub(text: str) -> str:
    """``text`` with the tracking URI's secrets (password, token query values) replaced."""
    tracking = sys.modules.get("backprop.lab.tracking")
    if tracking is None:
        return text
    uri = tracking.tracking_uri()
    secrets = [uri, *tracking.secrets(uri)]
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, tracking.redact(uri) if secret == uri else "***")
    return text


def environment_message(error: BaseException) -> str | None:
    """One line for a failure of the machine rather than of the input, or None for anything else."""
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if isinstance(error, MemoryError):
        return f"out of memory: {first_line or 'an allocation failed'}; use fewer rows, epochs or hidden units"
    if isinstance(error, OSError) and error.errno in OS_PROBLEMS:
        where = error.filename or "a file"
        return f"{where}: {OS_PROBLEMS[error.errno]}"
    if isinstance(error, MachineError):
        return str(error)
    text = " ".join(str(e) for e in (error, error.__cause__, error.__context__) if e is not None)
    if any(sign in text for sign in CORRUPT_STORE):
        uri = _store_uri()
        path = uri.removeprefix("sqlite:///")
        return (
            f"the MLflow store {uri} is corrupt ({next(s for s in CORRUPT_STORE if s in text)}); nothing is "
            f"deleted: move it aside with `mv {path} {path}.broken` and run again (a new store is created), "
            f"and salvage the old runs with `sqlite3 {path}.broken .recover | sqlite3 {path}.recovered`"
        )
    if type(error).__module__.split(".")[0] in ("mlflow", "sqlalchemy", "sqlite3"):
        problem = next((text for sign, text in STORE_PROBLEMS.items() if sign in _chain_text(error)), None)
        if problem and problem.startswith("no space"):
            return f"{_store_uri().removeprefix('sqlite:///')}: {problem}"
        return f"the MLflow store {_store_uri()} failed: {problem or _first_meaningful_line(error)}"
    if isinstance(error, OSError):
        return f"{error.filename or 'a file'}: {error.strerror or first_line}"
    return None


def _chain_text(error: BaseException) -> str:
    """Every message in ``error``'s chain: its causes, contexts and a SQLAlchemy error's DBAPI one."""
    texts, seen = [], set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        texts.append(str(link))
        if (orig := getattr(link, "orig", None)) is not None:
            texts.append(str(orig))
        link = link.__cause__ or link.__context__
    return "\n".join(texts)


def _first_meaningful_line(error: BaseException) -> str:
    """The first line that says something: SQLAlchemy puts its autoflush hint first."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("(raised as a result of")] or lines
    return lines[0][:500] if lines else type(error).__name__


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(): bad input ends in one line on stderr and exit 2; SIGINT and
    SIGTERM unwind like Ctrl-C (MLflow runs end KILLED, staged outputs are discarded), exit 130.
    A full disk, a read-only store, no memory or a broken MLflow store is one line and exit 2 too."""
    signal.signal(signal.SIGTERM, _interrupt)
    end_with_parent()
    remove_stale_staging()
    started = time.perf_counter()
    try:
        _run_main(main, started)
    finally:
        # The interpreter's last collection walks every object MLflow, SQLAlchemy and pandas made:
        # 0.7 s of every stage's exit, measured, on the pipeline's critical path. By now the outputs
        # are in place and the store has committed; only its connections are left to close.
        tracking = sys.modules.get("backprop.lab.tracking")
        if tracking is not None:
            tracking.end_unended_runs()  # the staged outputs are gone by now: space to end them in
            tracking.close_stores()
        gc.freeze()


def _run_main(main: Callable[[], None], started: float) -> None:
    try:
        main()
        _record_timing(time.perf_counter() - started)
    except (ConfigError, DataError, ExecutorError, FitError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as error:
        if os.environ.get("BACKPROP_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as interrupt:
        print(f"interrupted ({interrupt or 'SIGINT'}): no outputs written", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:
        message = environment_message(error)
        if message is None or os.environ.get("BACKPROP_DEBUG"):
            raise
        print(f"error: {scrub(message)}", file=sys.stderr)
        raise SystemExit(2) from None


def write_prepared(outputs: Outputs, folder: str | Path, task: str, arrays: dict, schema: dict) -> None:
    import numpy as np

    path = outputs.path(Path(folder) / task / "arrays.npz")
    with naming(path), open(path, "wb") as handle:
        np.savez(handle, **arrays)
    outputs.json(Path(folder) / task / "schema.json", schema)


def load_prepared(folder: str | Path, task: str):
    """(Dataset, schema dict) for one task, as the prepare stage wrote them."""
    import numpy as np

    from backprop.lab.datasets import from_arrays

    task_folder = Path(folder) / task
    if not (task_folder / "arrays.npz").is_file():
        raise DataError(f"{task_folder}/arrays.npz does not exist: run `dvc repro prepare` first")
    with np.load(task_folder / "arrays.npz", allow_pickle=False) as arrays:
        prepared = from_arrays({name: arrays[name] for name in arrays.files})
    return prepared, json.loads((task_folder / "schema.json").read_text())
