"""The control task in the report: a generated table (its schema carries ``noise_floor``) where
the effects the questions ask about can be real. Beside each answer on the data set, whether the
same comparison code detects the effect on the control; its best test MSE against the expected
noise floor and against the noise its held-out rows realised (the true function's MSE on them).
No I/O.

The differences come from metrics/comparison.json, the same paired differences over folds as the
answers on the data set; the realised floor from baselines.json, the fits cut by the epoch budget
from the sweeps' summary.csv.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backprop.lab.answers.q22 import gap_across_folds
from backprop.lab.answers.q24 import narrowest_minus_headline
from backprop.lab.answers.wording import (
    flipped,
    interval,
    is_tie,
    number,
    short_interval,
    short_point,
    upper_first,
    whole,
)
from backprop.lab.blocks import figure, fmt, paragraph, section, table
from backprop.lab.datasets import TRUE_FUNCTION
from backprop.lab.protocol import mean_interval

# The words each question's effect goes by in the control section's title.
QUESTION_WORDS = {"q21": "network − least squares", "q24": "width", "q25": "activation"}
# The sweep whose fits each question's effects on the control rest on.
QUESTION_SWEEP = {"q24": "hidden", "q25": "activation"}


@dataclass(frozen=True)
class ControlRun:
    """What the control's sentences read besides comparison.json and the schemas: the baselines'
    held-out scores (the true function's among them), the headline fits' scores, each task's
    n_test/n_train, each sweep's summary.csv and spec, and each task's train settings."""

    baselines: dict = field(default_factory=dict)  # baselines.json
    scores: dict = field(default_factory=dict)  # task -> <task>-scores.json
    ratios: dict = field(default_factory=dict)
    summaries: dict = field(default_factory=dict)  # sweep name -> summary.csv
    specs: dict = field(default_factory=dict)  # sweep name -> SweepSpec
    configs: dict = field(default_factory=dict)  # task -> train settings

    def budget(self, task: str, sweep: str | None = None) -> int | None:
        """The epoch budget of ``task``'s fits in ``sweep`` (its fixed epochs, else train's)."""
        spec = self.specs.get(sweep) if sweep else None
        fixed = getattr(spec, "fixed", {}) or {}
        epochs = fixed.get("epochs", self.configs.get(task, {}).get("epochs"))
        return int(epochs) if epochs else None

    def capped(self, task: str, sweep: str, points: list[dict]) -> tuple[int, int] | None:
        """(fits still improving at the epoch budget, fits that learned) over ``points`` of a sweep."""
        summary = self.summaries.get(sweep)
        if summary is None or "capped" not in summary:
            return None
        capped = learned = 0
        for point in points:
            match = summary[summary["task"] == task]
            for key, value in point.items():
                match = match[match[key] == value]
            if not len(match):
                return None
            capped, learned = capped + int(match["capped"].iloc[0]), learned + int(match["learned"].iloc[0])
        return capped, learned


def control_tasks(schemas: dict) -> list[str]:
    """The tasks whose table was generated, so that the MSE no model can beat is known."""
    return [task for task, schema in schemas.items() if "noise_floor" in schema]


def _detected(difference: dict | None) -> str:
    if not difference or not difference.get("n"):
        return "no paired comparison (a side did not learn in every fold)"
    if is_tie(difference):
        return f"not detected: {interval(difference, 3)}, detectable {fmt(number(difference, 'mde'), 3)}"
    return f"detected: {interval(difference, 3)}"


def _width_effect(sweep: dict | None) -> tuple[str, dict | None, list[dict]]:
    """The narrowest width, at its own best rate, minus the task's headline network (a positive
    difference: narrow is worse), and the sweep point it pairs: the same contrast on every task."""
    found = narrowest_minus_headline(sweep)
    if found is None:
        return "width", None, []
    point, difference = found
    return f"hidden {point['hidden']} (its best rate) − the headline network", difference, [point]


def _activation_effects(sweep: dict | None) -> list[tuple[str, dict, list[dict]]]:
    """Every activation other than the best on validation, at its own best rate, minus the task's
    headline network (comparison.json's ``each_minus_headline``), with its point: the best's own
    rate may be past the limit, the noisiest cell of the grid. Without those comparisons, each
    other activation minus the chosen one."""
    if not sweep:
        return []
    best = sweep["best"].get("activation")
    headline = {tuple(sorted(v["point"].items())): v for v in sweep.get("each_minus_headline") or []}
    effects = []
    for v in sweep["best_minus_other"]:
        if "activation" not in v["other"]:
            continue
        versus = headline.get(tuple(sorted(v["other"].items())))
        if versus is not None:
            label = f"{v['other']['activation']} (its best rate) − the headline network"
            effects.append((label, versus, [v["other"]]))
        else:
            effects.append((f"{v['other']['activation']} − {best} (chosen)", flipped(v), [v["other"], sweep["best"]]))
    return effects


def _effects(comparison: dict, task: str) -> list[tuple[str, str, dict | None, list[dict]]]:
    """``effects`` with the sweep points each difference pairs ([] for the headline fits)."""
    mine = comparison.get(task, {})
    sweeps = mine.get("sweeps", {})
    found: list[tuple[str, str, dict | None, list[dict]]] = [
        ("q21", "network (headline settings) − least squares", mine.get("network_vs_linear"), [])
    ]
    if "hidden" in sweeps:
        best = sweeps["hidden"]
        found.append(("q21", "network (best width, chosen on val) − least squares", best["best_vs_linear"], []))
    found.append(("q24", *_width_effect(sweeps.get("hidden"))))
    found += [("q25", *effect) for effect in _activation_effects(sweeps.get("activation"))]
    return found


def effects(comparison: dict, task: str) -> list[tuple[str, str, str, dict | None]]:
    """(anchor of the question, what is compared, metric, difference) for each effect the answers
    rest on, as measured on ``task``: network − least squares (the headline settings and a sweep's
    best), the narrowest width − the chosen one, each activation − the chosen one."""
    return [(anchor, label, "test MSE", diff) for anchor, label, diff, _ in _effects(comparison, task)]


def point_words(answer: dict, point: dict) -> str:
    """``hidden 16 at 1.5× its limit``: a sweep's point, its rate last, with its unit."""
    rest = ", ".join(f"{key} {value}" for key, value in point.items() if key != "lr")
    if "lr" not in point:
        return rest
    rate = f"{point['lr']}× its limit" if answer.get("lr_unit") == "limit" else f"lr {point['lr']}"
    return f"{rest} at {rate}" if rest else rate


def realised_floor(run: ControlRun | None, task: str) -> tuple[dict, list[float]] | None:
    """The MSE of the table's true function on each fold's held-out rows (the noise those rows
    realised): its mean with its 95% interval over folds, and the per-fold values."""
    rows = [
        row
        for row in (run.baselines.get("held_out", []) if run else [])
        if row["task"] == task and row["model"] == TRUE_FUNCTION
    ]
    if not rows:
        return None
    values = [float(row["test_mse"]) for row in rows]
    return mean_interval(values, run.ratios.get(task, 0.0) if run else 0.0), values


def _best_sweep(comparison: dict, task: str) -> tuple[str, dict] | None:
    """The sweep whose validation choice reaches the lowest mean test MSE, with its answer."""
    found = [
        (name, answer)
        for name, answer in comparison.get(task, {}).get("sweeps", {}).items()
        if answer.get("headline_vs_best", {}).get("tuned")
    ]
    return min(found, key=lambda item: number(item[1]["headline_vs_best"]["tuned"], "mean"), default=None)


def _capped_words(run: ControlRun | None, task: str, name: str, points: list[dict]) -> str:
    """``2 of 5 fits still improving at the 4000-epoch budget`` for a sweep's points ("" unknown)."""
    counted = run.capped(task, name, points) if run else None
    if counted is None:
        return ""
    epochs = run.budget(task, name) if run else None
    return (
        f"{counted[0]} of {counted[1]} fits still improving at the {name} sweep's "
        f"{f'{epochs}-epoch ' if epochs else ''}budget"
    )


def floor_facts(comparison: dict, schema: dict, task: str, run: ControlRun | None = None) -> dict | None:
    """The best sweep choice's test MSE against the expected floor (noise²) and the realised one
    (the true function's MSE on the same held-out rows), with best − f paired by fold."""
    best = _best_sweep(comparison, task)
    if best is None:
        return None
    name, answer = best
    facts = {
        "name": name,
        "where": point_words(answer, answer["best"]),
        "tuned": answer["headline_vs_best"]["tuned"],
        "floor": schema["noise_floor"],
        "versus": answer.get("best_vs_true_function"),
        "capped": _capped_words(run, task, name, [answer["best"]]),
    }
    realised = realised_floor(run, task)
    if realised is not None:
        facts["realised"], facts["realised_folds"] = realised
    return facts


def _times(value: float, floor: float) -> str:
    return f"{fmt(value / floor, 3)}×" if floor > 0 else "n/a"


def best_against_floor(
    comparison: dict, schema: dict, task: str, run: ControlRun | None = None
) -> tuple[str, dict | None]:
    """The lowest test MSE a sweep's validation choice reaches on the control, with its interval,
    in words against the expected noise floor and against the noise the held-out rows realised."""
    facts = floor_facts(comparison, schema, task, run)
    floor = schema["noise_floor"]
    if facts is None:
        return f"no sweep ran on {task}; noise floor {fmt(floor, 3)}", None
    tuned, mean = facts["tuned"], number(facts["tuned"], "mean")
    text = (
        f"best test MSE {interval(tuned, 3)} (sweep {facts['name']}, {facts['where']}"
        + (f"; {facts['capped']}" if facts["capped"] else "")
        + f") against the expected noise floor {fmt(floor, 3)} (noise²: no model's expected MSE is lower): "
        f"{_times(mean, floor)} it"
    )
    if "realised" in facts:
        realised, folds = facts["realised"], facts["realised_folds"]
        text += (
            f". The noise these held-out rows hold is not noise² but the MSE of the true function f on them: "
            f"{fmt(number(realised, 'mean'), 3)} (95% CI {fmt(number(realised, 'ci_low'), 3)} to "
            f"{fmt(number(realised, 'ci_high'), 3)}; per fold {fmt(min(folds), 3)} to {fmt(max(folds), 3)}), the "
            f"realised floor; the best choice is {_times(mean, number(realised, 'mean'))} it"
        )
    versus = facts["versus"]
    if versus and versus.get("n"):
        text += f"; best − f, paired by fold: {_detected(versus)}"
    return text, tuned


def floor_cell(comparison: dict, schema: dict, task: str, run: ControlRun | None = None) -> str:
    """``best_against_floor`` in the answers table's few words."""
    facts = floor_facts(comparison, schema, task, run)
    if facts is None or not facts["floor"] > 0:
        return ""
    mean = number(facts["tuned"], "mean")
    text = f"best test MSE {interval(facts['tuned'], 3)}"
    if "realised" in facts:
        realised = number(facts["realised"], "mean")
        text += (
            f": {_times(mean, realised)} the realised noise floor {fmt(realised, 3)} (MSE of the true f on the "
            f"held-out rows; {fmt(facts['floor'], 3)} expected)"
        )
    else:
        text += f": {_times(mean, facts['floor'])} the noise floor {fmt(facts['floor'], 3)}"
    versus = facts["versus"]
    if versus and versus.get("n"):
        text += f"; best − f: {_short_detected(versus)}"
    return text + (f"; {facts['capped']}" if facts["capped"] else "")


def _tuned(comparison: dict, task: str) -> tuple[str, dict] | None:
    """The sweep whose validation choice reaches the lowest mean test MSE, with its comparison."""
    best = _best_sweep(comparison, task)
    return None if best is None else (best[0], best[1]["headline_vs_best"])


def headline_capped(scores: dict | None) -> tuple[int, int] | None:
    """(headline fits still improving at the epoch budget, learned fits): the folds that learned
    and were ``still_improving`` (stopped by the budget, not by early stopping), as summary.csv
    counts them in ``capped``. None without the scores."""
    if not scores:
        return None
    learned = [f for f in scores.get("folds", []) if f.get("outcome", "learned") == "learned"]
    return sum(1 for f in learned if f.get("still_improving")), len(learned)


def reach_words(difference: dict, capped: tuple[int, int] | None = None) -> str:
    """headline − tuned in words: a tie with its detectable size, or the side detected; with the
    headline fits the epoch budget cut short, where known."""
    if is_tie(difference):
        text = (
            f"no difference detected: headline − tuned {interval(difference, 3)}, detectable "
            f"{fmt(number(difference, 'mde'), 3)}"
        )
    elif number(difference, "ci_high") < 0:
        text = f"headline detectably lower than tuned: {interval(difference, 3)}"
    else:
        text = f"headline detectably worse than tuned: {interval(difference, 3)}"
    if capped is not None and capped[0]:
        text += f"; {capped[0]} of {capped[1]} headline fits still improving at the epoch budget"
    return text


def one_fold_words(versus: dict, scores: dict | None = None, epochs: int | None = None) -> str:
    """When one fold makes most of headline − tuned (its |difference| above the other folds'
    together): which fold, against the others' range, and whether its headline fit was still
    improving at the epoch budget (``scores``: the headline fits, ``epochs``: their budget)."""
    each = versus.get("headline_minus_tuned_by_fold") or []
    sizes = [abs(entry["difference"]) for entry in each]
    if len(each) < 3 or not sizes[(top := sizes.index(max(sizes)))] > sum(sizes) - sizes[top]:
        return ""
    entry, others = each[top], [e["difference"] for i, e in enumerate(each) if i != top]
    text = (
        f"one fold makes most of that mean: fold {entry['fold']}"
        + (f" of repeat {entry['repeat']}" if any(e["repeat"] for e in each) else "")
        + f" differs by {fmt(entry['difference'], 3)}, the other {len(others)} by {fmt(min(others), 3)} to "
        f"{fmt(max(others), 3)}"
    )
    fit = next(
        (
            f
            for f in (scores or {}).get("folds", [])
            if (f.get("repeat"), f.get("fold")) == (entry["repeat"], entry["fold"])
        ),
        None,
    )
    if fit is not None and epochs and fit.get("best_epoch") is not None and int(fit["best_epoch"]) >= epochs - 1:
        text += f", and its headline fit was still improving at the {epochs}-epoch budget"
    return text


def headline_reach(
    comparison: dict,
    task: str,
    settings: str = "",
    capped: tuple[int, int] | None = None,
    run: ControlRun | None = None,
) -> str:
    """Do the headline settings reach the tuned MSE? headline − the best sweep's choice, paired by
    fold (the same rows and initial draws), a tie worded as a tie with its detectable size, and
    said when one fold makes it. ``settings``: the headline settings in words, where they differ
    from train.*; ``capped``: (headline fits the epoch budget cut short, learned fits)."""
    tuned = _tuned(comparison, task)
    if tuned is None:
        return ""
    name, versus = tuned
    difference = versus["headline_minus_tuned"]
    where = point_words(comparison[task]["sweeps"][name], versus["best"])
    one = one_fold_words(versus, run.scores.get(task) if run else None, run.budget(task) if run else None)
    return (
        f"the headline settings{settings} reach test MSE {interval(versus['headline'], 3)} against "
        f"{interval(versus['tuned'], 3)} at sweep {name}'s choice ({where}): {reach_words(difference, capped)}"
        + (f"; {one}" if one else "")
    )


def headline_settings(config: dict | None, overrides: list | None, task: str = "") -> str:
    """`` (lr 0.3, epochs 3000 from train.overrides.control)``: what the task's override sets."""
    if not config or not overrides:
        return ""
    where = f"`train.overrides.{task}`" if task else "its override"
    return " (" + ", ".join(f"{key} {config[key]}" for key in overrides if key in config) + f" from {where})"


def without_override_words(comparison: dict, task: str, run: ControlRun | None = None) -> str:
    """What `train`'s own value of an overridden key gives on the task, when a sweep ran it
    (comparison.json's ``without_override``): its test MSE with its interval, how many of its fits
    the epoch budget cut short, and it − the tuned choice, paired by fold; "" without such a fit."""
    found, tuned = comparison.get(task, {}).get("without_override"), _tuned(comparison, task)
    if not found or not found.get("scores", {}).get("n") or tuned is None:
        return ""
    epochs = run.budget(task, found["sweep"]) if run else None
    own = ", ".join(f"{key} {value}" for key, value in found.get("own", {}).items())
    kept = "".join(f"; {key} {value} as the override sets" for key, value in found.get("kept", {}).items())
    text = (
        f"with `train`'s own {own or 'settings'} instead of the override's (sweep {found['sweep']}'s "
        f"{short_point(found['point'])}{kept}), test MSE is {interval(found['scores'], 3)}, {found['capped']} of "
        f"{found['learned']} fits still improving at the {f'{epochs}-epoch ' if epochs else ''}budget"
    )
    versus = found.get("minus_best", {}).get(tuned[0])
    if versus and versus.get("n"):
        text += f"; it − the tuned choice, paired by fold: {_detected(versus)}"
    return text


def _short_label(label: str) -> str:
    return (
        label.replace("network (headline settings)", "headline")
        .replace("network (best width, chosen on val)", "best width")
        .replace(" (chosen)", "")
        .replace(" (its best rate) − the headline network", " − headline")
    )


def _short_detected(difference: dict | None) -> str:
    """``_detected`` in the answers table's few words."""
    return (
        _detected(difference)
        .replace("no paired comparison (a side did not learn in every fold)", "no pairs")
        .replace("not detected: ", "tie ")
        .replace("detected: ", "**detected** ")
    )


def gap_effect(run: ControlRun | None, task: str) -> dict | None:
    """2.2's effect on the control: validation − train loss at each fold's returned weights."""
    folds = (run.scores.get(task) or {}).get("folds") if run else None
    return gap_across_folds(folds, "mse", run.ratios.get(task, 0.0)) if run and folds else None


def answer_cells(
    comparison: dict,
    schemas: dict,
    settings: str = "",
    capped: tuple[int, int] | None = None,
    run: ControlRun | None = None,
) -> dict[str, str]:
    """anchor -> the control column's text of the answers table (the first control task): each
    effect in a few words, the same effect as the row's; its section's closing paragraph says it
    in full. headline − tuned is no row's effect: the control section says it."""
    tasks = control_tasks(schemas)
    if not tasks:
        return {}
    task = tasks[0]
    cells: dict[str, list[str]] = {}
    for anchor, label, _, difference in effects(comparison, task):
        cells.setdefault(anchor, []).append(f"{_short_label(label)}: {_short_detected(difference)}")
    floor = floor_cell(comparison, schemas[task], task, run)
    if floor:
        cells.setdefault("q21", []).append(floor)
    gap = gap_effect(run, task)
    if gap is not None:
        cells.setdefault("q22", []).append(f"validation − train MSE: {_short_detected(gap)}")
    return {anchor: "; ".join(texts) for anchor, texts in cells.items()}


def _line_effect(label: str, difference: dict | None) -> str:
    """One effect of the control line: detected with its interval, or a tie with its detectable size."""
    if not difference or not difference.get("n"):
        return f"{label}: no pairs"
    if is_tie(difference):
        return f"{label} not detected, {short_interval(difference)}, detectable {whole(number(difference, 'mde'))}"
    return f"{label} **detected**, {short_interval(difference)}"


def answers_line(comparison: dict, schemas: dict, run: ControlRun | None = None) -> dict | None:
    """The control task under the answers table, in one line: each effect the answers ask about,
    detected or not with its number, and the best test MSE against the noise floor; the control
    section says it in full."""
    tasks = control_tasks(schemas)
    if not tasks:
        return None
    task = tasks[0]
    by_question: dict[str, list[str]] = {}
    for anchor, label, _, difference in effects(comparison, task):
        by_question.setdefault(anchor, []).append(_line_effect(_short_label(label), difference))
    gap = gap_effect(run, task)
    if gap is not None:
        by_question.setdefault("q22", []).append(_line_effect("validation − train", gap))
    speed = (comparison.get(task, {}).get("sweeps", {}).get("activation") or {}).get("reach_at_common_rate")
    if speed and speed.get("versus"):
        best = speed["best"].get("activation", "")
        by_question.setdefault("q25", []).append(
            f"speed at lr {fmt(speed['lr'])} (epochs): "
            + ", ".join(_line_effect(f"{v['other'].get('activation', '')} − {best}", v) for v in speed["versus"])
        )
    parts = [f"{anchor[1]}.{anchor[2:]} {'; '.join(by_question[anchor])}" for anchor in sorted(by_question)]
    facts = floor_facts(comparison, schemas[task], task, run)
    if facts is not None and facts["floor"] > 0:
        floor = number(facts["realised"], "mean") if "realised" in facts else facts["floor"]
        kind = "the noise its held-out rows hold (f's MSE there)" if "realised" in facts else "the noise floor"
        parts.append(
            f"best test MSE {short_interval(facts['tuned'])}, {_times(number(facts['tuned'], 'mean'), floor)} "
            f"{kind}, {fmt(floor, 3)}"
        )
    return paragraph(
        f"**Control task** `{task}` (generated from a known f and noise, so its effects are real; "
        "[section](#control)), test MSE: " + " · ".join(parts) + "."
    )


def section_paragraphs(
    comparison: dict,
    schemas: dict,
    settings: str = "",
    capped: tuple[int, int] | None = None,
    run: ControlRun | None = None,
) -> dict[str, dict]:
    """anchor -> a paragraph closing that question's section: what the control shows."""
    tasks = control_tasks(schemas)
    if not tasks:
        return {}
    task, cells = tasks[0], answer_cells(comparison, schemas, settings, capped, run)
    source = schemas[task]["source"]
    return {
        anchor: paragraph(f"**Control** (task `{task}`, {source}, same folds and comparison code): {text}.")
        for anchor, text in cells.items()
    }


def _budget_cut(run: ControlRun | None, task: str, missed: list[tuple]) -> str:
    """How many of the fits the missed effects rest on were still improving at the epoch budget."""
    points: dict[str, list[dict]] = {}
    for anchor, _, _, pair in missed:
        name = QUESTION_SWEEP.get(anchor)
        if name:
            points.setdefault(name, []).extend(p for p in pair if p not in points.get(name, []))
    parts = [_capped_words(run, task, name, pair) for name, pair in points.items()]
    counted = headline_capped(run.scores.get(task)) if run else None
    if counted and any(label.endswith("the headline network") for _, label, _, _ in missed):
        parts.append(f"{counted[0]} of {counted[1]} headline fits")
    parts = [part for part in parts if part]
    if not parts:
        return ""
    return f" These ties are partly budget-limited: {'; '.join(parts)}."


def power_sentence(comparison: dict, task: str, sweeps: list[str] | None = None, run: ControlRun | None = None) -> str:
    """What the control's comparisons say about the protocol's power, without claiming more: the
    effects it detected are of the control's size; on the data set an interval excludes only the
    effects beyond its ends; the effects the control did not detect either, with their detectable
    sizes and how many of their fits the epoch budget cut short. ``sweeps``: the sweeps the control
    ran in (the others have no control)."""
    found = [(a, label, diff, pair) for a, label, diff, pair in _effects(comparison, task) if diff and diff.get("n")]
    detected = [(label, diff) for _, label, diff, _ in found if not is_tie(diff)]
    missed = [(label, diff) for _, label, diff, _ in found if is_tie(diff)]
    ran = f", and through the sweeps {', '.join(sweeps)} only (the others have no control)" if sweeps else ""
    text = f"It runs through the same folds, training, baselines and paired comparisons as the data set{ran}. "
    if detected:
        sizes = sorted(abs(number(diff, "mean")) for _, diff in detected)
        text += (
            f"The control detects effects of its own size (|difference| {fmt(sizes[0], 3)} to {fmt(sizes[-1], 3)} "
            "test MSE), so the protocol can detect effects that large relative to its noise; on the data set, "
            "effects beyond each interval's ends are excluded, smaller ones are not: a tie there does not show that "
            "the effect is absent. "
        )
    if missed:
        mdes = sorted(number(diff, "mde") for _, diff in missed)
        span = fmt(mdes[0], 3) if fmt(mdes[0], 3) == fmt(mdes[-1], 3) else f"{fmt(mdes[0], 3)} to {fmt(mdes[-1], 3)}"
        text += (
            f"Not detected on the control either: {'; '.join(_short_label(label) for label, _ in missed)} "
            f"(detectable {span}): the control shows no power for these effects."
            + _budget_cut(run, task, [effect for effect in found if is_tie(effect[2])])
        )
    return text.strip()


def section_title(comparison: dict, task: str) -> str:
    """The control section's title: which questions' effects it detects and which it does not."""
    found = [(anchor, diff) for anchor, _, _, diff in effects(comparison, task) if diff and diff.get("n")]
    detected = [QUESTION_WORDS[a] for a in QUESTION_WORDS if any(x == a and not is_tie(d) for x, d in found)]
    missed = [
        QUESTION_WORDS[a] for a in QUESTION_WORDS if any(x == a for x, _ in found) and QUESTION_WORDS[a] not in detected
    ]
    if not detected:
        return "The control task: no effect detected on a generated table"
    return (
        f"The control task: effects detected on a generated table ({', '.join(detected)}"
        + (f"; not {', '.join(missed)}" if missed else "")
        + ")"
    )


def control_section(
    comparison: dict,
    schemas: dict,
    data_task: str = "regression",
    settings: str = "",
    sweep_specs: dict | None = None,
    capped: tuple[int, int] | None = None,
    run: ControlRun | None = None,
) -> list[dict]:
    """Each effect on the data set beside the control, the control's best MSE against its floor,
    and the control's own figures (its curves, with the floor drawn, and every sweep it ran in)."""
    tasks = control_tasks(schemas)
    if not tasks:
        return []
    task = tasks[0]
    schema = schemas[task]
    # The same effect on the data set: the same anchor and first side ("hidden 1", "relu"); its
    # chosen side may differ, so its label is shown when it does.
    theirs = {
        (anchor, label.split(" − ")[0]): (label, diff) for anchor, label, _, diff in effects(comparison, data_task)
    }
    rows = []
    for anchor, label, metric, difference in effects(comparison, task):
        their_label, other = theirs.get((anchor, label.split(" − ")[0]), (label, None))
        own = _detected(other) + ("" if their_label == label else f" ({their_label})")
        rows.append([f"[{anchor}](#{anchor})", label, metric, own, _detected(difference)])
    floor_text, _ = best_against_floor(comparison, schema, task, run)
    blocks = [
        paragraph(
            f"The control task `{task}` is {schema['source']} ({schema['rows']} rows, "
            f"{len(schema['features'])} features): a nonlinear target with noise of known variance, so the MSE "
            f"no model beats in expectation is known (noise² = {fmt(schema['noise_floor'], 3)}), and its true "
            "function f scores the noise each fold's rows realised; generated by the prepare stage from "
            "params.yaml (its sha256 is in the provenance). "
            + power_sentence(
                comparison, task, [n for n, spec in (sweep_specs or {}).items() if task in spec.tasks], run
            )
        ),
        table(["question", "difference (positive: the first is worse)", "metric", data_task, task], rows),
        paragraph(f"**Floor.** {floor_text}."),
    ]
    reach = headline_reach(comparison, task, settings, capped, run)
    untuned = without_override_words(comparison, task, run)
    if reach:
        blocks.append(
            paragraph(f"**Default recipe.** {upper_first(reach)}." + (f" {upper_first(untuned)}." if untuned else ""))
        )
    blocks.append(
        figure(f"history_{task}.png", f"{task}: loss and accuracy per epoch, train/val/test; the noise floor")
    )
    for name, spec in (sweep_specs or {}).items():
        if task in spec.tasks:
            blocks += [figure(file, f"{task}: sweep {name}") for file in spec.figure_files(name, task)]
    return [section(section_title(comparison, task), blocks, "control")]
