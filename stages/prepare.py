"""Validate, split and standardise each task's raw table (dvc stage `prepare`)."""

import argparse

import numpy as np

from backprop.lab.config import load_data, read_params
from backprop.lab.datasets import prepare, schema, to_arrays
from backprop.lab.io import read_csv, run_stage, sha256, staged_outputs, write_prepared
from backprop.losses import TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="folder for <task>/arrays.npz and schema.json")
    args = parser.parse_args()

    data = load_data(read_params())
    rng = np.random.default_rng(data.seed)
    with staged_outputs() as outputs:
        for task in TASKS:
            spec = data.task(task)
            prepared = prepare(
                read_csv(spec.path),
                source=spec.path,
                target=spec.target,
                task=task,
                accuracy=spec.accuracy,
                test_size=data.test_size,
                val_size=data.val_size,
                rng=rng,
            )
            info = schema(prepared, source=spec.path, target=spec.target, task=task, sha256=sha256(spec.path))
            write_prepared(outputs, args.out, task, to_arrays(prepared), info)


if __name__ == "__main__":
    run_stage(main)
