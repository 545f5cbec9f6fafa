"""Words for numbers: a mean with its interval, a paired difference as a finding (a tie is "no
difference detected", never a ranking), a tie's range and detectable size, a sweep's point and a
fit's outcomes. The sentences of every answer are built from these. No I/O."""

from __future__ import annotations

import math

from backprop.lab.blocks import fmt
from backprop.lab.protocol import OUTCOMES


def number(stats: dict, key: str) -> float:
    """``stats[key]`` as a float: missing, None (a NaN in JSON) and NaN are all NaN."""
    value = stats.get(key) if stats else None
    return math.nan if value is None else float(value)


def clipped(stats: dict, bounds: tuple = (None, None)) -> tuple[float, float, float]:
    """(mean, low, high) of an interval dict, its ends clipped to the metric's range ``bounds``
    (a t interval ignores that a loss is ≥ 0 or an accuracy ≤ 1)."""
    mean, low, high = number(stats, "mean"), number(stats, "ci_low"), number(stats, "ci_high")
    if bounds[0] is not None and math.isfinite(low):
        low = max(low, bounds[0])
    if bounds[1] is not None and math.isfinite(high):
        high = min(high, bounds[1])
    return mean, low, high


def interval(stats: dict, digits: int = 4, bounds: tuple = (None, None)) -> str:
    """``2939 (2569 to 3310)`` from a mean_interval / paired_difference dict; ``bounds``: the
    metric's range (``metric_bounds``), to which the interval's ends are clipped."""
    mean, low, high = clipped(stats, bounds)
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(low):
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} ({fmt(low, digits)} to {fmt(high, digits)})"


def metric_bounds(metric: str, task: str) -> tuple:
    """The range of a score: losses are ≥ 0, R² ≤ 1, accuracy ≤ 1 (and ≥ 0 for classification;
    regression's 1 − MAPE can be negative). A t interval ignores it, so its ends are clipped."""
    name = metric.split("_", 1)[1] if metric.split("_", 1)[0] in ("train", "val", "test") else metric
    if name in ("mse", "rmse", "log_loss"):
        return (0.0, None)
    if name == "r2":
        return (None, 1.0)
    if name == "accuracy":
        return (0.0 if task == "classification" else None, 1.0)
    return (None, None)


def whole(value: float) -> str:
    """A number for the answers table: whole above 100 (an MSE, an epoch count), else 3 digits."""
    return f"{value:.0f}" if math.isfinite(value) and abs(value) >= 100 else fmt(value, 3)


def short_interval(stats: dict, bounds: tuple = (None, None)) -> str:
    """``-589 (-1258 to 80)``: ``interval`` with ``whole`` numbers, for the answers table (3
    significant digits below 100, so an interval that spans orders of magnitude stays short)."""
    mean, low, high = clipped(stats, bounds)
    if not math.isfinite(low):
        return whole(mean)
    return f"{whole(mean)} ({whole(low)} to {whole(high)})"


def table_number(difference: dict, label: str = "", unit: str = "") -> str:
    """The answers table's number: ``label: tie -21.1 (-137 to 95.1); detectable 156`` for a tie
    (the interval is where any difference lies, said once), ``label: -544 (-669 to -419)`` when
    the interval excludes 0; ``unit`` follows each number (`` epochs``)."""
    head = f"{label}: " if label else ""
    if not math.isfinite(number(difference, "ci_low")):
        n = int(number(difference, "n")) if math.isfinite(number(difference, "n")) else 0
        return f"{head}too few paired folds for an interval ({n})"
    if not is_tie(difference):
        return f"{head}{short_interval(difference)}{unit}"
    return f"{head}tie {short_interval(difference)}{unit}; detectable {whole(number(difference, 'mde'))}{unit}"


def verdict(difference: dict, *, lower: str, higher: str) -> str:
    """A paired difference a − b in words: ``lower`` / ``higher`` only when its 95% interval
    excludes 0, else "no difference detected"; always with the interval and wins."""
    low, high = number(difference, "ci_low"), number(difference, "ci_high")
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 <= high:
        finding = "no difference detected"
    else:
        finding = lower if high < 0 else higher
    mde = number(difference, "mde")
    detectable = f", detectable {fmt(mde, 3)}" if finding == "no difference detected" and math.isfinite(mde) else ""
    return (
        f"{finding} (difference {fmt(number(difference, 'mean'), 3)}, 95% CI {fmt(low, 3)} to {fmt(high, 3)}"
        f"{detectable}; better in {difference['wins']} of {difference['n']} folds)"
    )


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def is_tie(difference: dict) -> bool:
    """No interval, or one that contains 0."""
    low, high = number(difference, "ci_low"), number(difference, "ci_high")
    return not (math.isfinite(low) and math.isfinite(high)) or low <= 0 <= high


def found(difference: dict, *, lower: str, higher: str) -> str:
    """``lower`` / ``higher`` when the interval excludes 0, else "no difference detected"."""
    if is_tie(difference):
        return "no difference detected"
    return lower if number(difference, "ci_high") < 0 else higher


def tie_cell(difference: dict, digits: int = 3) -> str:
    """For a tie: where any difference lies, and the smallest one the design detects with 80%
    power (from the folds' spread, with the interval's corrected variance); empty otherwise."""
    if not is_tie(difference):
        return ""
    low, high, mde = number(difference, "ci_low"), number(difference, "ci_high"), number(difference, "mde")
    if not math.isfinite(low):
        return "too few paired folds for an interval"
    return f"any difference lies between {fmt(low, digits)} and {fmt(high, digits)}; detectable: {fmt(mde, digits)}"


def flipped(difference: dict) -> dict:
    """b − a from a − b: the interval mirrored, the detectable size unchanged."""
    return difference | {
        "mean": -number(difference, "mean"),
        "ci_low": -number(difference, "ci_high"),
        "ci_high": -number(difference, "ci_low"),
        "wins": difference.get("n", 0) - difference.get("wins", 0),
    }


def plain(value):
    """A pandas cell as the plain Python value comparison.json holds."""
    return value.item() if hasattr(value, "item") else value


def point_text(point: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in point.items())


def outcome_text(counts: dict) -> str:
    return ", ".join(f"{int(counts[name])} {name}" for name in OUTCOMES if counts.get(name))


def times(value: float) -> str:
    """``62.9×`` or ``7.8×10⁵×``: a ratio of losses, readable across orders of magnitude."""
    if not math.isfinite(value) or value < 1000:
        return f"{fmt(value, 3)}×"
    exponent = math.floor(math.log10(value))
    digits = str(exponent).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{value / 10**exponent:.2g}×10{digits}×"


def short_point(point: dict) -> str:
    """``hidden 4 at lr 0.3``: a point with its rate last."""
    rest = ", ".join(
        str(value) if key == "activation" else f"{key} {value}" for key, value in point.items() if key != "lr"
    )
    if "lr" not in point:
        return rest
    return f"{rest} at lr {fmt(point['lr'])}" if rest else f"lr {fmt(point['lr'])}"
