"""The paired comparisons the report's conclusions rest on (metrics/comparison.json). No I/O.

Every comparison pairs two models on the same (repeat, fold): the same held-out rows, and for
two networks the same initial draw. A setting's learning rate is chosen on the validation parts
(mean over folds, among rates at which every fold learned); the comparison is then on the
held-out folds, which took no part in the choice.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pandas as pd

from backprop.lab.protocol import mean_interval, paired_difference
from backprop.losses import DEFAULT_LOSS

if TYPE_CHECKING:
    from backprop.lab.config import SweepConfig, TrainConfig

FOLD = ["repeat", "fold"]
# MSE on a sigmoid output: ∂L/∂z = 2(p − y)·p(1 − p)/n, which at p = ½ is ½ of log loss's
# (p − y)/n; twice the learning rate gives MSE the same first steps ("matched effective step").
MSE_MATCHED_LR_FACTOR = 2.0


def by_fold(rows: pd.DataFrame, column: str) -> pd.Series:
    """``column`` indexed by (repeat, fold); a fit that did not learn counts as missing."""
    kept = rows if "outcome" not in rows else rows.assign(**{column: rows[column].where(rows["outcome"] == "learned")})
    return kept.set_index(FOLD)[column].sort_index()


def paired(a: pd.Series, b: pd.Series, ratio: float, lower_is_better: bool = True) -> dict:
    """``paired_difference`` of a − b on the folds both sides have."""
    a, b = a.align(b, join="inner")
    return paired_difference(a.to_numpy(), b.to_numpy(), lower_is_better=lower_is_better, test_train_ratio=ratio)


def point_of(row: Mapping, keys: list[str]) -> dict:
    return {key: _plain(row[key]) for key in keys}


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def group_point(keys: list[str], values) -> dict:
    """The point of one ``groupby(keys)`` group: pandas gives a scalar for one key, a tuple for more."""
    return {k: _plain(v) for k, v in zip(keys, values if isinstance(values, tuple) else (values,), strict=True)}


def best_lr_per_setting(
    results: pd.DataFrame, task: str, keys: list[str], split: str = "val", kind: str | None = None
) -> pd.DataFrame:
    """For each setting of the keys other than lr: the lr with the lowest mean loss on ``split``
    (validation: the choice of a model; train: what a setting can fit) among those where every
    fold learned (else the lowest anyway, flagged). One row per setting: the setting's keys,
    ``lr`` and ``every_fold_learned``. ``kind``: the task's kind, when its name is not one."""
    loss = f"{split}_{DEFAULT_LOSS[kind or task]}"
    rows = results[results["task"] == task]
    others = [key for key in keys if key != "lr"]
    stats = (
        rows.assign(learned=rows["outcome"] == "learned")
        .groupby(keys, sort=False)
        .agg(mean=(loss, "mean"), learned=("learned", "all"))
        .reset_index()
    )
    chosen = []
    for _, group in stats.groupby(others, sort=False) if others else [((), stats)]:
        ranked = group.assign(rank=group["mean"].where(group["learned"], float("inf"))).sort_values(["rank", "mean"])
        chosen.append(ranked.iloc[0])
    return pd.DataFrame(chosen)[[*keys, "learned"]].rename(columns={"learned": "every_fold_learned"})


def settings_compared(results: pd.DataFrame, task: str, keys: list[str], ratio: float, kind: str | None = None) -> dict:
    """A sweep's answer: each setting (at its own best lr when lr is in the grid), the one with
    the lowest mean validation loss as ``best``, and ``best − other`` on the held-out folds for
    every other setting, paired by fold."""
    loss = DEFAULT_LOSS[kind or task]
    metric = f"test_{loss}"
    rows = results[results["task"] == task]
    per_setting = "lr" in keys and len(keys) > 1
    chosen = best_lr_per_setting(results, task, keys, kind=kind) if per_setting else _every_point(rows, keys)
    settings = []
    for _, choice in chosen.iterrows():
        point = point_of(choice, keys)
        fits = rows.loc[(rows[keys] == pd.Series(point)).all(axis=1)]
        scores = by_fold(fits, metric)
        settings.append(
            {
                "point": point,
                "every_fold_learned": bool(choice["every_fold_learned"]),
                "outcomes": fits["outcome"].value_counts().to_dict(),
                "val_mean": float(fits[f"val_{loss}"].where(fits["outcome"] == "learned").mean()),
                f"{metric}_mean": float(scores.mean()),
                "_scores": scores,
            }
        )
    eligible = [s for s in settings if s["every_fold_learned"]] or settings
    best = min(eligible, key=lambda s: s["val_mean"])
    versus = [
        {"other": other["point"]} | paired(best["_scores"], other["_scores"], ratio)
        for other in settings
        if other is not best and other["every_fold_learned"]
    ]
    for setting in settings:
        setting.pop("_scores")
    answer = {"metric": metric, "chosen_by": f"val_{loss}", "best": best["point"], "settings": settings}
    if per_setting:  # the lrs tried: a setting's best lr at either end might move with a wider grid
        answer["grid_lr"] = sorted(_plain(v) for v in set(rows["lr"]))
    return answer | {"best_minus_other": versus}


def _every_point(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    learned = rows.assign(ok=rows["outcome"] == "learned").groupby(keys, sort=False)["ok"].all().reset_index()
    return learned.rename(columns={"ok": "every_fold_learned"})


def against_baselines(
    network: pd.DataFrame, baselines: pd.DataFrame, task: str, ratio: float, kind: str | None = None
) -> dict:
    """Our network (the train settings, every fold) minus each baseline, on the held-out folds."""
    metric = f"test_{DEFAULT_LOSS[kind or task]}"
    ours = by_fold(network, metric)
    rows = baselines[baselines["task"] == task]
    return {
        f"network_vs_{model}": {"metric": metric} | paired(ours, by_fold(fits, metric), ratio)
        for model, fits in rows.groupby("model", sort=False)
    }


def capacity(results: pd.DataFrame, task: str, key: str, ratio: float, kind: str | None = None) -> dict:
    """Fixed budget, no early stopping: each width at the lr where it fits its training rows best
    (lowest mean train loss among the lrs where every fold learned), against the next wider one
    on the training rows (capacity) and on the held-out rows (generalisation), paired by fold."""
    loss = DEFAULT_LOSS[kind or task]
    rows = results[results["task"] == task]
    keys = [key, "lr"] if "lr" in rows else [key]
    chosen = (
        best_lr_per_setting(results, task, keys, split="train", kind=kind) if "lr" in rows else _every_point(rows, keys)
    )
    fits = {
        _plain(choice[key]): rows.loc[(rows[keys] == pd.Series(point_of(choice, keys))).all(axis=1)]
        for _, choice in chosen.iterrows()
    }
    steps = []
    for narrow, wide in itertools.pairwise(fits):
        a, b = fits[narrow], fits[wide]
        steps.append(
            {"from": point_of(a.iloc[0], keys), "to": point_of(b.iloc[0], keys)}
            | {
                f"{split}_{loss}_wider_minus_narrower": paired(
                    by_fold(b, f"{split}_{loss}"), by_fold(a, f"{split}_{loss}"), ratio
                )
                for split in ("train", "test")
            }
        )
    return {"key": key, "chosen_by": f"train_{loss}", "steps": steps, "same_lr": same_lr_ends(rows, key, fits, ratio)}


def same_lr_ends(rows: pd.DataFrame, key: str, fits: dict, ratio: float) -> list[dict]:
    """The narrowest width against the one that fits its training rows best, at every rate both
    ran (wider − narrower, train and held-out loss, paired by fold): a step between two widths at
    their own rates mixes width with learning rate."""
    if "lr" not in rows or len(fits) < 2:
        return []
    loss = next(c.removeprefix("train_") for c in ("train_mse", "train_log_loss") if c in rows)
    narrow = next(iter(fits))
    wide = min(fits, key=lambda width: fits[width][f"train_{loss}"].mean())
    if wide == narrow:
        return []
    ends = []
    for lr in sorted(set(rows["lr"])):
        a, b = rows[(rows[key] == narrow) & (rows["lr"] == lr)], rows[(rows[key] == wide) & (rows["lr"] == lr)]
        if not (len(a) and len(b)):
            continue
        ends.append(
            {"from": {key: _plain(narrow), "lr": _plain(lr)}, "to": {key: _plain(wide), "lr": _plain(lr)}}
            | {
                f"{split}_{loss}_wider_minus_narrower": paired(
                    by_fold(b, f"{split}_{loss}"), by_fold(a, f"{split}_{loss}"), ratio
                )
                for split in ("train", "test")
            }
        )
    return ends


def epochs_at_chosen_lr(results: pd.DataFrame, task: str, keys: list[str], best: dict, ratio: float) -> list[dict]:
    """Each other setting's best epoch minus the chosen one's at the chosen setting's learning
    rate, paired by fold (a fit stopped by the epoch budget counts with its last epoch: a lower
    bound); mean best epochs at different rates mix the setting with the rate."""
    rows = results[results["task"] == task]
    if "lr" not in best or len(keys) < 2:
        return []
    at = rows[rows["lr"] == best["lr"]]
    others = [key for key in keys if key != "lr"]
    mine = at.loc[(at[others] == pd.Series({k: best[k] for k in others})).all(axis=1)]
    versus = []
    for values, fits in at.groupby(others, sort=False):
        point = group_point(others, values)
        if all(point[k] == best[k] for k in others):
            continue
        capped = int(fits["still_improving"].fillna(False).astype(bool).sum())
        versus.append(
            {"other": point | {"lr": best["lr"]}, "capped": capped}
            | paired(by_fold(fits, "best_epoch"), by_fold(mine, "best_epoch"), ratio)
        )
    return versus


def reach_at_common_rate(
    results: pd.DataFrame, task: str, keys: list[str], best: dict, reach: str, level: float, ratio: float
):
    """Speed at one rate: the epochs each other setting took to reach the ``reach`` level minus
    the best's, paired by fold, at the largest learning rate where every setting learned and
    reached it in every fold (at the best's own rate the others may not learn). ``{"reach",
    "level", "lr", "best", "best_mean", "versus"}`` (each with its ``other_mean`` epochs), or None
    where no rate qualifies."""
    column, others = f"reach_{reach}", [key for key in keys if key != "lr"]
    rows = results[results["task"] == task]
    if column not in rows or "lr" not in keys or not others or any(key not in best for key in others):
        return None
    for lr in sorted(rows["lr"].unique(), reverse=True):
        at = rows[rows["lr"] == lr]
        if not (at["outcome"] == "learned").all() or at[column].isna().any():
            continue
        mine = at.loc[(at[others] == pd.Series({k: best[k] for k in others})).all(axis=1)]
        versus = []
        for values, fits in at.groupby(others, sort=False):
            point = group_point(others, values)
            if any(point[k] != best[k] for k in others):
                versus.append(
                    {"other": point | {"lr": _plain(lr)}, "other_mean": float(fits[column].mean())}
                    | paired(by_fold(fits, column), by_fold(mine, column), ratio)
                )
        return {
            "reach": reach,
            "level": level,
            "lr": _plain(lr),
            "best": {k: best[k] for k in others},
            "best_mean": float(mine[column].mean()),
            "versus": versus,
        }
    return None


# A fit ends "at the edge of stability" when lr·λ_max/2 at its last weights is within this of 1.
EDGE_BAND = 0.1


def failures(results: pd.DataFrame, task: str, keys: list[str]) -> list[dict]:
    """Every point where not every fold learned: its outcomes, how far the training loss of the
    fits that did not learn rose above its start (a blow-up short of the divergence threshold
    is labelled by where it ended, stalled or oscillating), and their hidden units measured only
    on fits whose returned weights moved (best epoch > 0: a stalled fit returns its start); where
    they ended: their units at the last weights and how many sat at the edge of stability
    (lr·λ_max/2 within ``EDGE_BAND`` of 1 at the last weights, as Cohen et al. 2021 describe)."""
    rows = results[results["task"] == task]
    found = []
    for values, fits in rows.groupby(keys, sort=False):
        failed = fits[fits["outcome"] != "learned"]
        if not len(failed):
            continue
        point = group_point(keys, values)
        measured = failed[(failed["outcome"] != "diverged") & (failed["best_epoch"].fillna(0) > 0)]
        peak = failed.loc[failed["outcome"] != "diverged", "peak_train_loss_ratio"].dropna()
        entry = {"point": point, "outcomes": failed["outcome"].value_counts().to_dict(), "moved": len(measured)}
        if len(peak):
            entry["peak_ratio_min"], entry["peak_ratio_max"] = float(peak.min()), float(peak.max())
        for column in ("saturated_units", "dead_units", "sharpness_end"):
            if column in measured and measured[column].notna().any():
                entry[f"{column}_moved_mean"] = float(measured[column].mean())
        ended = failed[failed["outcome"] != "diverged"]  # where they ended, whether or not their weights moved
        for column in ("saturated_units_last", "dead_units_last"):
            if column in ended and ended[column].notna().any():
                entry[f"{column}_mean"] = float(ended[column].mean())
        if {"sharpness_last", "lr_applied"} <= set(ended) and ended["sharpness_last"].notna().any():
            ratio = (ended["lr_applied"] * ended["sharpness_last"] / 2).dropna()
            entry["at_edge"] = int(((ratio >= 1 - EDGE_BAND) & (ratio <= 1 + EDGE_BAND)).sum())
            entry["edge_measured"] = len(ratio)
        found.append(entry)
    return found


def loss_mechanism(results: pd.DataFrame, reach: str, ratio: float) -> dict:
    """Log loss against MSE on the sigmoid output, at the same lr and at a matched effective
    step (MSE at ``MSE_MATCHED_LR_FACTOR`` × log loss's lr): the first epoch each reaches the
    ``reach`` level (log loss − MSE, paired by fold; folds that never reach it are counted), and
    the held-out log loss."""
    rows = results[results["task"] == "classification"]
    column = f"reach_{reach}"
    lrs = sorted(set(rows["lr"]))
    pairs = []
    for lr in lrs:
        for factor, label in ((1.0, "same lr"), (MSE_MATCHED_LR_FACTOR, "2× lr")):
            mse_lr = lr * factor
            a = rows[(rows["loss"] == "log_loss") & (rows["lr"] == lr)]
            b = rows[(rows["loss"] == "mse") & (rows["lr"] == mse_lr)]
            if a.empty or b.empty:
                continue
            pairs.append(
                {
                    "log_loss_lr": lr,
                    "mse_lr": mse_lr,
                    "kind": label,
                    "reached": {
                        "log_loss": int(a[column].notna().sum()),
                        "mse": int(b[column].notna().sum()),
                        "of": len(a),
                    },
                    "epochs_log_loss_mean": float(a[column].mean()),
                    "epochs_mse_mean": float(b[column].mean()),
                    "epochs_log_loss_minus_mse": paired(a.set_index(FOLD)[column], b.set_index(FOLD)[column], ratio),
                    "test_log_loss_log_loss_minus_mse": paired(
                        by_fold(a, "test_log_loss"), by_fold(b, "test_log_loss"), ratio
                    ),
                    "test_accuracy_log_loss_minus_mse": paired(
                        by_fold(a, "test_accuracy"), by_fold(b, "test_accuracy"), ratio, lower_is_better=False
                    ),
                }
            )
    return {"reach": reach, "pairs": pairs}


def best_vs_baseline(results: pd.DataFrame, answer: dict, baselines: pd.DataFrame, task: str, model: str, ratio: float):
    """A sweep's best setting (chosen on validation) minus a baseline, on the held-out folds."""
    metric = answer["metric"]
    rows = results[results["task"] == task]
    best = rows.loc[(rows[list(answer["best"])] == pd.Series(answer["best"])).all(axis=1)]
    other = baselines[(baselines["task"] == task) & (baselines["model"] == model)]
    return {"metric": metric, "best": answer["best"]} | paired(by_fold(best, metric), by_fold(other, metric), ratio)


def headline_vs_tuned(network: pd.DataFrame, results: pd.DataFrame, task: str, answer: dict, ratio: float) -> dict:
    """The train settings (every fold) against a sweep's best setting (chosen on validation) on
    the held-out folds: each one's mean and 95% interval, and headline − best paired by fold (the
    same rows and initial draws), with each fold's difference, so that a mean one fold makes is
    seen as such: does the default recipe reach what tuning reaches?"""
    metric = answer["metric"]
    rows = results[results["task"] == task]
    chosen = (rows[list(answer["best"])] == pd.Series(answer["best"])).all(axis=1)
    best = by_fold(rows.loc[chosen], metric)
    ours = by_fold(network, metric)
    a, b = ours.align(best, join="inner")
    each = (a - b).dropna()
    return {
        "metric": metric,
        "best": answer["best"],
        "headline": mean_interval(ours.dropna().to_numpy(), ratio),
        "tuned": mean_interval(best.dropna().to_numpy(), ratio),
        "headline_minus_tuned": paired(ours, best, ratio),
        "headline_minus_tuned_by_fold": [
            {"repeat": int(repeat), "fold": int(fold), "difference": float(value)}
            for (repeat, fold), value in each.items()
        ],
        "capped": {"headline": _capped(network), "tuned": _capped(rows.loc[chosen])},
    }


def _capped(fits: pd.DataFrame) -> int:
    """How many learned fits were still improving when the epoch budget ran out."""
    learned = fits[fits["outcome"] == "learned"] if "outcome" in fits else fits
    return int(learned["still_improving"].fillna(False).astype(bool).sum()) if "still_improving" in learned else 0


def each_minus_headline(
    network: pd.DataFrame,
    results: pd.DataFrame,
    task: str,
    keys: list[str],
    ratio: float,
    kind: str | None = None,
    column: str | None = None,
) -> list[dict]:
    """Every point of a sweep where every fold learned minus the headline network (the train
    stage's fits), on the held-out folds, paired by fold: a setting against the headline at a
    shared stable rate, free of the noisiest cell that a best-on-validation pairing may land on.
    ``column``: another per-fit column than the test loss (``best_epoch``: how long each trained;
    ``capped`` then counts the point's fits stopped by the epoch budget, whose epoch is a lower bound)."""
    metric = column or f"test_{DEFAULT_LOSS[kind or task]}"
    rows = results[results["task"] == task]
    ours = by_fold(network, metric)
    versus = []
    for values, fits in rows.groupby(keys, sort=False):
        if (fits["outcome"] == "learned").all():
            versus.append(
                {"point": group_point(keys, values), "capped": _capped(fits)}
                | paired(by_fold(fits, metric), ours, ratio)
            )
    return versus


def untuned_vs_best(
    results: pd.DataFrame,
    task: str,
    point: dict,
    bests: dict,
    ratio: float,
    kind: str | None = None,
    network: pd.DataFrame | None = None,
) -> dict | None:
    """The fits of one sweep point (the task's settings with train's own values where its
    override sets others) on the held-out folds: their mean with its interval, how many learned
    and how many were still improving at the epoch budget, and point − each sweep's best (``bests``:
    sweep name -> (its results, its best point)), paired by fold; with ``network`` (the headline's
    fits) also point − the headline. None when the sweep lacks it."""
    metric = f"test_{DEFAULT_LOSS[kind or task]}"
    rows = results[results["task"] == task]
    fits = rows.loc[(rows[list(point)] == pd.Series(point)).all(axis=1)]
    if fits.empty:
        return None
    learned = fits[fits["outcome"] == "learned"]
    scores = by_fold(fits, metric)
    versus = {}
    for name, (theirs, best) in bests.items():
        other = theirs[theirs["task"] == task]
        other = other.loc[(other[list(best)] == pd.Series(best)).all(axis=1)]
        if len(other):
            versus[name] = {"best": best} | paired(scores, by_fold(other, metric), ratio)
    found = {
        "point": {k: _plain(v) for k, v in point.items()},
        "metric": metric,
        "scores": mean_interval(scores.dropna().to_numpy(), ratio),
        "learned": len(learned),
        "capped": _capped(fits),
        "minus_best": versus,
    }
    if network is not None:
        versus_headline = paired(scores, by_fold(network, metric), ratio)
        found["minus_headline"] = versus_headline | {"headline_capped": _capped(network)}
    return found


def without_override(
    train: TrainConfig,
    sweep: SweepConfig,
    task: str,
    kind: str,
    tables: dict,
    answers: dict,
    ratio: float,
    network: pd.DataFrame | None = None,
) -> dict | None:
    """Where a task's override replaces a train key that a sweep varies (an lr override, and a
    sweep over lr), the point of that sweep whose settings are the task's with train's own values
    of those keys, against each sweep's best (``untuned_vs_best``; ``tables``: sweep name -> its
    results, ``answers``: sweep name -> its ``settings_compared``): what the settings give without
    the override. ``own``: the keys set back to train's values; ``kept``: the override's keys no
    sweep varies, which the fits keep. None when no sweep ran such a point."""
    own, settings = train.as_params(), train.for_task(task, kind)
    changed = [key for key in train.overrides.get(task, {}) if own[key] != settings.as_params()[key]]
    bests = {name: (tables[name], answer["best"]) for name, answer in answers.items() if name in tables}
    for name, spec in sweep.specs.items():
        reverted = [key for key in changed if key in spec.keys]
        if task not in spec.tasks or not reverted or name not in tables:
            continue
        target = settings.varied({key: own[key] for key in reverted}, "train")
        configs = sweep.configs(name, sweep.inherited(name, train, task, kind), task, kind)
        point = next((point for point, config in configs if config == target), None)
        found = untuned_vs_best(tables[name], task, point, bests, ratio, kind, network) if point else None
        if found:
            kept = {key: _plain(settings.as_params()[key]) for key in changed if key not in reverted}
            return {"sweep": name, "own": {key: own[key] for key in reverted}, "kept": kept} | found
    return None
