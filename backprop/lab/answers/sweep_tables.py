"""A sweep's per-setting table (summary.csv in words: outcomes, means with intervals, the lr
limit), as the appendix shows it. No I/O."""

from __future__ import annotations

import math

import pandas as pd

from backprop.lab.answers.wording import interval, metric_bounds, number, outcome_text, plain, point_text, times
from backprop.lab.blocks import LABELS, fmt, table
from backprop.lab.protocol import OUTCOMES
from backprop.losses import DEFAULT_LOSS

# A fit whose training loss rose this far above its start before it stopped improving blew up,
# whatever label (stalled, oscillating) its validation curve earned it.
BLOW_UP = 100.0


def summary_outcomes(row: pd.Series, failed: dict | None = None) -> str:
    """The outcome counts; with ``failed`` (the point's entry of comparison.json's ``failures``)
    beside stalled or oscillating fits how far their training loss rose above its start, since
    such a label may hide a blow-up short of the divergence threshold."""
    text = outcome_text({name: row[name] for name in OUTCOMES})
    peak = number(failed or {}, "peak_ratio_max")
    if (row.get("stalled", 0) or row.get("oscillating", 0)) and math.isfinite(peak) and peak > 1.01:
        low = number(failed or {}, "peak_ratio_min")
        span = times(peak) if low == peak else f"{times(low).removesuffix('×')} to {times(peak)}"
        text += f" (training loss of the fits that neither learned nor diverged rose {span} its start"
        text += ": blew up)" if low > BLOW_UP else ")"
    return text


# Below this many fits that learned, a t interval (1 or 2 degrees of freedom) is too wide to say
# anything and can leave the metric's range: the mean is shown alone, with its count.
MIN_FITS_FOR_INTERVAL = 3


def mean_ci(row: pd.Series, column: str) -> str:
    learned = row.get("learned", MIN_FITS_FOR_INTERVAL)
    if learned < MIN_FITS_FOR_INTERVAL:
        mean = number({"mean": row.get(f"{column}_mean")}, "mean")
        return f"{fmt(mean)} (of {int(learned)})" if math.isfinite(mean) else "n/a"
    stats = {k: row.get(f"{column}_{k}", math.nan) for k in ("mean", "ci_low", "ci_high")}
    return interval(stats, bounds=metric_bounds(column, str(row.get("task", ""))))


def summary_table(
    summary: pd.DataFrame,
    keys: list[str],
    task: str,
    limit: bool = True,
    improving: str = "validation",
    failed: list | None = None,
) -> dict:
    """``improving``: the loss whose fall at the last epoch marks a fit cut by the budget
    (validation with early stopping; train without); ``failed``: comparison.json's ``failures``."""
    failed_at = {point_text(entry["point"]): entry for entry in failed or []}
    loss = DEFAULT_LOSS[task]
    rows = summary[summary["task"] == task]
    header = [
        *keys,
        "folds by outcome",
        f"{improving} loss still falling at the last epoch (of the learned fits)",
        "mean best epoch",
    ]
    header += [f"train {LABELS[loss]}", f"val {LABELS[loss]}", f"test {LABELS[loss]}"]
    if limit and "lr_limit" in rows:
        header.append("lr limit at init")
    body = []
    for _, row in rows.iterrows():
        point = point_text({key: plain(row[key]) for key in keys})
        cells = [str(row[key]) for key in keys] + [summary_outcomes(row, failed_at.get(point))]
        cells += [str(int(row.get("capped", 0))), fmt(row.get("best_epoch_mean"), 3)]
        cells += [mean_ci(row, f"{split}_{loss}") for split in ("train", "val", "test")]
        if limit and "lr_limit" in rows:
            cells.append(fmt(row["lr_limit"], 3))
        body.append(cells)
    caption = (
        f"{task}: mean (95% CI) over the folds that learned (the mean alone when fewer than "
        f"{MIN_FITS_FOR_INTERVAL} did); a fit still improving at its last epoch was stopped by the epoch budget, "
        "not by early stopping"
    )
    return table(header, body, caption)


def titled(block: dict, where: str) -> dict:
    """A table moved to the appendix, its caption naming the section it belongs to; ``summary``
    is what the HTML's collapsed line shows."""
    caption = f"{where} — {block['caption']}" if block.get("caption") else where
    return block | {"caption": caption, "summary": f"{where}: every setting"}
