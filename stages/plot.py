"""Draw the learning curves and the sweep figures, attach them to their MLflow runs (dvc stage `plot`)."""

import argparse
import json
from pathlib import Path

import pandas as pd

from backprop.lab import figures
from backprop.lab.config import load_tracking, read_params
from backprop.lab.io import run_stage, staged_outputs
from backprop.lab.tracking import Tracker
from backprop.losses import DEFAULT_LOSS, TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plots", required=True, help="folder with <task>/history.csv")
    parser.add_argument("--metrics", required=True, help="folder with <task>-scores.json")
    parser.add_argument(
        "--runs", required=True, help="folder with the files that find the runs (train.json, sweep_<name>.json)"
    )
    parser.add_argument("--sweeps", required=True, help="folder with <name>/results.csv, curves.csv")
    parser.add_argument("--names", nargs="+", required=True, help="the sweeps to draw")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    args = parser.parse_args()

    tracker = Tracker(load_tracking(read_params()).experiment)
    out = Path(args.out)
    attach = {}  # the filter string that finds a run -> figure paths
    with staged_outputs() as outputs:
        train_runs = json.loads((Path(args.runs) / "train.json").read_text())["runs"]
        for task in TASKS:
            history = pd.read_csv(Path(args.plots) / task / "history.csv")
            summary = json.loads((Path(args.metrics) / f"{task}-scores.json").read_text())
            figure = figures.learning_curves(
                history,
                title=f"{task}: training curves",
                loss=DEFAULT_LOSS[task],
                best_epoch=summary["best_epoch"],
            )
            path = outputs.path(out / f"history_{task}.png")
            figures.save(figure, path)
            attach.setdefault(train_runs[task], []).append(path)

        for name in args.names:
            folder = Path(args.sweeps) / name
            results, curves = pd.read_csv(folder / "results.csv"), pd.read_csv(folder / "curves.csv")
            summary_path = outputs.path(out / f"sweep_{name}_summary.png")
            figures.save(figures.sweep_summary(results, name=name, metrics=DEFAULT_LOSS), summary_path)
            curves_path = outputs.path(out / f"sweep_{name}_curves.png")
            figures.save(figures.sweep_curves(curves, results, name=name, metrics=DEFAULT_LOSS), curves_path)
            parent = json.loads((Path(args.runs) / f"sweep_{name}.json").read_text())["parent"]
            attach.setdefault(parent, []).extend([summary_path, curves_path])

        # The latest run each filter finds: the one that made these outputs (an earlier run with the
        # same filter had the same code, params and data).
        for run_filter, paths in attach.items():
            run_id = tracker.find_run(run_filter)
            if run_id is None:
                print(f"no MLflow run in {tracker.uri} has {run_filter} (store reset?): figures not attached")
                continue
            tracker.log_artifacts(run_id, paths, "figures")


if __name__ == "__main__":
    run_stage(main)
