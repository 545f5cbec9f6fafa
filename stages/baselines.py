"""Reference points for 2.1, on the same folds as our network: the constant model, the linear
model and scikit-learn's MLP with our settings and early stopping; and, labelled as such, the
reference hand-in's protocol (fit and score on all rows) for ours, the linear model and
scikit-learn's (dvc stage `baselines`).

Every fit goes through the stage's executor."""

import argparse
import dataclasses
import math
from dataclasses import dataclass

from backprop.lab.baselines import all_rows_baselines, fold_baselines, fold_sklearn_mlp, sklearn_mlp
from backprop.lab.config import load_kinds, load_tracking, load_train, read_params
from backprop.lab.datafiles import load_prepared
from backprop.lab.executor import fit_pool
from backprop.lab.jobs import Job
from backprop.lab.outputs import staged_outputs
from backprop.lab.provenance import run_tags
from backprop.lab.run_metrics import model_metrics
from backprop.lab.stage_run import progress_bar, run_stage
from backprop.lab.sweeps import fold_config
from backprop.lab.tracking import Tracker
from backprop.lab.training import describe_config, fit_all_rows, fit_estimates, run_params


@dataclass(frozen=True)
class BaselineKey:
    """A baseline fit's coordinates: the model (linear, sklearn, ours_all_rows, others_all_rows),
    the task, and its fold (none for the fits on all rows)."""

    model: str
    task: str
    repeat: int | None = None
    fold: int | None = None


def fold_setting(train, dataset, task: str, repeat: int, fold: int):
    """The train settings of ``task`` with the seed of its fold: what scikit-learn's network fits."""
    return fold_config(train.for_task(task, dataset.kind), repeat, fold, dataset.roles.shape[1])


def baseline_jobs(train, datasets, shared) -> list[Job]:
    """The fits of the baselines stage: the linear and constant models and scikit-learn's MLP on
    every fold, then every model on all rows."""
    jobs = []
    for task, dataset in datasets.items():
        kind = dataset.kind  # the fits are of the task's kind; the keys name the task
        data = shared[task]
        for repeat, fold in datasets[task].folds:
            where = f"{task} repeat {repeat} fold {fold}"
            key = BaselineKey("linear", task, repeat, fold)
            jobs.append(Job(key, fold_baselines, (data, kind, repeat, fold), f"linear {where}"))
            seeded = fold_setting(train, dataset, task, repeat, fold)
            if sklearn_mlp(kind, seeded, 1) is not None:
                described = f"scikit-learn {where} ({describe_config(seeded)})"
                key = BaselineKey("sklearn", task, repeat, fold)
                jobs.append(Job(key, fold_sklearn_mlp, (data, kind, seeded, repeat, fold), described))
        all_rows = dataclasses.replace(train.for_task(task, kind), patience=0)  # no rows are left to stop early on
        jobs.append(
            Job(BaselineKey("ours_all_rows", task), fit_all_rows, (data, kind, all_rows), f"ours {task} all rows")
        )
        jobs.append(
            Job(
                BaselineKey("others_all_rows", task),
                all_rows_baselines,
                (data, kind, all_rows),
                f"linear and scikit-learn {task} all rows",
            )
        )
    return jobs


def tables(jobs: list[Job], results: list) -> tuple[list[dict], dict]:
    """The held-out table (a row per model and fold) and every model's scores on all rows, per task."""
    held_out, every_row = [], {}
    for job, result in zip(jobs, results, strict=True):
        key = job.key
        if key.model == "linear":
            held_out += [flat(key.task, model, key.repeat, key.fold, scores) for model, scores in result.items()]
        elif key.model == "sklearn":
            held_out.append(flat(key.task, "sklearn", key.repeat, key.fold, result))
        elif key.model == "ours_all_rows":
            every_row.setdefault(key.task, {})["ours"] = result
        else:
            every_row.setdefault(key.task, {}).update(result)
    return held_out, every_row


def flat(task: str, model: str, repeat: int, fold: int, scores: dict) -> dict:
    """One row of the held-out table: the model, the fold, its scores as <split>_<metric>."""
    row = {"task": task, "model": model, "repeat": repeat, "fold": fold}
    for key, value in scores.items():
        if isinstance(value, dict):
            row |= {f"{key}_{metric}": number for metric, number in value.items()}
        else:
            row[key] = value
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--out", required=True, help="the JSON file with every baseline's scores")
    parser.add_argument("--runs", required=True, help="JSON file of the MLflow filter strings that find the runs")
    args = parser.parse_args()

    params = read_params()
    train, tracking = load_train(params), load_tracking(params)
    datasets = {task: load_prepared(args.prepared, task)[0] for task in load_kinds(params)}
    with staged_outputs() as outputs, fit_pool() as pool:
        shared = {task: pool.share(data) for task, data in datasets.items()}
        jobs = baseline_jobs(train, datasets, shared)

        def estimate() -> list[float]:
            # scikit-learn's network costs about what ours does; the linear models next to nothing.
            fits = [(data, task, train.for_task(task, data.kind)) for task, data in datasets.items()]
            per_task = dict(zip(datasets, fit_estimates(fits), strict=True))
            return [per_task[job.key.task] for job in jobs if job.key.model != "linear"]

        running = pool.start("baselines", jobs, estimate)
        tracker = Tracker(tracking.experiment)  # imported and opened while the first fits run
        with (
            tracker.run("baselines", run_tags("baselines")) as parent,
            progress_bar(len(jobs), "baselines", unit="fit") as bar,
        ):

            def record_fit(job: Job, result) -> None:
                key = job.key
                if key.model != "sklearn":
                    return
                tracker.record(
                    f"scikit-learn {key.task} r{key.repeat}f{key.fold}",
                    run_tags("baselines", task=key.task, repeat=key.repeat, fold=key.fold, model="scikit-learn"),
                    parent_id=parent,
                    params=run_params(
                        key.task,
                        fold_setting(train, datasets[key.task], key.task, key.repeat, key.fold),
                        datasets[key.task].kind,
                    ),
                    metrics=model_metrics({k: v for k, v in result.items() if isinstance(v, dict)}),
                )

            held_out, every_row = tables(jobs, running.results(record_fit, bar))
            metrics = [
                (f"{task}_all_rows_{model}_{metric}", value, 0)
                for task, models in every_row.items()
                for model, scores in models.items()
                for metric, value in scores.items()
                if isinstance(value, float) and math.isfinite(value)
            ]
            tracker.log(parent, metrics=metrics)
        outputs.json(args.out, {"held_out": held_out, "all_rows": every_row})
        outputs.json(args.runs, tracker.runs_file(parent=parent))


if __name__ == "__main__":
    run_stage(main)
