"""Draw the learning curves and the sweep figures, attach them to their MLflow runs (dvc stage `plot`)."""

import argparse
import json
from pathlib import Path

import pandas as pd

from backprop.lab import figures
from backprop.lab.config import load_sweep, load_tracking, read_params
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

    params = read_params()
    tracker = Tracker(load_tracking(params).experiment)
    sweep = load_sweep(params)
    out = Path(args.out)
    attach = {}  # the filter string that finds a run -> figure paths
    with staged_outputs() as outputs:
        train_runs = json.loads((Path(args.runs) / "train.json").read_text())["runs"]
        for task in TASKS:
            history = pd.read_csv(Path(args.plots) / task / "history.csv")
            scores = json.loads((Path(args.metrics) / f"{task}-scores.json").read_text())
            figure = figures.learning_curves(
                history,
                title=f"{task}: the shipped network (repeat 0, fold 0; test = its held-out fold)",
                loss=DEFAULT_LOSS[task],
                best_epoch=shipped_fold(scores["folds"]).get("best_epoch"),
                accuracy="accuracy (1 − MAPE)" if task == "regression" else "accuracy (threshold 0.5)",
            )
            path = outputs.path(out / f"history_{task}.png")
            figures.save(figure, path)
            attach.setdefault(train_runs[task], []).append(path)

        for name in args.names:
            folder = Path(args.sweeps) / name
            drawn = sweep_figures(name, sweep.spec(name), folder)
            paths = []
            for file_name, figure in drawn.items():
                paths.append(outputs.path(out / file_name))
                figures.save(figure, paths[-1])
            parent = json.loads((Path(args.runs) / f"sweep_{name}.json").read_text())["parent"]
            attach.setdefault(parent, []).extend(paths)

        # The latest run each filter finds: the one that made these outputs (an earlier run with the
        # same filter had the same code, params and data).
        for run_filter, paths in attach.items():
            run_id = tracker.find_run(run_filter)
            if run_id is None:
                print(f"no MLflow run in {tracker.uri} has {run_filter} (store reset?): figures not attached")
                continue
            tracker.log_artifacts(run_id, paths, "figures")


def shipped_fold(folds: list[dict]) -> dict:
    """The fold the train stage ships: repeat 0, fold 0."""
    return next(row for row in folds if row["repeat"] == 0 and row["fold"] == 0)


def sweep_figures(name: str, spec, folder: Path) -> dict:
    """File name -> figure for sweep ``name``, by what its grid varies (figures.figure_kind)."""
    kind = figures.figure_kind(spec.keys, fixed=spec.fixed, reach=spec.reach)
    summary = pd.read_csv(folder / "summary.csv")
    drawn = {}
    for task in spec.tasks:
        suffix = f"_{task}" if len(spec.tasks) > 1 else ""
        metric = DEFAULT_LOSS[task]
        if kind == "heatmap":
            row_key = next(key for key in spec.keys if key != "lr")
            drawn[f"sweep_{name}_{task}.png"] = figures.grid_heatmap(summary, task=task, row_key=row_key, metric=metric)
        elif kind == "lr":
            results = pd.read_csv(folder / "results.csv")
            drawn[f"sweep_{name}{suffix}.png"] = figures.lr_figure(summary, results, task=task, metric=metric)
        elif kind == "capacity":
            fixed = ", ".join(f"{key} {value}" for key, value in spec.fixed.items() if key != "patience")
            title = f"{task}: {figures.METRIC_NAME.get(metric, metric)} vs width ({fixed}, no early stopping)"
            drawn[f"sweep_{name}{suffix}.png"] = figures.capacity_figure(
                summary[summary["task"] == task], metric=metric, title=title
            )
        else:
            curves = pd.read_csv(folder / "curves.csv")
            pairs = [(point.get("loss"), point.get("lr")) for point in spec.points()]
            for curve, level in spec.reach.items():
                extra = f"_{curve}" if len(spec.reach) > 1 else ""
                drawn[f"sweep_{name}{suffix}{extra}.png"] = figures.loss_curves(
                    curves[curves["task"] == task],
                    reach_curve=curve,
                    level=level,
                    pairs=pairs,
                    title=f"{name} ({task})",
                )
    return drawn


if __name__ == "__main__":
    run_stage(main)
