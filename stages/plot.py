"""Draw the learning curves and the sweep figures, attach them to their MLflow runs (dvc stage `plot`)."""

import argparse
import json
from pathlib import Path

import pandas as pd

from backprop.lab import figures
from backprop.lab.blocks import LABELS
from backprop.lab.config import load_data, load_sweep, load_tracking, read_params
from backprop.lab.executor import fit_pool
from backprop.lab.jobs import Job
from backprop.lab.outputs import staged_outputs
from backprop.lab.stage_run import run_stage
from backprop.lab.tracking import Tracker
from backprop.losses import DEFAULT_LOSS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plots", required=True, help="folder with <task>/history.csv")
    parser.add_argument("--metrics", required=True, help="folder with <task>-scores.json")
    parser.add_argument(
        "--runs", required=True, help="folder with the files that find the runs (train.json, sweep_<name>.json)"
    )
    parser.add_argument("--sweeps", required=True, help="folder with <name>/results.csv, curves.csv of every sweep")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    args = parser.parse_args()

    params = read_params()
    sweep, data = load_sweep(params), load_data(params)
    kinds = data.kinds
    out = Path(args.out)
    drawings, owners = {}, {}  # file name -> (draw, arguments); file name -> the filter that finds its run
    train_runs = json.loads((Path(args.runs) / "train.json").read_text())["runs"]
    for task, kind in kinds.items():
        made = data.task(task).generate
        scores = json.loads((Path(args.metrics) / f"{task}-scores.json").read_text())
        drawings[f"history_{task}.png"] = (
            figures.learning_curves,
            {
                "history": pd.read_csv(Path(args.plots) / task / "history.csv"),
                "title": f"{task}: the shipped network (repeat 0, fold 0; test = its held-out fold)",
                "loss": DEFAULT_LOSS[kind],
                "best_epoch": shipped_fold(scores["folds"]).get("best_epoch"),
                "accuracy": "accuracy (1 − MAPE)" if kind == "regression" else "accuracy (threshold 0.5)",
                "floor": None if made is None else made.floor,
            },
        )
        owners[f"history_{task}.png"] = train_runs[task]
    for name in sweep.specs:
        parent = json.loads((Path(args.runs) / f"sweep_{name}.json").read_text())["parent"]
        for file_name, drawing in sweep_figures(name, sweep.spec(name), Path(args.sweeps) / name, kinds).items():
            drawings[file_name], owners[file_name] = drawing, parent

    with staged_outputs() as outputs, fit_pool() as pool:
        # Figures render in the workers while this process opens MLflow.
        jobs = [Job(file_name, figures.png, drawing, f"figure {file_name}") for file_name, drawing in drawings.items()]
        running = pool.start("plot", jobs)
        tracker = Tracker(load_tracking(params).experiment)
        written = {file_name: outputs.path(out / file_name) for file_name in drawings}
        running.results(lambda job, png: written[job.key].write_bytes(png))
        attach = {}  # the filter string that finds a run -> figure paths, in the drawings' order
        for file_name, run_filter in owners.items():
            attach.setdefault(run_filter, []).append(written[file_name])
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


def sweep_figures(name: str, spec, folder: Path, kinds: dict[str, str]) -> dict:
    """File name -> (draw, arguments) for sweep ``name``'s figures, by what it asks (its kind);
    ``kinds``: task -> its kind (regression, classification)."""
    kind = spec.kind
    summary = pd.read_csv(folder / "summary.csv")
    drawn = {}
    for task in spec.tasks:
        files = spec.figure_files(name, task)
        metric = DEFAULT_LOSS[kinds[task]]
        if kind == "heatmap":
            row_key = next(key for key in spec.keys if key != "lr")
            drawn[files[0]] = (
                figures.grid_heatmap,
                {
                    "summary": summary,
                    "task": task,
                    "row_key": row_key,
                    "metric": metric,
                    "lr_in_units": spec.fixed.get("lr_unit") == "limit",
                },
            )
        elif kind == "lr":
            results = pd.read_csv(folder / "results.csv")
            drawn[files[0]] = (
                figures.lr_figure,
                {"summary": summary, "results": results, "task": task, "metric": metric},
            )
            drawn[files[1]] = (
                figures.lr_curves,
                {"curves": pd.read_csv(folder / "curves.csv"), "task": task, "metric": metric},
            )
        elif kind == "capacity":
            fixed = ", ".join(f"{key} {value}" for key, value in spec.fixed.items() if key != "patience")
            title = f"{task}: {LABELS.get(metric, metric)} vs width ({fixed}, no early stopping)"
            drawn[files[0]] = (
                figures.capacity_figure,
                {"summary": summary[summary["task"] == task], "metric": metric, "title": title},
            )
        else:
            curves = pd.read_csv(folder / "curves.csv")
            pairs = [(point.get("loss"), point.get("lr")) for point in spec.points()]
            for file, (curve, level) in zip(files, spec.reach.items(), strict=True):
                drawn[file] = (
                    figures.loss_curves,
                    {
                        "curves": curves[curves["task"] == task],
                        "reach_curve": curve,
                        "level": level,
                        "pairs": pairs,
                        "title": f"{name} ({task})",
                    },
                )
    return drawn


if __name__ == "__main__":
    run_stage(main)
