"""Read (or generate) each task's raw table, validate it and give its rows their cross-validation
roles (dvc stage `prepare`)."""

import argparse
import hashlib

from backprop.lab.config import load_data, read_params
from backprop.lab.datafiles import read_csv, sha256, write_prepared
from backprop.lab.datasets import GENERATORS, prepare, schema, to_arrays
from backprop.lab.outputs import staged_outputs
from backprop.lab.stage_run import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out", required=True, help="folder for <task>/arrays.npz (rows and fold roles) and schema.json"
    )
    args = parser.parse_args()

    data = load_data(read_params())
    with staged_outputs() as outputs:
        for task, spec in data.tasks.items():
            made = spec.generate
            if made is None:
                table, digest, floor = read_csv(spec.path), sha256(spec.path), None
            else:  # the table follows from params: its digest is that of the CSV it would be
                table = GENERATORS[made.name](made.rows, made.noise, made.seed, spec.target)
                digest = hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()
                floor = made.floor
            prepared = prepare(
                table,
                source=spec.source,
                target=spec.target,
                task=spec.kind,
                accuracy=spec.accuracy,
                scale_target=spec.scale_target,
                folds=data.folds,
                repeats=data.repeats,
                val_size=data.val_size,
                seed=data.seed,
                allow_leaks=data.allow_leaks,
                generator="" if made is None else made.name,
            )
            info = schema(prepared, source=spec.source, target=spec.target, task=task, sha256=digest, noise_floor=floor)
            write_prepared(outputs, args.out, task, to_arrays(prepared), info)


if __name__ == "__main__":
    run_stage(main)
