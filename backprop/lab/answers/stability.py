"""What the fits show about stability: where training broke against the lr limit at
initialisation, the catapult past it, what λ_max at the returned weights bounds, the edge of
stability, and how the hidden units of the fits that did not learn ended (saturated or dead).
No I/O."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from backprop.lab.answers.sweep_tables import BLOW_UP, summary_outcomes
from backprop.lab.answers.wording import number, outcome_text, plain, point_text, times
from backprop.lab.blocks import fmt
from backprop.lab.comparisons import EDGE_BAND, group_point
from backprop.lab.mechanisms import SATURATION_SLOPE, SATURATION_Z


def limit_sentence(summary: pd.DataFrame, task: str, group: list[str], in_units: bool = False) -> str:
    """Where training broke against the lr limit at initialisation, per setting of ``group``.
    ``in_units``: the sweep's rates are multiples of each network's own limit already (``lr_unit:
    limit``), so the rate is its own multiple and "past the limit" means a rate above 1."""
    parts = []
    rows = summary[summary["task"] == task]

    def multiple(lr: float, limit: float) -> str:
        return f"{fmt(lr)}× the limit" if in_units else f"{fmt(lr)} ({fmt(lr / limit, 2)}× the limit)"

    for values, part in rows.groupby(group, sort=False) if group else [((), rows)]:
        limit = float(part["lr_limit"].iloc[0])
        complete = part[part["learned"] == part["fits"]]
        broken = part[part["learned"] < part["fits"]]
        largest = complete["lr"].max() if len(complete) else None
        first_broken = broken["lr"].min() if len(broken) else None
        label = point_text(group_point(group, values))
        text = f"{label + ': ' if label else ''}limit {fmt(limit, 3)}"
        if largest is None:
            text += ", no lr learned in every fold"
        else:
            text += f", largest lr that learned in every fold {multiple(largest, limit)}"
        if first_broken is not None:
            text += f", smallest that did not {multiple(first_broken, limit)}"
        above = complete[complete["lr"] > (1.0 if in_units else limit)]
        if len(above) and "peak_train_loss_ratio_max" in above:
            peak = float(above["peak_train_loss_ratio_max"].max())
            if peak > 1.01:
                text += (
                    f"; above the limit, at the rates where every fold learned, the training loss first rose to up "
                    f"to {times(peak)} its start before it fell (a catapult: a quadratic model predicts divergence)"
                )
        parts.append(text)
    return "; ".join(parts)


def failed_fits_text(entry: dict, task: str) -> str:
    """One point where not every fold learned (comparison.json's ``failures``): its outcomes, how
    far the training loss of the fits that did not learn rose first, and their hidden units,
    measured only on the fits whose returned weights moved (a stalled fit returns its start)."""
    text = f"{point_text(entry['point'])}: {outcome_text(entry['outcomes'])}"
    low, high = entry.get("peak_ratio_min", math.nan), entry.get("peak_ratio_max", math.nan)
    if math.isfinite(high) and high > 1.01:
        span = times(low) if low == high else f"{times(low).removesuffix('×')} to {times(high)}"
        text += f"; training loss of the fits that neither learned nor diverged first rose {span} its start"
        if low > BLOW_UP:
            text += " (blow-ups that stopped short of the divergence threshold, labelled by where they ended)"
    moved = entry.get("moved", 0)
    if set(entry["outcomes"]) == {"diverged"}:
        return text
    if not moved:
        return text + "; those fits returned their starting weights, so their units are not measured"
    measures = [
        f"{fmt(100 * entry[key], 2)}% of units {word}"
        for key, word in (("saturated_units_moved_mean", "saturated"), ("dead_units_moved_mean", "dead"))
        if math.isfinite(entry.get(key, math.nan))
    ]
    if measures:
        others = set(entry["outcomes"]) - {"learned", "diverged"}
        # an oscillating fit's weights sit inside a zig-zag: unstable, which is not the same as not learning
        kind = "unstable (oscillating) fits" if others == {"oscillating"} else "fits that did not learn"
        text += f"; in the {moved} {kind} whose weights moved: {', '.join(measures)}"
    last = [
        f"{fmt(100 * entry[key], 2)}% {word}"
        for key, word in (("saturated_units_last_mean", "saturated"), ("dead_units_last_mean", "dead"))
        if math.isfinite(entry.get(key, math.nan))
    ]
    if last:
        text += f"; at their last weights {', '.join(last)}"
    if entry.get("edge_measured"):
        text += (
            f"; {entry['at_edge']} of {entry['edge_measured']} ended at the edge of stability (lr·λ_max/2 within "
            f"{fmt(EDGE_BAND)} of 1 at their last weights)"
        )
    sharp = entry.get("sharpness_end_moved_mean", math.nan)
    if task == "regression" and math.isfinite(sharp) and sharp < 2.05:
        text += (
            f", λ_max {sharp:.3f} at the returned weights: the output bias's curvature alone "
            "(λ_max ≥ 2(1 + ‖ā‖²)), "
            "so the hidden layer is off and the network is the constant model"
        )
    return text


def failure_sentence(summary: pd.DataFrame, task: str, group: list[str], failed_fits: list | None = None) -> str:
    """The points where not every fold learned, with how their hidden units ended (saturated or
    dead, mean over the folds), beside the same measure where every fold learned. With
    ``failed_fits`` (comparison.json's ``failures``) each point is described by its fits that did
    not learn, measured only where their weights moved."""
    rows = summary[summary["task"] == task]
    parts = []
    if failed_fits is not None:
        parts = [failed_fits_text(entry, task) for entry in failed_fits]
        for measure, word in (("saturated_units_mean", "saturated"), ("dead_units_mean", "dead")):
            complete = (
                rows[(rows["learned"] == rows["fits"]) & rows[measure].notna()] if measure in rows else rows.iloc[:0]
            )
            if len(parts) and len(complete):
                low, high = fmt(100 * complete[measure].min(), 2), fmt(100 * complete[measure].max(), 2)
                parts.append(f"where every fold learned, {low if low == high else f'{low}–{high}'}% {word}")
        return "; ".join(parts)
    for measure, word in (("saturated_units_mean", "saturated"), ("dead_units_mean", "dead")):
        if measure not in rows or rows[measure].isna().all():
            continue
        failed = rows[(rows["learned"] < rows["fits"]) & rows[measure].notna()]
        complete = rows[(rows["learned"] == rows["fits"]) & rows[measure].notna()]
        among = measure.replace("_mean", "_not_learned_mean")
        for _, row in failed.iterrows():
            point = point_text({key: row[key] for key in [*group, "lr"] if key in row})
            share = f"{fmt(100 * row[measure], 2)}% of hidden units {word}"
            if among in row and math.isfinite(number({"v": row[among]}, "v")):
                share += f" ({fmt(100 * row[among], 2)}% in the fits that did not learn)"
            parts.append(f"{point}: {summary_outcomes(row)}, {share}")
        if len(failed) and len(complete):
            low, high = fmt(100 * complete[measure].min(), 2), fmt(100 * complete[measure].max(), 2)
            parts.append(f"where every fold learned, {low if low == high else f'{low}–{high}'}% {word}")
    return "; ".join(parts)


SATURATION_RULE = (
    f"a sigmoid or tanh unit is saturated when its slope g′(z) is below {fmt(SATURATION_SLOPE)} of its peak "
    f"(|z| > {fmt(SATURATION_Z['sigmoid'], 3)} for sigmoid, {fmt(SATURATION_Z['tanh'], 3)} for tanh) on most "
    "training rows, a strict rule: a unit pushed part of the way towards off does not count; a ReLU unit is dead "
    "when z ≤ 0 on every training row (measured on the returned weights, so only on fits whose weights moved)"
)


# Why the shares above cannot by themselves explain a stall: early stopping returns a stalled fit's
# best epoch, its starting weights, whatever the units did later in training.
STALL_CAVEAT = (
    "A stalled fit returns its starting weights (its best validation epoch is the first), so its units are "
    "not measured: saturation that set in later in training does not show here."
)


def catapult_facts(summary: pd.DataFrame, task: str, in_units: bool = False) -> dict:
    """The largest rate that learned in every fold against the limit, and how far the training
    loss rose first at the rates past the limit that learned. ``in_units``: the rates are
    multiples of the limit (the step is lr × limit, past the limit is lr > 1)."""
    rows = summary[summary["task"] == task].sort_values("lr")
    limit = float(rows["lr_limit"].iloc[0])
    past = 1.0 if in_units else limit
    complete = rows[rows["learned"] == rows["fits"]]
    broken = rows[rows["learned"] < rows["fits"]]
    facts = {
        "limit": limit,
        "closed_form": float(rows["lr_limit_closed_form"].iloc[0]) if "lr_limit_closed_form" in rows else math.nan,
    }
    if len(complete):
        facts["largest"] = float(complete["lr"].max())
        facts["past_limit"] = facts["largest"] > past
        if "stability_ratio_end_mean" in complete:
            ratio = float(complete.loc[complete["lr"].idxmax(), "stability_ratio_end_mean"])
            step = facts["largest"] * limit if in_units else facts["largest"]
            facts["sharpness_end"] = 2 * ratio / step  # λ_max at its returned weights
        largest = complete.loc[complete["lr"].idxmax()]
        if math.isfinite(float(largest.get("sharpness_after_peak_mean", math.nan))):
            facts["sharpness_after_peak"] = float(largest["sharpness_after_peak_mean"])
            facts["after_peak_epoch"] = float(largest["sharpness_after_peak_epoch_max"])
    if len(broken):
        facts["first_broken"] = float(broken["lr"].min())
    above = complete[complete["lr"] > past]
    if len(above):
        facts["peak"] = float(above["peak_train_loss_ratio_max"].max())
        if "peak_train_loss_epoch_max" in above:
            facts["peak_epoch"] = float(above["peak_train_loss_epoch_max"].max())
    return facts


def activation_rms(facts: dict, width) -> tuple[float, float] | None:
    """For MSE on an identity output the output layer's Hessian block is exactly (2/n)[a 1]ᵀ[a 1],
    so λ_max ≥ 2(1 + ‖ā‖²) at any weights and the RMS mean hidden activation is at most
    √((λ_max/2 − 1)/h); for sigmoid the closed-form limit 2/(2(1 + ‖ā‖²)) gives its value at
    initialisation. Both, when the fits past the limit had a catapult and the bound sits below
    the start; else None."""
    end, closed = facts.get("sharpness_end", math.nan), facts.get("closed_form", math.nan)
    if not isinstance(width, int | np.integer) or not (math.isfinite(end) and end > 2):
        return None
    if facts.get("peak", 1.0) <= 1.01 or not facts.get("past_limit"):
        return None  # no catapult at that rate: nothing to explain
    if not math.isfinite(closed) or closed <= 0:
        return None
    after, before = math.sqrt((end / 2 - 1) / width), math.sqrt(max(1 / closed - 1, 0.0) / width)
    return (after, before) if after < before else None


# When λ_max is measured: at initialisation, where a catapult's loss came back to its start, at the
# returned weights and at the last epoch's; not throughout training.
MEASURED_AT = "λ_max measured at initialisation, where the loss came back to its start after the spike, and at the end"


def activation_bound(facts: dict, config: dict) -> str:
    """What λ_max at the returned weights of the largest rate that learned bounds (``activation_rms``)."""
    hidden = config.get("hidden")
    width = hidden[0] if isinstance(hidden, list | tuple) and len(hidden) == 1 else hidden
    found_rms = activation_rms(facts, width) if config.get("activation") == "sigmoid" else None
    if not found_rms:
        return ""
    after, before = found_rms
    return (
        f"λ_max ≥ 2(1 + ‖ā‖²) (the output layer's block, exact for MSE) bounds the RMS mean hidden activation at the "
        f"returned weights of lr {fmt(facts['largest'])} by {fmt(after, 2)} (mean λ_max over folds), against "
        f"{fmt(before, 2)} at initialisation"
        + (
            f"; λ_max where the loss came back to its start after the spike (by epoch "
            f"{fmt(facts['after_peak_epoch'])}) was {fmt(facts['sharpness_after_peak'], 3)}, against "
            f"{fmt(2 / facts['limit'], 3)} at initialisation and 2/lr = {fmt(2 / facts['largest'], 3)}: the catapult "
            "lowered the curvature within those epochs, consistent with it pushing the sigmoid units towards off"
            if math.isfinite(facts.get("sharpness_after_peak", math.nan))
            else ": consistent with the catapult lowering the curvature by pushing the sigmoid units towards off"
        )
        + f" ({MEASURED_AT})"
    )


def width_bounds(summary: pd.DataFrame, config: dict, in_units: bool = False) -> str:
    """``activation_rms`` for each width of the hidden sweep whose largest rate that learned in
    every fold is past its limit after a catapult (sigmoid only), beside the share of its units
    saturated by the strict rule. ``in_units``: the rates are multiples of each width's limit."""
    if config.get("activation", "sigmoid") != "sigmoid" or "hidden" not in summary:
        return ""
    rows = summary[summary["task"] == "regression"]
    parts, shares = [], []
    for width, part in rows.groupby("hidden", sort=True):
        facts = catapult_facts(part, "regression", in_units)
        found_rms = activation_rms(facts, plain(width))
        if found_rms:
            rate = f"{fmt(facts['largest'])}× its limit" if in_units else f"lr {fmt(facts['largest'])}"
            parts.append(
                f"hidden {width} at {rate}: at most {fmt(found_rms[0], 2)}, against "
                f"{fmt(found_rms[1], 2)} at initialisation"
            )
            if "saturated_units_mean" in part:
                share = part.loc[part["lr"] == facts["largest"], "saturated_units_mean"]
                if len(share) and math.isfinite(float(share.iloc[0])):
                    shares.append(100 * float(share.iloc[0]))
    if not parts:
        return ""
    counted = ""
    if shares:
        low, high = fmt(min(shares), 2), fmt(max(shares), 2)
        counted = f" ({low if low == high else f'{low}–{high}'}% saturated there by that strict rule)"
    return (
        "**What the catapults did to the units.** λ_max ≥ 2(1 + ‖ā‖²) (the output layer's Hessian block, exact for "
        "MSE on an identity output) bounds the RMS mean hidden activation at the returned weights by "
        "√((λ_max/2 − 1)/h), with λ_max the mean over folds: "
        + "; ".join(parts)
        + f". Consistent with the catapults lowering the curvature by pushing the sigmoid units towards off, "
        f"further than the saturation share{counted} shows ({MEASURED_AT})."
    )


def why_failed(summary: pd.DataFrame, task: str, point: dict) -> str:
    """A point's outcomes over the folds, with the share of its hidden units saturated or dead."""
    match = summary[summary["task"] == task]
    for key, value in point.items():
        match = match[match[key] == value]
    if not len(match):
        return ""
    row = match.iloc[0]
    text = summary_outcomes(row)
    for measure, word in (("saturated_units_mean", "saturated"), ("dead_units_mean", "dead")):
        if measure in row and math.isfinite(number({"v": row[measure]}, "v")):
            text += f"; {fmt(100 * row[measure], 2)}% of units {word}"
    return text


def edge_of_stability_sentence(summary: pd.DataFrame, task: str, failed_fits: list | None = None) -> str:
    """What this run shows of Cohen et al.'s edge of stability: lr·λ_max/2 at the last epoch's
    weights (the returned ones where summary.csv lacks them), per rate where every fold learned
    (1 at the edge, below 1 in a flatter place)."""
    text = (
        "Cohen et al. (2021) found that full-batch gradient descent drives the sharpness λ_max up to 2/η and holds "
        "it there (the edge of stability). "
    )
    rows = summary[(summary["task"] == task) & (summary["learned"] == summary["fits"])].sort_values("lr")
    column = "stability_ratio_last_mean" if "stability_ratio_last_mean" in rows else "stability_ratio_end_mean"
    if column not in rows or rows[column].isna().all():
        return text + "This run measures λ_max only at initialisation, so it neither shows nor excludes that."
    where = "the last epoch's weights" if column == "stability_ratio_last_mean" else "the returned weights"
    ratios = [(row["lr"], row[column]) for _, row in rows.iterrows()]
    listed = ", ".join(f"{fmt(value, 2)} at lr {fmt(lr)}" for lr, value in ratios) + " (mean over folds; 1 is the edge)"
    near = [lr for lr, value in ratios if value >= 0.9]
    if "lr_limit" in rows and len(rows):
        start = 2 / float(rows["lr_limit"].iloc[0])
        ends = ", ".join(f"{fmt(2 * value / lr, 3)} at lr {fmt(lr)}" for lr, value in ratios)
        listed += f"; λ_max itself went from {fmt(start, 3)} at initialisation to {ends}"
    at_edge = sum(entry.get("at_edge", 0) for entry in failed_fits or [])
    measured = sum(entry.get("edge_measured", 0) for entry in failed_fits or [])
    return text + (
        f"This run measures λ_max at {where} (not throughout training): lr·λ_max/2 where every fold learned is "
        f"{listed}. "
        + (
            f"At lr {', '.join(fmt(lr) for lr in near)} the fits ended at or near the edge."
            if near
            else f"Every rate where every fold learned ended below the edge: {where} sit where the step is stable."
        )
        + (
            f" Across every sweep and task, of the fits that neither learned nor diverged, {at_edge} of {measured} "
            "ended at the edge (lr·λ_max/2 "
            f"within {fmt(EDGE_BAND)} of 1 at their last weights): the sharpness held at 2/lr, Cohen et al.'s edge "
            "of stability; the outcome rule labels such fits oscillating and leaves them out of means and choices."
            if at_edge
            else ""
        )
    )


def above_limit_sentence(answer: dict, summary: pd.DataFrame, task: str, noun: str, in_units: bool = False) -> str:
    """The settings whose chosen learning rate is past their lr limit at initialisation: a
    comparison between them and the others mixes the setting with training in the unstable regime.
    ``in_units``: the rates are multiples of each setting's own limit already (past it: above 1),
    so the grid is already scaled to each setting's limit and no other grid is suggested."""
    past = []
    for setting in answer["settings"]:
        point = setting["point"]
        match = summary[summary["task"] == task]
        for key, value in point.items():
            match = match[match[key] == value]
        if "lr" not in point or not len(match) or "lr_limit" not in match:
            continue
        limit = float(match["lr_limit"].iloc[0])
        if in_units and point["lr"] > 1:
            past.append(f"{point_text(point)} ({fmt(point['lr'])}× its own limit)")
        elif not in_units and point["lr"] > limit:
            past.append(f"{point_text(point)} ({fmt(point['lr'] / limit, 2)}× its limit)")
    if not past:
        return ""
    text = (
        f"The best learning rate of the grid is past the lr limit at initialisation for: {'; '.join(past)}. "
        f"Those networks train in the unstable regime the grid offers them, so a tie between {noun}s does not show "
        f"that the {noun} does not matter"
    )
    if in_units:
        return text + f": the comparison mixes the {noun} with training past the limit."
    return text + f": a grid of rates scaled to each {noun}'s own limit could separate the two."
