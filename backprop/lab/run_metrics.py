"""What each kind of MLflow run logs, as (key, value, step) lists and tags: a fit's thinned curves
and its model's scores, a grid point's cross-validated numbers and rank, the intervals a run keeps
as text. Pure: the tracking module sends them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from backprop.lab.protocol import OUTCOMES
from backprop.lab.thinning import downsample_steps

# The largest value a curve point may have to be drawn: past it the loss has left any range a
# learning network visits (an overflow in the making), and one such point flattens the whole chart.
LARGEST_LOGGED = 1e100


def history_metrics(history, most: int, *, losses_only: bool = False) -> list[tuple[str, float, int]]:
    """Per-epoch curves as (key, value, step), thinned to ``most`` steps for the UI (the stage's
    CSV keeps every epoch); ``losses_only`` keeps the curves of the loss the fit minimised (a
    sweep's many runs: half the values to write, and the curve the sweep chooses by). They end at
    the last epoch that trained: a diverged run's curve stops before the epoch that blew up, and
    no non-finite or overflowing value is sent."""
    last = history.epochs_run if history.diverged_epoch is None else history.diverged_epoch
    if last <= 0 or not history.columns:
        return []
    steps = downsample_steps(last, most)
    keys = [key for key in history.columns if not losses_only or key.endswith(f"_{history.loss_name}")]
    return [
        (key, float(history.columns[key][step]), int(step))
        for key in keys
        for step in steps
        if math.isfinite(history.columns[key][step]) and abs(history.columns[key][step]) <= LARGEST_LOGGED
    ]


def model_metrics(scores: Mapping[str, Mapping[str, float]]) -> list[tuple[str, float, int]]:
    """The returned model's scores (the best epoch's weights when early stopping restored them),
    as ``model_<split>_<metric>``: keys of their own, so no curve jumps at its end."""
    return [
        (f"model_{split}_{name}", value, 0)
        for split, values in scores.items()
        for name, value in values.items()
        if math.isfinite(value)
    ]


def result_metrics(
    history, scores: Mapping[str, Mapping[str, float]], most: int, *, losses_only: bool = False
) -> list[tuple[str, float, int]]:
    """What every training run logs: its thinned curves and its model's scores; for a diverged
    fit only the epoch it diverged at (its outcome is a tag): its last losses before the overflow
    are billions, and one such value flattens every chart that shows the run."""
    if history.diverged:
        return [("diverged_epoch", history.diverged_epoch, 0)] if history.diverged_epoch is not None else []
    return history_metrics(history, most, losses_only=losses_only) + model_metrics(scores)


CV_SPLITS = ("val", "test")


def cv_metrics(
    stats: Mapping[str, float], loss: str, metrics: list[str], *, bounds: bool = True, counts: bool = True
) -> list[tuple[str, float, int]]:
    """Cross-validated numbers named as summary.csv's columns (``val_mse_mean``, ``test_mse_ci_low``,
    the outcome counts ``learned``, ``diverged``, ...), from such a row or its like: the loss's
    validation and test means first (what a run list is sorted by), then the other metrics' means,
    then with ``bounds`` each 95% interval, then with ``counts`` the fits and their outcomes.
    Nothing that is not a finite number (a point with no learned fit has no mean)."""
    order = [loss, *(metric for metric in metrics if metric != loss)]
    names = [f"{split}_{metric}_mean" for metric in order for split in CV_SPLITS]
    if bounds:
        names += [
            f"{split}_{metric}_{bound}" for metric in order for split in CV_SPLITS for bound in ("ci_low", "ci_high")
        ]
    if counts:
        names += ["fits", *OUTCOMES]
    values = [(name, stats.get(name)) for name in names]
    return [(name, float(value), 0) for name, value in values if value is not None and _finite(value)]


def point_metrics(row: Mapping, loss: str, metrics: list[str], rank: int, extra: list[str]) -> list:
    """A grid point's run: its ``cv_metrics``, its rank among the sweep's points of its task
    (``rank_val_<loss>``, 1 for the chosen one, as GridSearchCV's ``rank_test_score``; 0 for none)
    and the ``extra`` columns of its summary row (the lr limit)."""
    ranked = [(f"rank_val_{loss}", rank, 0)] if rank else []
    return cv_metrics(row, loss, metrics) + ranked + [(name, row[name], 0) for name in extra if _finite(row.get(name))]


def interval_tags(summary: Mapping[str, Mapping[str, float]], loss: str, outcomes: Mapping[str, int]) -> dict:
    """What a run whose metrics tab should stay on its curves and means (the train stage's) keeps
    as text instead: the loss's 95% intervals and the count of each outcome."""
    bounds = {split: summary[f"{split}_{loss}"] for split in CV_SPLITS if f"{split}_{loss}" in summary}
    tags = {f"{split}_{loss}_interval": f"{b['ci_low']:.6g} to {b['ci_high']:.6g}" for split, b in bounds.items()}
    return tags | {"outcomes": ", ".join(f"{count} {name}" for name, count in outcomes.items() if count)}


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
