"""Write the train settings each sweep takes, per task: train.* with the task's overrides, less
the keys its grid and ``fixed`` set (dvc stage `settings`).

``sweep@<name>`` depends on its file, not on the train section: a change to a key that a sweep
sets itself (``train.lr``, which every grid sets) rewrites the same bytes, so DVC re-runs no
sweep. Values are written as params.yaml holds them (no rounding): the sweeps train with them.
"""

import argparse
import json
from pathlib import Path

from backprop.lab.config import load_kinds, load_sweep, load_train, read_params
from backprop.lab.outputs import staged_outputs
from backprop.lab.stage_run import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="folder for <sweep>.json, one file per configured sweep")
    args = parser.parse_args()

    params = read_params()
    train, sweep, kinds = load_train(params), load_sweep(params), load_kinds(params)
    with staged_outputs() as outputs:
        folder = outputs.path(Path(args.out))  # the folder is replaced whole: a removed sweep's file goes
        folder.mkdir()
        for name, spec in sweep.specs.items():
            inherited = {task: sweep.inherited(name, train, task, kinds[task]) for task in spec.tasks}
            (folder / f"{name}.json").write_text(json.dumps(inherited, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    run_stage(main)
