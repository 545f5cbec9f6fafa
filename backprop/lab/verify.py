"""Compare two sets of tracked outputs, a fresh repro's against the committed ones: how many fits
are identical to the stored digits, which differ and why, and which conclusions of the report
differ. Pure: it takes the files' texts (path -> text) and returns a Verification.

What holds where (docs/determinism.md): on the same machine every fit is identical. On another
CPU a fit's last bits move (another BLAS kernel); the stored 6 digits hide that except where a
fit amplifies it: an oscillating fit, a rate past the lr limit, a model with no finite optimum.
The conclusions (a chosen setting, a detected difference, an outcome count) must not move, and
the headline numbers stay within ``HEADLINE_TOLERANCE``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from backprop.lab.protocol import OUTCOMES

# Relative change allowed in a headline metric (metrics/<task>.json) between two CPUs.
HEADLINE_TOLERANCE = 0.01
# Counts of what happened to the fits: a conclusion, not a number.
OUTCOME_COLUMNS = ("fits", *OUTCOMES, "capped")
UNSTABLE = ("oscillating", "diverged")


@dataclass
class Verification:
    identical: int = 0
    differing: list[str] = field(default_factory=list)  # "<file> <fit>: <why>"
    conclusions: int = 0
    changed: list[str] = field(default_factory=list)  # "<conclusion>: <committed> -> <fresh>"
    headline: list[str] = field(default_factory=list)  # numbers beyond HEADLINE_TOLERANCE
    missing: list[str] = field(default_factory=list)  # files one side has and the other lacks

    @property
    def passed(self) -> bool:
        return not (self.changed or self.headline or self.missing)

    def lines(self) -> list[str]:
        fits = self.identical + len(self.differing)
        out = [f"fits: {self.identical} of {fits} identical to the stored digits"]
        out += [f"  differs: {line}" for line in self.differing]
        out.append(f"conclusions: {self.conclusions} checked, {len(self.changed) or 'none'} changed")
        out += [f"  CHANGED {line}" for line in self.changed]
        out += [f"  HEADLINE {line}" for line in self.headline]
        out += [f"  MISSING {line}" for line in self.missing]
        failed = "FAILED: " + "; ".join(
            what
            for what, found in (
                ("a conclusion of the report differs", self.changed),
                (f"a headline number moved by more than {HEADLINE_TOLERANCE:.0%}", self.headline),
                ("an output is missing on one side", self.missing),
            )
            if found
        )
        out.append("verify: " + ("passed" if self.passed else failed))
        return out


def _table(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def _fit_key(row: Mapping, columns: list[str]) -> str:
    """A fit's coordinates: the columns up to and including ``fold`` (task, grid keys, repeat)."""
    keys = columns[: columns.index("fold") + 1]
    return " ".join(f"{key}={row[key]}" for key in keys)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def why(old: Mapping, new: Mapping, lr_limit: float = math.nan) -> str:
    """Why a fit's stored digits can move with the CPU, from what the two rows say about it."""
    reasons = []
    outcomes = {old.get("outcome"), new.get("outcome")}
    ratios = [_number(old.get("peak_train_loss_ratio")), _number(new.get("peak_train_loss_ratio"))]
    unstable = sorted(str(outcome) for outcome in outcomes & set(UNSTABLE))
    if unstable:
        reasons.append(f"{'/'.join(unstable)} (outcome {old.get('outcome')} -> {new.get('outcome')})")
    elif any(ratio > 1 for ratio in ratios):
        reasons.append(f"oscillating (train loss peaked at {ratios[0]:g}x -> {ratios[1]:g}x its start)")
    lr = _number(old.get("lr"))
    if lr > lr_limit:
        reasons.append(f"past the lr limit (lr {lr:g} > {lr_limit:.3g})")
    if old.get("model") == "linear" and old.get("task") == "classification":
        reasons.append("separable data (logistic regression: the penalty sets its optimum)")
    return "; ".join(reasons) or "unexplained"


def _limits(summary_text: str | None) -> dict[str, float]:
    """Point (task and grid keys) -> its lr limit, from a sweep's summary.csv."""
    if summary_text is None:
        return {}
    summary = _table(summary_text)
    if "lr_limit" not in summary:
        return {}
    keys = list(summary.columns[: summary.columns.get_loc("fits")])
    return {" ".join(f"{k}={row[k]}" for k in keys): _number(row["lr_limit"]) for _, row in summary.iterrows()}


def compare_fits(name: str, old: list[dict], new: list[dict], columns: list[str], limits=None) -> tuple[int, list[str]]:
    """Identical fits, and one line per fit whose stored values differ, with why."""
    limits = limits or {}
    before = {_fit_key(row, columns): row for row in old}
    identical, differing = 0, []
    for row in new:
        key = _fit_key(row, columns)
        if key not in before:
            differing.append(f"{name} {key}: not in the committed file")
            continue
        if all(str(before[key].get(c)) == str(row.get(c)) for c in columns):
            identical += 1
            continue
        point = " ".join(part for part in key.split(" ") if not part.startswith(("repeat=", "fold=")))
        differing.append(f"{name} {key}: {why(before[key], row, limits.get(point, math.nan))}")
    return identical, differing


def _json_rows(rows: list[dict]) -> tuple[list[dict], list[str]]:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    # The coordinates first, so that a fit's key is its task, model, repeat and fold.
    first = [c for c in ("task", "model", "repeat", "fold") if c in columns]
    return rows, first + [c for c in columns if c not in first]


def verdict(difference: Mapping) -> str:
    """A paired difference's conclusion: which side its 95% interval puts the mean on."""
    low, high = _number(difference.get("ci_low")), _number(difference.get("ci_high"))
    if high < 0:
        return "lower"
    if low > 0:
        return "higher"
    return "no difference detected"


def _label(item, index: int) -> str:
    if isinstance(item, dict):
        for key in ("point", "other", "kind"):
            if key in item:
                return f"[{json.dumps(item[key], sort_keys=True)}]"
        if "from" in item and "to" in item:
            return f"[{json.dumps(item['from'], sort_keys=True)} -> {json.dumps(item['to'], sort_keys=True)}]"
    return f"[{index}]"


def comparison_conclusions(data, path: str = "comparison") -> dict[str, str]:
    """Every conclusion in comparison.json: the chosen point (``best``), each paired difference's
    verdict, every outcome count and whether every fold learned."""
    found = {}
    if isinstance(data, dict):
        if "ci_low" in data and "ci_high" in data:
            found[path] = verdict(data)
        for key, value in data.items():
            where = f"{path}.{key}"
            if key == "best":
                found[where] = json.dumps(value, sort_keys=True)
            elif key == "outcomes":
                found[where] = json.dumps({k: v for k, v in value.items() if v}, sort_keys=True)
            elif key == "every_fold_learned":
                found[where] = str(value)
            elif isinstance(value, dict | list):
                found |= comparison_conclusions(value, where)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            found |= comparison_conclusions(item, f"{path}{_label(item, index)}")
    return found


def summary_conclusions(name: str, text: str) -> dict[str, str]:
    """Each point's outcome counts in a sweep's summary.csv."""
    summary = _table(text)
    counts = [c for c in OUTCOME_COLUMNS if c in summary]
    if not counts:
        return {}
    keys = list(summary.columns[: summary.columns.get_loc(counts[0])])
    return {
        f"{name} " + " ".join(f"{k}={row[k]}" for k in keys): " ".join(f"{c}={row[c]}" for c in counts)
        for _, row in summary.iterrows()
    }


def conclusions(files: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for path, text in files.items():
        if path.endswith("comparison.json"):
            found |= comparison_conclusions(json.loads(text))
        elif path.endswith("/summary.csv"):
            found |= summary_conclusions(path, text)
        elif path.endswith("-scores.json"):
            found[f"{path} outcomes"] = json.dumps(json.loads(text)["outcomes"], sort_keys=True)
    return found


def is_headline(path: str) -> bool:
    """metrics/<task>.json: the files dvc.yaml declares as metrics."""
    name = path.removeprefix("metrics/")
    return name != path and "/" not in name and "-" not in name and name not in ("baselines.json", "comparison.json")


def headline_changes(path: str, old_text: str, new_text: str) -> list[str]:
    """Headline numbers (metrics/<task>.json) that moved by more than ``HEADLINE_TOLERANCE``."""
    out = []

    def flat(data, prefix=""):
        for key, value in data.items():
            if isinstance(value, dict):
                yield from flat(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    old, new = dict(flat(json.loads(old_text))), dict(flat(json.loads(new_text)))
    for key in sorted(set(old) | set(new)):
        a, b = _number(old.get(key)), _number(new.get(key))
        if not math.isclose(a, b, rel_tol=HEADLINE_TOLERANCE) and not (math.isnan(a) and math.isnan(b)):
            out.append(f"{path} {key}: {old.get(key)} -> {new.get(key)}")
    return out


def verify(committed: Mapping[str, str], fresh: Mapping[str, str]) -> Verification:
    """``committed`` and ``fresh`` map each tracked output's path to its text."""
    result = Verification()
    result.missing = sorted(set(committed) ^ set(fresh))
    for path in sorted(set(committed) & set(fresh)):
        old, new = committed[path], fresh[path]
        if path.endswith("/results.csv"):
            limits = _limits(fresh.get(path.replace("results.csv", "summary.csv")))
            before, after = _table(old), _table(new)
            found = compare_fits(path, before.to_dict("records"), after.to_dict("records"), list(after.columns), limits)
        elif path.endswith("-scores.json"):
            rows, columns = _json_rows(json.loads(new)["folds"])
            found = compare_fits(path, json.loads(old)["folds"], rows, columns)
        elif path.endswith("baselines.json"):
            rows, columns = _json_rows(json.loads(new)["held_out"])
            found = compare_fits(path, json.loads(old)["held_out"], rows, columns)
        else:
            found = (0, [])
        result.identical += found[0]
        result.differing += found[1]
        if is_headline(path):
            result.headline += headline_changes(path, old, new)
    before, after = conclusions(committed), conclusions(fresh)
    result.conclusions = len(before)
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            result.changed.append(f"{key}: {before.get(key)} -> {after.get(key)}")
    return result
