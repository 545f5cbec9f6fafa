"""A stage's outputs: written to a staging folder and moved into place together, in JSON and CSV
that diff well."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

from backprop.lab.processes import INTERRUPTS, pid_alive

# Outputs are written under <where the stage runs>/.backprop-staging/<pid>/ first: outside every
# folder dvc.yaml declares, so a stage killed with SIGKILL leaves nothing that DVC would record
# or git would show, and on the same file system as the outputs, so the final moves are atomic.
STAGING_DIR = ".backprop-staging"


def staging_root() -> Path:
    return Path.cwd() / STAGING_DIR


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
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
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
