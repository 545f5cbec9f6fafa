"""Stage plumbing: all-or-nothing outputs, one-line errors, interruption, JSON that diffs well."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from backprop.lab.config import ConfigError
from backprop.lab.datasets import DataError

INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Outputs:
    """Outputs are written to hidden temporary files and moved into place together only when
    the stage body succeeds, so a failed or interrupted stage leaves nothing that looks real."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._created: list[Path] = []

    def path(self, final: str | Path) -> Path:
        """Where to write ``final`` for now: a hidden sibling folder, same file name (so an
        MLflow artifact logged from it is named right), same file system (so the move is atomic)."""
        final = Path(final)
        temporary = final.parent / f".partial-{os.getpid()}" / final.name
        created = next((p for p in reversed(temporary.parents) if not p.exists()), None)
        if created is not None and created != temporary.parent:
            self._created.append(created)  # folders that exist only for this stage's outputs
        temporary.parent.mkdir(parents=True, exist_ok=True)
        self._pending.append((temporary, final))
        return temporary

    def json(self, final: str | Path, data) -> None:
        self.path(final).write_text(dumps(data))

    def text(self, final: str | Path, text: str) -> None:
        self.path(final).write_text(text)

    def commit(self) -> None:
        # Signals wait until every file is in place: a half-moved set of outputs would look real.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPT_SIGNALS)
        try:
            for temporary, final in self._pending:
                if temporary.is_dir() and final.is_dir():  # a folder output (a model) is replaced whole
                    shutil.rmtree(final)
                os.replace(temporary, final)
            self._remove_folders()
            self._created.clear()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def discard(self) -> None:
        for temporary, _ in self._pending:
            if temporary.is_dir():
                shutil.rmtree(temporary)
            else:
                temporary.unlink(missing_ok=True)
        self._remove_folders()
        for folder in reversed(self._created):
            shutil.rmtree(folder, ignore_errors=True)
        self._created.clear()

    def _remove_folders(self) -> None:
        for folder in {temporary.parent for temporary, _ in self._pending}:
            shutil.rmtree(folder, ignore_errors=True)
        self._pending.clear()


@contextlib.contextmanager
def staged_outputs() -> Iterator[Outputs]:
    outputs = Outputs()
    try:
        yield outputs
    except BaseException:
        outputs.discard()
        raise
    outputs.commit()


def finite_or_none(value):
    """JSON has no NaN: a diverged metric is written as null next to ``diverged: true``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


def dumps(data) -> str:
    return json.dumps(finite_or_none(data), indent=2, sort_keys=True, allow_nan=False) + "\n"


def read_csv(path: str | Path):
    """The raw table, or a DataError that says what is wrong with the file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not a readable CSV: {str(error).splitlines()[0]}") from None


def progress_bar(total: int, description: str):
    """A tqdm bar on stderr for interactive runs; silent in CI and when output is not a terminal."""
    from tqdm import tqdm

    quiet = bool(os.environ.get("CI")) or None  # None: tqdm turns itself off without a TTY
    return tqdm(total=total, desc=description, unit="epoch", leave=False, disable=quiet, mininterval=0.5)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _record_timing(seconds: float) -> None:
    """With BACKPROP_TIMINGS=<file>, append this stage's time and its MLflow share (benchmarks)."""
    path = os.environ.get("BACKPROP_TIMINGS")
    if not path:
        return
    tracking = sys.modules.get("backprop.lab.tracking")
    record = {
        "stage": os.environ.get("DVC_STAGE", " ".join(sys.argv[:2])),
        "seconds": seconds,
        "mlflow_seconds": tracking.time_in_mlflow if tracking else 0.0,
    }
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(): bad input ends in one line on stderr and exit 2; SIGINT and
    SIGTERM unwind like Ctrl-C (MLflow runs end KILLED, staged outputs are discarded), exit 130."""
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.perf_counter()
    try:
        main()
        _record_timing(time.perf_counter() - started)
    except (ConfigError, DataError) as error:
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


def write_prepared(outputs: Outputs, folder: str | Path, task: str, arrays: dict, schema: dict) -> None:
    import numpy as np

    with open(outputs.path(Path(folder) / task / "arrays.npz"), "wb") as handle:
        np.savez(handle, **arrays)
    outputs.json(Path(folder) / task / "schema.json", schema)


def load_prepared(folder: str | Path, task: str):
    """(Prepared, schema dict) for one task, as the prepare stage wrote them."""
    import numpy as np

    from backprop.lab.datasets import from_arrays

    task_folder = Path(folder) / task
    if not (task_folder / "arrays.npz").is_file():
        raise DataError(f"{task_folder}/arrays.npz does not exist: run `dvc repro prepare` first")
    with np.load(task_folder / "arrays.npz", allow_pickle=False) as arrays:
        prepared = from_arrays({name: arrays[name] for name in arrays.files})
    return prepared, json.loads((task_folder / "schema.json").read_text())
