"""The control task in the report: a generated table (its schema carries ``noise_floor``) where
the effects the questions ask about are real. Beside each answer on the data set, whether the same
comparison code detects the effect on the control, and its best test MSE against the floor. No I/O.

Every number comes from metrics/comparison.json, the same paired differences over folds as the
answers on the data set.
"""

from __future__ import annotations

from backprop.lab.answers import flipped, fmt, interval, is_tie, number, upper_first
from backprop.lab.blocks import figure, paragraph, section, table


def control_tasks(schemas: dict) -> list[str]:
    """The tasks whose table was generated, so that the MSE no model can beat is known."""
    return [task for task, schema in schemas.items() if "noise_floor" in schema]


def _detected(difference: dict | None) -> str:
    if not difference or not difference.get("n"):
        return "no paired comparison (a side did not learn in every fold)"
    if is_tie(difference):
        return f"not detected: {interval(difference, 3)}, detectable {fmt(number(difference, 'mde'), 3)}"
    return f"detected: {interval(difference, 3)}"


def _width_effect(sweep: dict | None) -> tuple[str, dict | None]:
    """The narrowest width minus the chosen one (a positive difference: narrow is worse)."""
    if not sweep:
        return "width", None
    versus = [v for v in sweep["best_minus_other"] if "hidden" in v["other"]]
    if not versus:
        return "width", None
    narrowest = min(versus, key=lambda v: v["other"]["hidden"])
    label = f"hidden {narrowest['other']['hidden']} − hidden {sweep['best'].get('hidden')} (chosen)"
    return label, flipped(narrowest)


def _activation_effects(sweep: dict | None) -> list[tuple[str, dict]]:
    """Every other activation minus the chosen one, each at its own best rate."""
    if not sweep:
        return []
    best = sweep["best"].get("activation")
    return [
        (f"{v['other']['activation']} − {best} (chosen)", flipped(v))
        for v in sweep["best_minus_other"]
        if "activation" in v["other"]
    ]


def effects(comparison: dict, task: str) -> list[tuple[str, str, str, dict | None]]:
    """(anchor of the question, what is compared, metric, difference) for each effect the answers
    rest on, as measured on ``task``: network − least squares (the headline settings and a sweep's
    best), the narrowest width − the chosen one, each activation − the chosen one."""
    mine = comparison.get(task, {})
    sweeps = mine.get("sweeps", {})
    found = [("q21", "network (headline settings) − least squares", mine.get("network_vs_linear"))]
    if "hidden" in sweeps:
        found.append(("q21", "network (best width, chosen on val) − least squares", sweeps["hidden"]["best_vs_linear"]))
    found.append(("q24", *_width_effect(sweeps.get("hidden"))))
    found += [("q25", label, diff) for label, diff in _activation_effects(sweeps.get("activation"))]
    return [(anchor, label, "test MSE", diff) for anchor, label, diff in found]


def point_words(answer: dict, point: dict) -> str:
    """``hidden 16, lr 1.5× its limit``: a sweep's point, its rate with its unit."""
    in_units = answer.get("lr_unit") == "limit"
    return ", ".join(
        f"{key} {value}× its limit" if key == "lr" and in_units else f"{key} {value}" for key, value in point.items()
    )


def best_against_floor(comparison: dict, schema: dict, task: str) -> tuple[str, dict | None]:
    """The lowest test MSE a sweep's validation choice reaches on the control, with its interval,
    in words against the noise floor."""
    best = None
    for name, answer in comparison.get(task, {}).get("sweeps", {}).items():
        tuned = answer.get("headline_vs_best", {}).get("tuned")
        if tuned and (best is None or number(tuned, "mean") < number(best[1], "mean")):
            best = (name, tuned, point_words(answer, answer["best"]))
    floor = schema["noise_floor"]
    if best is None:
        return f"no sweep ran on {task}; noise floor {fmt(floor, 3)}", None
    name, tuned, where = best
    ratio = number(tuned, "mean") / floor if floor > 0 else float("nan")
    return (
        f"best test MSE {interval(tuned, 3)} (sweep {name}, {where}) against the noise floor {fmt(floor, 3)} "
        f"(noise², no model's expected MSE is lower): {fmt(ratio, 3)}× the floor"
    ), tuned


def _tuned(comparison: dict, task: str) -> tuple[str, dict] | None:
    """The sweep whose validation choice reaches the lowest mean test MSE, with its comparison."""
    found = [
        (name, answer["headline_vs_best"])
        for name, answer in comparison.get(task, {}).get("sweeps", {}).items()
        if answer.get("headline_vs_best")
    ]
    return min(found, key=lambda item: number(item[1]["tuned"], "mean"), default=None)


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


def headline_reach(comparison: dict, task: str, settings: str = "", capped: tuple[int, int] | None = None) -> str:
    """Do the headline settings reach the tuned MSE? headline − the best sweep's choice, paired by
    fold (the same rows and initial draws), a tie worded as a tie with its detectable size.
    ``settings``: the headline settings in words, where they differ from train.*; ``capped``:
    (headline fits the epoch budget cut short, learned fits)."""
    tuned = _tuned(comparison, task)
    if tuned is None:
        return ""
    name, versus = tuned
    difference = versus["headline_minus_tuned"]
    where = point_words(comparison[task]["sweeps"][name], versus["best"])
    return (
        f"the headline settings{settings} reach test MSE {interval(versus['headline'], 3)} against "
        f"{interval(versus['tuned'], 3)} at sweep {name}'s choice ({where}): {reach_words(difference, capped)}"
    )


def headline_settings(config: dict | None, overrides: list | None) -> str:
    """`` (lr 0.3, epochs 3000 from train.overrides.control)``: what the task's override sets."""
    if not config or not overrides:
        return ""
    return " (" + ", ".join(f"{key} {config[key]}" for key in overrides if key in config) + " from its override)"


def _short_label(label: str) -> str:
    return (
        label.replace("network (headline settings)", "headline")
        .replace("network (best width, chosen on val)", "best width")
        .replace(" (chosen)", "")
    )


def _short_detected(difference: dict | None) -> str:
    """``_detected`` in the answers table's few words."""
    return (
        _detected(difference)
        .replace("no paired comparison (a side did not learn in every fold)", "no pairs")
        .replace("not detected: ", "tie ")
        .replace("detected: ", "**detected** ")
    )


def answer_cells(
    comparison: dict, schemas: dict, settings: str = "", capped: tuple[int, int] | None = None
) -> dict[str, str]:
    """anchor -> the control column's text of the answers table (the first control task): each
    effect in a few words; its section's closing paragraph says it in full."""
    tasks = control_tasks(schemas)
    if not tasks:
        return {}
    task = tasks[0]
    cells: dict[str, list[str]] = {}
    for anchor, label, _, difference in effects(comparison, task):
        cells.setdefault(anchor, []).append(f"{_short_label(label)}: {_short_detected(difference)}")
    _, tuned = best_against_floor(comparison, schemas[task], task)
    floor = schemas[task]["noise_floor"]
    if tuned is not None and floor > 0:
        ratio = fmt(number(tuned, "mean") / floor, 3)
        cells.setdefault("q21", []).append(
            f"best test MSE {interval(tuned, 3)}: {ratio}× the noise floor {fmt(floor, 3)}"
        )
    found = _tuned(comparison, task)
    if found is not None:
        cells.setdefault("q21", []).append(reach_words(found[1]["headline_minus_tuned"], capped))
    return {anchor: "; ".join(texts) for anchor, texts in cells.items()}


def section_paragraphs(
    comparison: dict, schemas: dict, settings: str = "", capped: tuple[int, int] | None = None
) -> dict[str, dict]:
    """anchor -> a paragraph closing that question's section: what the control shows."""
    tasks = control_tasks(schemas)
    if not tasks:
        return {}
    task, cells = tasks[0], answer_cells(comparison, schemas, settings, capped)
    source = schemas[task]["source"]
    return {
        anchor: paragraph(f"**Control** (task `{task}`, {source}, same folds and comparison code): {text}.")
        for anchor, text in cells.items()
    }


def power_sentence(comparison: dict, task: str, sweeps: list[str] | None = None) -> str:
    """What the control's comparisons say about the protocol's power, without claiming more: the
    effects it detected are of the control's size; on the data set an interval excludes only the
    effects beyond its ends; the effects the control did not detect either, with their detectable
    sizes. ``sweeps``: the sweeps the control ran in (the others have no control)."""
    found = [(label, diff) for _, label, _, diff in effects(comparison, task) if diff and diff.get("n")]
    detected = [(label, diff) for label, diff in found if not is_tie(diff)]
    missed = [(label, diff) for label, diff in found if is_tie(diff)]
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
        )
    return text.strip()


def control_section(
    comparison: dict,
    schemas: dict,
    data_task: str = "regression",
    settings: str = "",
    sweep_specs: dict | None = None,
    capped: tuple[int, int] | None = None,
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
    floor_text, _ = best_against_floor(comparison, schema, task)
    blocks = [
        paragraph(
            f"The control task `{task}` is {schema['source']} ({schema['rows']} rows, "
            f"{len(schema['features'])} features): a nonlinear target with noise of known variance, so its "
            f"lowest reachable MSE is known (noise² = {fmt(schema['noise_floor'], 3)}), generated by the prepare "
            "stage from params.yaml (its sha256 is in the provenance). "
            + power_sentence(comparison, task, [n for n, spec in (sweep_specs or {}).items() if task in spec.tasks])
        ),
        table(["question", "difference (positive: the first is worse)", "metric", data_task, task], rows),
        paragraph(f"**Floor.** {floor_text}."),
    ]
    reach = headline_reach(comparison, task, settings, capped)
    if reach:
        blocks.append(paragraph(f"**Default recipe.** {upper_first(reach)}."))
    blocks.append(
        figure(f"history_{task}.png", f"{task}: loss and accuracy per epoch, train/val/test; the noise floor")
    )
    for name, spec in (sweep_specs or {}).items():
        if task in spec.tasks:
            blocks += [figure(file, f"{task}: sweep {name}") for file in spec.figure_files(name, task)]
    return [section("The control task: the same questions where the effects are real", blocks, "control")]
