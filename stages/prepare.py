"""Validate each task's raw table and give its rows their cross-validation roles (dvc stage `prepare`)."""

import argparse

from backprop.lab.config import load_data, read_params
from backprop.lab.datasets import prepare, schema, to_arrays
from backprop.lab.io import read_csv, run_stage, sha256, staged_outputs, write_prepared
from backprop.losses import TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out", required=True, help="folder for <task>/arrays.npz (rows and fold roles) and schema.json"
    )
    args = parser.parse_args()

    data = load_data(read_params())
    with staged_outputs() as outputs:
        for task in TASKS:
            spec = data.task(task)
            prepared = prepare(
                read_csv(spec.path),
                source=spec.path,
                target=spec.target,
                task=task,
                accuracy=spec.accuracy,
                scale_target=spec.scale_target,
                folds=data.folds,
                repeats=data.repeats,
                val_size=data.val_size,
                seed=data.seed,
                allow_leaks=data.allow_leaks,
            )
            info = schema(prepared, source=spec.path, target=spec.target, task=task, sha256=sha256(spec.path))
            write_prepared(outputs, args.out, task, to_arrays(prepared), info)


if __name__ == "__main__":
    run_stage(main)
