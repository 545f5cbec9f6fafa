"""Answer 2.1 with reference points: our network on all rows (the reference hand-in's protocol)
and on held-out data over seeds, beside linear models and scikit-learn's MLP (dvc stage `baselines`)."""

import argparse
import dataclasses
import math

from backprop.lab.baselines import constant_model, fit_and_score, linear_model, sklearn_mlp
from backprop.lab.config import load_sweep, load_tracking, load_train, read_params
from backprop.lab.datasets import SPLITS
from backprop.lab.io import load_prepared, run_stage, staged_outputs
from backprop.lab.tracking import Tracker, result_metrics, run_tags
from backprop.lab.training import train_model, train_on_all_rows
from backprop.losses import TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--out", required=True, help="the JSON file with every baseline's scores")
    parser.add_argument("--runs", required=True, help="JSON file for the MLflow run ids")
    args = parser.parse_args()

    params = read_params()
    train, seeds, tracking = load_train(params), load_sweep(params).seeds, load_tracking(params)
    tracker = Tracker(tracking.experiment)
    report = {"seeds": seeds}
    with staged_outputs() as outputs, tracker.run("baselines", run_tags("baselines")) as parent:
        flat = []
        for task in TASKS:
            prepared, _ = load_prepared(args.prepared, task)
            config = train.for_task(task)
            # No validation rows when fitting on every row, so no early stopping there.
            all_rows_config = dataclasses.replace(config, patience=0)
            ours_held_out = []
            for seed in seeds:
                seeded = dataclasses.replace(config, seed=seed)
                result = train_model(prepared, task, seeded)
                tags = run_tags("baselines", task=task, seed=seed, diverged=str(result.history.diverged).lower())
                with tracker.run(f"ours {task} seed={seed}", tags, parent_id=parent) as child:
                    metrics = result_metrics(result.history, result.scores, tracking.max_logged_steps)
                    tracker.log(child, params=seeded.as_params() | {"task": task}, metrics=metrics)
                ours_held_out.append(result.summary())
            sklearn_runs = []
            for seed in seeds:
                model = sklearn_mlp(task, dataclasses.replace(config, seed=seed), len(prepared.y["train"]))
                if model is not None:
                    sklearn_runs.append(
                        fit_and_score(task, model, prepared, fit_split="train", score_splits=list(SPLITS))
                    )
            all_rows_sklearn = sklearn_mlp(task, all_rows_config, len(prepared.y["all"]))
            report[task] = {
                "config": config.as_params(),
                "ours_held_out": ours_held_out,
                "ours_all_rows": train_on_all_rows(prepared, task, all_rows_config),
                "constant_held_out": fit_and_score(
                    task, constant_model(task), prepared, fit_split="train", score_splits=list(SPLITS)
                ),
                "linear_held_out": fit_and_score(
                    task, linear_model(task), prepared, fit_split="train", score_splits=list(SPLITS)
                ),
                "linear_all_rows": fit_and_score(
                    task, linear_model(task), prepared, fit_split="all", score_splits=["all"]
                )["all"],
                "sklearn_held_out": sklearn_runs,
                "sklearn_all_rows": (
                    fit_and_score(task, all_rows_sklearn, prepared, fit_split="all", score_splits=["all"])["all"]
                    if all_rows_sklearn is not None
                    else None
                ),
            }
            for name in ("ours_all_rows", "linear_all_rows", "sklearn_all_rows"):
                for metric, value in (report[task][name] or {}).items():
                    if isinstance(value, float):
                        flat.append((f"{task}_{name}_{metric}", value, 0))
        tracker.log(parent, metrics=[m for m in flat if math.isfinite(m[1])])
        outputs.json(args.out, report)
        outputs.json(args.runs, {"tracking_uri": tracker.uri, "parent": parent})


if __name__ == "__main__":
    run_stage(main)
