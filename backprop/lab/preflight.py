"""What must hold before `dvc repro` starts (``make repro`` runs this first).

DVC reads params.yaml and hashes every dependency before any stage runs, so the stages' own
checks come too late for two kinds of input: a params.yaml whose YAML aliases expand to billions
of values (DVC expands them while it compares params, and never finishes) and a data path that is
not a regular file (DVC reads a FIFO or a symlink to ``/dev/zero`` to hash it, and never
finishes). This checks both without expanding or reading anything: one line and exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from backprop.lab.config import ConfigError, load_data, read_params
from backprop.lab.datasets import DataError


def check_data_paths(params: dict) -> None:
    """Each data path must be a regular file (a symlink to one is fine): DVC hashes it whole."""
    from backprop.lab.datafiles import not_a_file

    data = load_data(params)
    for task, spec in data.tasks.items():
        if spec.path is None:  # a generated table: no file to hash
            continue
        path = Path(spec.path)
        if not path.is_file():
            raise DataError(
                f"data.{task}.path: {path} {not_a_file(path)}; DVC would hash it before any stage runs "
                f"(a FIFO or a device never ends): copy the data into a regular file"
            )


def main(params_file: str = "params.yaml") -> None:
    try:
        check_data_paths(read_params(params_file))
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main(*sys.argv[1:2])
