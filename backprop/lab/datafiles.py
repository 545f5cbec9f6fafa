"""The data files: a raw CSV table read with errors that say what is wrong with it, and the
prepared arrays the prepare stage writes and every fitting stage loads."""

from __future__ import annotations

import csv
import hashlib
import json
import stat
from pathlib import Path

from backprop.lab.datasets import DataError, check_header, from_arrays
from backprop.lab.outputs import Outputs, naming


def read_csv(path: str | Path):
    """The raw table, or a DataError that says what is wrong with the file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} {not_a_file(path)}")
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


def not_a_file(path: Path) -> str:
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


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_prepared(outputs: Outputs, folder: str | Path, task: str, arrays: dict, schema: dict) -> None:
    import numpy as np

    path = outputs.path(Path(folder) / task / "arrays.npz")
    with naming(path), open(path, "wb") as handle:
        np.savez(handle, **arrays)
    outputs.json(Path(folder) / task / "schema.json", schema)


def load_prepared(folder: str | Path, task: str):
    """(Dataset, schema dict) for one task, as the prepare stage wrote them."""
    import numpy as np

    task_folder = Path(folder) / task
    if not (task_folder / "arrays.npz").is_file():
        raise DataError(f"{task_folder}/arrays.npz does not exist: run `dvc repro prepare` first")
    with np.load(task_folder / "arrays.npz", allow_pickle=False) as arrays:
        prepared = from_arrays({name: arrays[name] for name in arrays.files})
    return prepared, json.loads((task_folder / "schema.json").read_text())
