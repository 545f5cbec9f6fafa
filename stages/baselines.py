"""Answer 2.1 with reference points: our network on all rows (the reference hand-in's protocol)
and on held-out data over seeds, beside linear models and scikit-learn's MLP (dvc stage `baselines`).

Every network fit (ours and scikit-learn's, per seed) goes through the stage's executor."""

import argparse
import dataclasses
import math

from backprop.lab.baselines import constant_model, fit_and_score, linear_model, sklearn_mlp
from backprop.lab.config import load_sweep, load_tracking, load_train, read_params
from backprop.lab.executor import Job, fit_pool
from backprop.lab.io import load_prepared, progress_bar, run_stage, staged_outputs
from backprop.lab.tracking import Tracker, result_metrics, run_tags
from backprop.lab.training import compare_only, describe_config, fit_estimates, run_params, train_on_all_rows
from backprop.losses import TASKS


def baseline_jobs(train, seeds, prepared, shared) -> list[Job]:
    """The network fits of the baselines stage, keyed (model, task, seed): ours and scikit-learn's
    on held-out data per seed, and both on all rows (no validation rows there, so no early
    stopping). ``shared`` holds the executor's handles of ``prepared``."""
    jobs = []
    for task in TASKS:
        config, data = train.for_task(task), shared[task]
        all_rows = dataclasses.replace(config, patience=0)
        for seed in seeds:
            seeded = dataclasses.replace(config, seed=seed)
            jobs.append(Job(("ours", task, seed), compare_only, (data, task, seeded), f"ours {task} seed={seed}"))
            model = sklearn_mlp(task, seeded, len(prepared[task].y["train"]))
            if model is not None:
                described = f"scikit-learn {task} seed={seed} ({describe_config(seeded)})"
                jobs.append(Job(("sklearn", task, seed), fit_and_score, (task, model, data), described))
        jobs.append(
            Job(("ours_all_rows", task, None), train_on_all_rows, (data, task, all_rows), f"ours {task} all rows")
        )
        model = sklearn_mlp(task, all_rows, len(prepared[task].y["all"]))
        if model is not None:
            jobs.append(
                Job(
                    ("sklearn_all_rows", task, None),
                    fit_and_score,
                    (task, model, data, "all", ["all"]),
                    f"scikit-learn {task} all rows",
                )
            )
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--out", required=True, help="the JSON file with every baseline's scores")
    parser.add_argument("--runs", required=True, help="JSON file for the MLflow run ids")
    args = parser.parse_args()

    params = read_params()
    train, seeds, tracking = load_train(params), load_sweep(params).seeds, load_tracking(params)
    prepared = {task: load_prepared(args.prepared, task)[0] for task in TASKS}
    report = {"seeds": seeds}
    with staged_outputs() as outputs, fit_pool() as pool:
        tracker = Tracker(tracking.experiment)  # opened while the workers start
        shared = {task: pool.share(data) for task, data in prepared.items()}
        jobs = baseline_jobs(train, seeds, prepared, shared)
        # Every baseline fit is a network of the train settings: each costs about what one of ours does.
        per_fit = fit_estimates([(prepared[task], task, train.for_task(task)) for task in TASKS])
        per_task = dict(zip(TASKS, per_fit, strict=True))
        pool.announce("baselines", [per_task[job.key[1]] for job in jobs])
        done = {}
        with (
            tracker.run("baselines", run_tags("baselines")) as parent,
            progress_bar(len(jobs), "baselines", unit="fit") as bar,
        ):
            for job, result in pool.completed(jobs):
                kind, task, seed = job.key
                if kind == "ours":
                    tags = run_tags("baselines", task=task, seed=seed, diverged=str(result.history.diverged).lower())
                    tracker.record(
                        f"ours {task} seed={seed}",
                        tags,
                        parent_id=parent,
                        params=run_params(task, result.config),
                        metrics=result_metrics(result.history, result.scores, tracking.max_logged_steps["sweep"]),
                    )
                done[job.key] = result
                bar.update()

            flat = []
            for task in TASKS:
                data, config = prepared[task], train.for_task(task)
                report[task] = {
                    "config": config.as_params(),
                    "ours_held_out": [done["ours", task, seed].summary() for seed in seeds],
                    "ours_all_rows": done["ours_all_rows", task, None],
                    "constant_held_out": fit_and_score(task, constant_model(task), data),
                    "linear_held_out": fit_and_score(task, linear_model(task), data),
                    "linear_all_rows": fit_and_score(
                        task, linear_model(task), data, fit_split="all", score_splits=["all"]
                    )["all"],
                    "sklearn_held_out": [done[key] for key in (("sklearn", task, s) for s in seeds) if key in done],
                    "sklearn_all_rows": done.get(("sklearn_all_rows", task, None), {}).get("all"),
                }
                for name in ("ours_all_rows", "linear_all_rows", "sklearn_all_rows"):
                    for metric, value in (report[task][name] or {}).items():
                        if isinstance(value, float):
                            flat.append((f"{task}_{name}_{metric}", value, 0))
            tracker.log(parent, metrics=[m for m in flat if math.isfinite(m[1])])
        outputs.json(args.out, report)
        outputs.json(args.runs, tracker.runs_file(parent=parent))


if __name__ == "__main__":
    run_stage(main)
