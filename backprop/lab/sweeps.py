"""A sweep: every point of a grid on every fold, each fit the same ``train_model`` as the train
stage; its tables (results, curves, summary). No I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from backprop.lab.config import CurvesConfig, SweepConfig, SweepSpec, TrainConfig
from backprop.lab.datasets import SPLITS, Dataset, fold_rows
from backprop.lab.jobs import Job
from backprop.lab.mechanisms import peak_epoch
from backprop.lab.protocol import OUTCOMES, fit_seed, fold_summary, overlap_ratio
from backprop.lab.thinning import downsample_steps
from backprop.lab.training import RunResult, describe_config, fit_fold, initial_lr_limit
from backprop.metrics import SUMMARY_METRICS

# The settings that fix the loss surface at initialisation: one lr limit per combination.
LIMIT_KEYS = ("hidden", "activation", "loss", "init")


def cell(value):
    """A point's value as a table cell: a one-layer width as its integer, a list as text."""
    if isinstance(value, list | tuple):
        return int(value[0]) if len(value) == 1 else "-".join(map(str, value))
    return value


@dataclass(frozen=True)
class FitKey:
    """A fit's coordinates: its task, repeat and fold, and in a sweep its grid point (the index
    in ``SweepConfig.configs``; the train stage has one setting per task)."""

    task: str
    repeat: int
    fold: int
    point: int = 0


@dataclass(frozen=True)
class LimitKey:
    """An lr-limit estimate's coordinates: the network at initialisation (``limit_key``), the fold."""

    network: tuple
    repeat: int
    fold: int


def fold_config(config: TrainConfig, repeat: int, fold: int, folds: int) -> TrainConfig:
    return dataclasses.replace(config, seed=fit_seed(config.seed, repeat, fold, folds))


def sweep_jobs(
    name: str, sweep: SweepConfig, inherited: Mapping[str, dict], datasets: Mapping[str, Dataset], shared
) -> list[Job]:
    """One fit per (task, point, repeat, fold) of sweep ``name``, keyed by those coordinates, each
    with the seed of its fold: never its place in an execution order. ``inherited`` maps a task
    to the train settings the sweep takes (SweepConfig.inherited), ``shared`` to the executor's
    handle of its dataset."""
    jobs = []
    for task in sweep.spec(name).tasks:
        folds, kind = datasets[task].roles.shape[1], datasets[task].kind
        for index, (point, config) in enumerate(sweep.configs(name, inherited[task], task, kind)):
            for repeat, fold in datasets[task].folds:
                seeded = fold_config(config, repeat, fold, folds)
                where = ", ".join(f"{key}={value}" for key, value in point.items())
                where += f" (sweep {name}, repeat {repeat}, fold {fold}, {task}"
                jobs.append(
                    Job(
                        key=FitKey(task, repeat, fold, index),
                        fn=fit_fold,
                        args=(shared[task], kind, seeded, repeat, fold),
                        describe=f"{where}; {describe_config(seeded)})",
                    )
                )
    return jobs


def limit_jobs(
    name: str, sweep: SweepConfig, inherited: Mapping[str, dict], datasets: Mapping[str, Dataset], shared
) -> list[Job]:
    """One lr-limit estimate per (task, network at initialisation, repeat, fold): points that
    differ only in lr, epochs or patience share their network, hence their limit."""
    jobs, seen = [], set()
    for task in sweep.spec(name).tasks:
        folds, kind = datasets[task].roles.shape[1], datasets[task].kind
        for _, config in sweep.configs(name, inherited[task], task, kind):
            network = limit_key(task, config, kind)
            for repeat, fold in datasets[task].folds:
                if (network, repeat, fold) in seen:
                    continue
                seen.add((network, repeat, fold))
                seeded = fold_config(config, repeat, fold, folds)
                jobs.append(
                    Job(
                        key=LimitKey(network, repeat, fold),
                        fn=initial_lr_limit,
                        args=(shared[task], kind, seeded, repeat, fold),
                        describe=f"lr limit of {describe_config(seeded)} repeat {repeat} fold {fold} on {task}",
                    )
                )
    return jobs


def limit_key(task: str, config: TrainConfig, kind: str | None = None) -> tuple:
    values = config.as_params() | {"loss": config.loss_for(kind or task)}
    return (task, *(str(values[key]) for key in LIMIT_KEYS))


# A reach curve named <split> + this: its level is a fraction of the constant model's loss on
# that split (the training mean, or the share of positives), so one level means the same on any
# target: 0.6 on train is a training R² of 0.4 for MSE.
OF_CONSTANT = "_loss_of_constant"


def first_epoch_reaching(curve, level: float, *, higher_is_better: bool = True):
    """The first epoch whose value reaches ``level`` (an accuracy: at or above; a loss: at or
    below), or None if the curve never does."""
    values = np.asarray(curve, dtype=float)
    hits = np.flatnonzero(values >= level if higher_is_better else values <= level)
    return int(hits[0]) if len(hits) else None


def peak_ratio(history) -> float:
    """The highest training loss over the epochs that trained, as a multiple of the first: above
    1, the loss rose before it fell (a step past the stable limit that the network survived)."""
    last = history.epochs_run if history.diverged_epoch is None else history.diverged_epoch
    loss = np.asarray(history.train_loss[: max(last, 1)], dtype=float)
    loss = loss[np.isfinite(loss)]
    return float(loss.max() / loss[0]) if len(loss) and loss[0] > 0 else float("nan")


def still_improving(history) -> bool:
    """Whether the epoch budget, not training, ended the fit: with early stopping, its best
    (validation) epoch is the last; without, the loss it minimises is lowest at its last epoch.
    A fit that stopped early or diverged was not cut short by the budget."""
    if history.stopped_early or history.diverged or history.epochs_run == 0:
        return False
    last = history.epochs_run - 1
    if history.best_epoch is not None:
        return history.best_epoch == last
    loss = np.asarray(history.train_loss[: history.epochs_run], dtype=float)
    return bool(loss[last] < loss[:last].min()) if last > 0 else False


def result_row(task: str, point: dict, repeat: int, fold: int, result: RunResult, reach: dict | None = None) -> dict:
    """One line of results.csv: the varied keys (named as in train), the fold, how training
    went (with the epoch of its highest training loss, and the share of hidden units saturated
    or dead on the training rows and the sharpness, at the returned and at the last weights, and
    after a catapult: ``training.fit_measures``), the scores on the fold's train, validation and
    held-out test rows, and for each ``reach`` curve the first epoch it reached its level
    (``reach_<curve>``, empty if never; ``<split>_loss_of_constant``: the split's loss at or
    below that fraction of the constant model's)."""
    history = result.history
    trained = history.epochs_run if history.diverged_epoch is None else history.diverged_epoch
    reached = {
        f"reach_{curve}": first_epoch_reaching(history.columns[curve], level, higher_is_better="accuracy" in curve)
        for curve, level in (reach or {}).items()
        if curve in history.columns
    }
    for curve, fraction in (reach or {}).items():
        split = curve.removesuffix(OF_CONSTANT)
        if curve.endswith(OF_CONSTANT) and split in result.constant_losses:
            level = fraction * result.constant_losses[split]
            loss = history.columns[f"{split}_{history.loss_name}"]
            reached[f"reach_{curve}"] = first_epoch_reaching(loss, level, higher_is_better=False)
    measures = result.measures
    return (
        {"task": task}
        | {key: cell(value) for key, value in point.items()}
        | {
            "repeat": repeat,
            "fold": fold,
            "seed": result.config.seed,
            "lr_applied": result.config.lr,  # the step itself: lr × the fold's limit when lr_unit is limit
            "epochs_run": history.epochs_run,
            "best_epoch": history.best_epoch,
            "still_improving": still_improving(history),
            "diverged_epoch": history.diverged_epoch,
            "outcome": result.outcome,
            "peak_train_loss_ratio": peak_ratio(history),
            "peak_train_loss_epoch": peak_epoch(history.train_loss, max(trained, 1)),
            # a diverged fit's weights hold inf or NaN, and a fit that returns its start (best
            # epoch 0) learned nothing to measure: neither is measured (training.fit_measures)
            "saturated_units": measures.get("saturated_units", np.nan),
            "dead_units": measures.get("dead_units", np.nan),
            # lr·λ_max/2 at the returned weights: 1 is the edge of stability, below it a flatter place
            "sharpness_end": measures.get("sharpness", np.nan),
            "stability_ratio_end": result.config.lr * measures.get("sharpness", np.nan) / 2,
            # the same at the last update's weights, where a fit that failed after its start ended
            "saturated_units_last": measures.get("saturated_units_last", np.nan),
            "dead_units_last": measures.get("dead_units_last", np.nan),
            "sharpness_last": measures.get("sharpness_last", np.nan),
            # λ_max where a catapult's training loss came back to its start (empty: no spike or no return)
            "sharpness_after_peak": measures.get("sharpness_after_peak", np.nan),
            "sharpness_after_peak_epoch": measures.get("sharpness_after_peak_epoch"),
        }
        | reached
        | result.flat_scores()
    )


def curve_rows(
    task: str, point: dict, repeat: int, fold: int, result: RunResult, *, epochs: int, points: int, first: int = 0
):
    """The fit's curves on a grid shared by every fold (from the configured epochs), so the mean
    over folds lines up, with every one of the ``first`` epochs too (where the losses part ways);
    a fit that stopped or diverged early simply has fewer rows."""
    steps = np.union1d(np.arange(min(first, epochs)), downsample_steps(epochs, points))
    steps = steps[steps < result.history.epochs_run]
    frame = pd.DataFrame({column: values[steps] for column, values in result.history.columns.items()})
    columns = {"task": task} | {key: cell(value) for key, value in point.items()}
    columns |= {"repeat": repeat, "fold": fold, "epoch": steps}
    for position, (column, value) in enumerate(columns.items()):
        frame.insert(position, column, value)
    return frame


def summarise(results: pd.DataFrame, keys: list[str], metrics: Mapping[str, list[str]], ratios: Mapping[str, float]):
    """summary.csv: one row per (task, point): fits, the count of each outcome, and for each of
    ``metrics[task]`` on train, val and test the mean, std and 95% interval over the fits that learned
    (a stalled fit scores its untrained weights, an oscillating one a lucky low: neither is a
    trained result). ``ratios[task]`` (n_test / n_train) widens the interval for overlapping training folds."""
    rows = []
    for (task, *values), fits in results.groupby(["task", *keys], sort=False):
        row = {"task": task} | dict(zip(keys, values, strict=True)) | {"fits": len(fits)}
        row |= {name: int((fits["outcome"] == name).sum()) for name in OUTCOMES}
        learned = fits[fits["outcome"] == "learned"]
        row["capped"] = int(learned["still_improving"].sum())  # stopped by the epoch budget
        row["best_epoch_mean"] = float(learned["best_epoch"].mean()) if learned["best_epoch"].notna().any() else np.nan
        row["peak_train_loss_ratio_max"] = float(learned["peak_train_loss_ratio"].max()) if len(learned) else np.nan
        if "peak_train_loss_epoch" in learned:
            peaks = learned["peak_train_loss_epoch"]
            row["peak_train_loss_epoch_max"] = float(peaks.max()) if peaks.notna().any() else np.nan
        if "stability_ratio_end" in learned:
            ratios_end = learned["stability_ratio_end"]
            row["stability_ratio_end_mean"] = float(ratios_end.mean()) if ratios_end.notna().any() else np.nan
        if "sharpness_after_peak" in learned:  # the curvature a catapult left, where its loss came back
            after = learned["sharpness_after_peak"]
            row["sharpness_after_peak_mean"] = float(after.mean()) if after.notna().any() else np.nan
            epochs = learned["sharpness_after_peak_epoch"]
            row["sharpness_after_peak_epoch_max"] = float(epochs.max()) if epochs.notna().any() else np.nan
        if "sharpness_last" in learned and "lr_applied" in learned:  # lr·λ_max/2 where training ended
            ratios_last = learned["lr_applied"] * learned["sharpness_last"] / 2
            row["stability_ratio_last_mean"] = float(ratios_last.mean()) if ratios_last.notna().any() else np.nan
        failed = fits[fits["outcome"] != "learned"]
        # they explain the fits that failed: at their returned weights, and where they ended
        for measure in ("saturated_units", "dead_units", "saturated_units_last", "dead_units_last"):
            if measure in fits:
                for suffix, part in (("mean", fits), ("not_learned_mean", failed)):
                    values = part[measure]
                    row[f"{measure}_{suffix}"] = float(values.mean()) if values.notna().any() else np.nan
        columns = [f"{split}_{metric}" for metric in metrics[task] for split in SPLITS]
        for column, stats in fold_summary(learned, columns, ratios[task]).items():
            row |= {f"{column}_{name}": value for name, value in stats.items() if name != "n"}
        rows.append(row)
    return pd.DataFrame(rows)


def fit_tables(
    keys: Sequence[FitKey],
    results: Sequence[RunResult],
    points: Mapping[str, list],
    spec: SweepSpec,
    kept: CurvesConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """results.csv and curves.csv: a row (and a curve) per fit, in the order of ``keys``;
    ``points``: task -> its (point, config) pairs (``SweepConfig.configs``)."""
    rows, curves = [], []
    for key, result in zip(keys, results, strict=True):
        point = points[key.task][key.point][0]
        rows.append(result_row(key.task, point, key.repeat, key.fold, result, spec.reach))
        curves.append(
            curve_rows(
                key.task,
                point,
                key.repeat,
                key.fold,
                result,
                epochs=result.config.epochs,
                points=kept.points,
                first=kept.first_epochs,
            )
        )
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def summary_table(
    table: pd.DataFrame,
    limits: Sequence[LimitKey],
    limit_results: Sequence[dict],
    spec: SweepSpec,
    points: Mapping[str, list],
    datasets: Mapping[str, Dataset],
) -> tuple[pd.DataFrame, list[str]]:
    """summary.csv (``summarise`` of results.csv, with each point's network's lr limits averaged
    over its folds) and the names of the lr-limit columns."""
    kinds = {task: data.kind for task, data in datasets.items()}
    ratios = {task: overlap_ratio(fold_rows(data)) for task, data in datasets.items()}
    summary = summarise(table, spec.keys, {task: SUMMARY_METRICS[kind] for task, kind in kinds.items()}, ratios)
    networks = [limit_key(task, config, kinds[task]) for task in spec.tasks for _, config in points[task]]
    columns = limit_columns(limits, limit_results, networks)
    for column, values in columns.items():
        summary[column] = values
    return summary, list(columns)


def limit_columns(
    keys: Sequence[LimitKey], results: Sequence[dict], networks: Sequence[tuple]
) -> dict[str, list[float]]:
    """summary.csv's lr-limit columns: for each of ``networks`` (a summary row's), its mean over its folds."""
    limit: dict[tuple, list] = {}
    for key, result in zip(keys, results, strict=True):
        limit.setdefault(key.network, []).append(result)
    columns = dict.fromkeys(column for folds in limit.values() for fold in folds for column in fold)
    # lr_limit_unscaled: only a scaled regression target has one
    return {
        column: [float(np.mean([fold.get(column, np.nan) for fold in limit[network]])) for network in networks]
        for column in columns
    }


def best_points(summary: pd.DataFrame, by: list[str], loss_by_task: Mapping[str, str]) -> pd.DataFrame:
    """Per task (and per value of the ``by`` keys): the point with the lowest mean validation
    loss among those whose every fit learned; a group where no point did keeps its lowest anyway,
    flagged ``every_fit_learned = False``."""
    chosen = []
    for task, rows in summary.groupby("task", sort=False):
        groups = rows.groupby(by, sort=False) if by else [((), rows)]
        for _, group in groups:
            chosen.append(_ranked(group, f"val_{loss_by_task[task]}_mean").iloc[0].drop("key"))
    return pd.DataFrame(chosen).reset_index(drop=True)


def _ranked(group: pd.DataFrame, column: str) -> pd.DataFrame:
    """``group`` best first: the points whose every fit learned by ``column``, then the others."""
    complete = group["learned"] == group["fits"]
    ranked = group.assign(every_fit_learned=complete, key=np.where(complete, group[column], np.inf))
    return ranked.sort_values(["key", column], na_position="last", kind="stable")


def point_ranks(summary: pd.DataFrame, loss_by_task: Mapping[str, str]) -> pd.Series:
    """Each summary row's rank within its task, 1 for the point ``best_points`` chooses, in the
    order it ranks them (as scikit-learn's ``rank_test_score``)."""
    ranks = pd.Series(0, index=summary.index)
    for task, rows in summary.groupby("task", sort=False):
        order = _ranked(rows, f"val_{loss_by_task[task]}_mean").index
        ranks[order] = np.arange(1, len(order) + 1)
    return ranks
