"""params.yaml, one frozen dataclass per section, validated when loaded.

Every message names the key: ``train.lr must be > 0, got -0.1``; a misspelled key is an error
that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backprop.activations import ACTIVATIONS
from backprop.initializers import INITIALIZERS
from backprop.lab.memory import history_too_large
from backprop.losses import DEFAULT_LOSS, HEADS, TASKS
from backprop.mlp import DEFAULT_TOL, DTYPES


class ConfigError(ValueError):
    """A bad value in params.yaml; the message names the key."""


SHOWN_CHARACTERS = 200  # of a bad value in a message


def shown(value: Any) -> str:
    """``repr(value)`` for a message, cut at ``SHOWN_CHARACTERS``. A value read from YAML can be
    a tree of shared lists (aliases) whose full repr is exponentially long, so it is written
    piece by piece and never whole."""
    text = ""
    for piece in _repr_pieces(value):
        text += piece
        if len(text) > SHOWN_CHARACTERS:
            return text[:SHOWN_CHARACTERS] + "..."
    return text


def _repr_pieces(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        yield "{"
        for position, (key, item) in enumerate(value.items()):
            yield ", " if position else ""
            yield from _repr_pieces(key)
            yield ": "
            yield from _repr_pieces(item)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "[" if isinstance(value, list) else "("
        for position, item in enumerate(value):
            yield ", " if position else ""
            yield from _repr_pieces(item)
        yield "]" if isinstance(value, list) else ("," if len(value) == 1 else "") + ")"
    else:
        yield repr(value)[: SHOWN_CHARACTERS + 1]


def build(cls, section: str, values: Any):
    """``cls(**values)``, with unknown or missing keys reported as ``section.key``."""
    if not isinstance(values, dict):
        raise ConfigError(f"{section} must be a mapping, got {shown(values)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]} is not a known key; valid keys: {sorted(fields)}")
    required = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in values]
    if missing:
        raise ConfigError(f"{section}.{missing[0]} is missing")
    return cls(**values, _section=section)


def _number(section, key, value, *, integer=False, minimum=None, above=None, below=None):
    name = f"{section}.{key}"
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise ConfigError(f"{name} must be {'an integer' if integer else 'a number'}, got {shown(value)}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if above is not None and not value > above:
        raise ConfigError(f"{name} must be > {above}, got {value}")
    if below is not None and not value < below:
        raise ConfigError(f"{name} must be < {below}, got {value}")


def _choice(section, key, value, choices):
    if value not in choices:
        raise ConfigError(f"{section}.{key} must be one of {sorted(choices)}, got {shown(value)}")


# Tables a task can generate instead of reading a file (datasets.GENERATORS makes them).
GENERATED = ("friedman1",)


@dataclass(frozen=True)
class Generated:
    """A table made by the prepare stage from params alone: ``rows`` rows of ``name`` with
    Gaussian noise of standard deviation ``noise`` on the target (noise² is the lowest MSE any
    model can reach on it), drawn with ``seed``."""

    name: str
    rows: int
    noise: float
    seed: int = 0
    _section: str = field(default="data.task.generate", repr=False, compare=False)

    def __post_init__(self):
        _choice(self._section, "name", self.name, GENERATED)
        _number(self._section, "rows", self.rows, integer=True, minimum=10)
        _number(self._section, "noise", self.noise, minimum=0)
        _number(self._section, "seed", self.seed, integer=True, minimum=0)

    @property
    def floor(self) -> float:
        """The noise variance: the expected MSE of the true function itself."""
        return float(self.noise) ** 2


@dataclass(frozen=True)
class TaskData:
    """One task: a table (read from ``path`` or made by ``generate``) and its ``kind``, which
    chooses the output head, the loss, the metrics and the baselines. A task named after a kind
    (regression, classification) is of that kind unless it says otherwise."""

    target: str
    path: str | None = None
    generate: Any = None
    kind: str | None = None
    accuracy: str = "mape"
    scale_target: bool = False
    _section: str = field(default="data.task", repr=False, compare=False)

    ACCURACY_CHOICES = ("mape", "none")

    def __post_init__(self):
        s = self._section
        name = s.rsplit(".", 1)[-1]
        if self.kind is None and name in TASKS:
            object.__setattr__(self, "kind", name)
        _choice(s, "kind", self.kind, TASKS)
        if (self.path is None) == (self.generate is None):
            raise ConfigError(f"{s} needs exactly one of path (a CSV file) and generate (a table made from params)")
        if self.path is not None and (not isinstance(self.path, str) or not self.path):
            raise ConfigError(f"{s}.path must be a non-empty string")
        if self.generate is not None:
            if self.kind != "regression":
                raise ConfigError(f"{s}.generate makes a regression table, but {s}.kind is {self.kind!r}")
            object.__setattr__(self, "generate", build(Generated, f"{s}.generate", self.generate))
        if not isinstance(self.target, str) or not self.target:
            raise ConfigError(f"{s}.target must be a non-empty string")
        _choice(s, "accuracy", self.accuracy, self.ACCURACY_CHOICES)
        if not isinstance(self.scale_target, bool):
            raise ConfigError(f"{s}.scale_target must be true or false, got {shown(self.scale_target)}")
        if self.scale_target and self.kind == "classification":
            raise ConfigError(f"{s}.scale_target must be false: a class label has no scale")

    @property
    def source(self) -> str:
        """Where the table comes from, as the schema and the report name it."""
        if self.generate is None:
            return str(self.path)
        g = self.generate
        return f"generated: {g.name}, {g.rows} rows, noise {g.noise:g}, seed {g.seed}"


# The keys of the data section that are not tasks (the protocol and the leak check).
CV_KEYS = ("folds", "repeats", "val_size", "seed", "allow_leaks")


@dataclass(frozen=True)
class DataConfig:
    """Named tasks, each a table of a kind (every other key of the data section is a task), and
    repeated k-fold cross-validation: ``folds`` folds, ``repeats`` times, each training fold with
    ``val_size`` of it held out for early stopping and choosing; seeded by ``seed``."""

    tasks: dict
    folds: int
    repeats: int
    val_size: float
    seed: int
    allow_leaks: bool = False  # skip the prepare stage's leak checks (datasets.check_leaks)
    _section: str = field(default="data", repr=False, compare=False)

    def __post_init__(self):
        if not self.tasks:
            raise ConfigError("data names no task: add e.g. data.regression: {path: ..., target: ...}")
        for name, values in self.tasks.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ConfigError(f"data.{name} is not a usable task name (letters, digits and _)")
            self.tasks[name] = values if isinstance(values, TaskData) else build(TaskData, f"data.{name}", values)
        _number("data", "folds", self.folds, integer=True, minimum=2)
        _number("data", "repeats", self.repeats, integer=True, minimum=1)
        _number("data", "val_size", self.val_size, above=0, below=1)
        _number("data", "seed", self.seed, integer=True, minimum=0)
        if not isinstance(self.allow_leaks, bool):
            raise ConfigError(f"data.allow_leaks must be true or false, got {shown(self.allow_leaks)}")

    @classmethod
    def from_params(cls, values: Any) -> DataConfig:
        if not isinstance(values, dict):
            raise ConfigError(f"data must be a mapping, got {values!r}")
        tasks = {name: spec for name, spec in values.items() if name not in CV_KEYS}
        for name, spec in tasks.items():
            if not isinstance(spec, dict):
                raise ConfigError(
                    f"data.{name} is not a known key; valid keys: {sorted(CV_KEYS)} or a task (a mapping)"
                )
        return build(cls, "data", {key: values[key] for key in CV_KEYS if key in values} | {"tasks": tasks})

    @property
    def names(self) -> list[str]:
        return list(self.tasks)

    @property
    def kinds(self) -> dict[str, str]:
        """task name -> its kind."""
        return {name: spec.kind for name, spec in self.tasks.items()}

    def task(self, name: str) -> TaskData:
        if name not in self.tasks:
            raise ConfigError(f"data.{name} is not a task; tasks: {sorted(self.tasks)}")
        return self.tasks[name]


def _layer_sizes(section: str, hidden: Any) -> tuple[int, ...]:
    """``hidden`` as a tuple of layer sizes (a lone integer is one layer), each >= 1."""
    sizes = [hidden] if isinstance(hidden, int) and not isinstance(hidden, bool) else hidden
    if not isinstance(sizes, list | tuple) or not sizes:
        raise ConfigError(f"{section}.hidden must be a non-empty list of layer sizes, got {shown(hidden)}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"{section}.hidden sizes must be integers >= 1, got {shown(list(sizes))}")
    return tuple(sizes)


@dataclass(frozen=True)
class TrainConfig:
    hidden: tuple[int, ...]
    activation: str
    lr: float
    epochs: int
    batch_size: int = 0
    init: str = "glorot"
    seed: int = 0
    patience: int = 0
    tol: float = DEFAULT_TOL
    dtype: str = "float64"
    loss: str | None = None
    start: str = "init"
    learned_margin: float = 0.0
    patience_share: float = 0.0
    lr_unit: str = "absolute"
    overrides: dict = field(default_factory=dict)
    _section: str = field(default="train", repr=False, compare=False)

    # absolute: lr is the step; limit: lr is a multiple of the network's own stable limit (2/λ_max
    # at its initial weights on the fold's training rows), measured per fold before training, so
    # that networks of different widths train at the same stability.
    LR_UNITS = ("absolute", "limit")

    # init: the initializer's weights; saturated: the same, with the output bias moved so every
    # training row starts at P(y = 1) < 0.01, confidently wrong on every positive (section 3).
    STARTS = ("init", "saturated")

    def __post_init__(self):
        s = self._section
        object.__setattr__(self, "hidden", _layer_sizes(s, self.hidden))
        _choice(s, "activation", self.activation, ACTIVATIONS)
        _number(s, "lr", self.lr, above=0)
        _number(s, "epochs", self.epochs, integer=True, minimum=1)
        too_large = history_too_large(self.epochs)
        if too_large:
            raise ConfigError(f"{s}.epochs is too large: {too_large}")
        _number(s, "batch_size", self.batch_size, integer=True, minimum=0)
        _choice(s, "init", self.init, INITIALIZERS)
        _number(s, "seed", self.seed, integer=True, minimum=0)
        _number(s, "patience", self.patience, integer=True, minimum=0)
        _number(s, "tol", self.tol, minimum=0, below=1)
        _choice(s, "dtype", self.dtype, DTYPES)
        losses = sorted({loss for _, loss in HEADS})
        if self.loss is not None:
            _choice(s, "loss", self.loss, losses)
        _choice(s, "start", self.start, self.STARTS)
        _number(s, "learned_margin", self.learned_margin, minimum=0, below=1)
        _number(s, "patience_share", self.patience_share, minimum=0, below=1)
        _choice(s, "lr_unit", self.lr_unit, self.LR_UNITS)
        if not isinstance(self.overrides, dict):
            raise ConfigError(f"{s}.overrides must map a task to settings, got {shown(self.overrides)}")
        for task, settings in self.overrides.items():
            if not isinstance(task, str) or not task:
                raise ConfigError(f"{s}.overrides keys must be task names, got {task!r}")
            if not isinstance(settings, dict) or "overrides" in settings:
                raise ConfigError(f"{s}.overrides.{task} must map train keys to values")
            self.for_task(task)  # validates the merged settings, naming the override's keys

    def for_task(self, task: str, kind: str | None = None) -> TrainConfig:
        """The settings one task trains with: train.* with train.overrides.<task> on top; its
        ``kind`` (regression, classification: by default the task's name, as for the two tasks
        named after theirs) checks the loss and the start."""
        kind = kind or task
        settings = self.overrides.get(task, {})
        merged = dataclasses.asdict(self) | dict(settings) | {"overrides": {}}
        merged.pop("_section")
        config = build(TrainConfig, f"{self._section}.overrides.{task}" if settings else self._section, merged)
        if kind not in TASKS:  # a task of unknown kind: checked again where its kind is known
            return config
        if config.loss is not None and (kind, config.loss) not in HEADS:
            valid = sorted(loss for t, loss in HEADS if t == kind)
            raise ConfigError(f"{self._section}.loss for task {task} must be one of {valid}, got {shown(config.loss)}")
        if config.start == "saturated" and kind != "classification":
            raise ConfigError(f"{self._section}.start 'saturated' needs a classifier (a probability), not task {task}")
        return config

    def overridden(self) -> list[str]:
        """A line for each train key that a task's override replaces with another value: said
        on every run, since ``-S train.lr=...`` does not reach a task whose override sets lr."""
        return [
            f"train: {task} trains at {key} {getattr(self.for_task(task), key)!r} "
            f"(train.overrides.{task}.{key}), not train.{key} {getattr(self, key)!r}"
            for task, settings in self.overrides.items()
            for key in settings
            if getattr(self.for_task(task), key) != getattr(self, key)
        ]

    def varied(self, changes: dict, section: str) -> TrainConfig:
        """The same settings with some keys changed, validated under ``section``'s name."""
        merged = dataclasses.asdict(self) | changes
        merged.pop("_section")
        return build(TrainConfig, section, merged)

    @property
    def stopping_patience(self) -> int:
        """The patience early stopping uses: ``patience``, but never fewer than ``patience_share``
        of the epoch budget, so a plateau early in training (where sigmoid networks sit for a
        while before they move) is not taken for the end of learning. 0 stays off."""
        if not self.patience:
            return 0
        return max(self.patience, math.ceil(self.patience_share * self.epochs))

    def loss_for(self, task: str) -> str:
        return self.loss or DEFAULT_LOSS[task]

    def as_params(self) -> dict[str, Any]:
        """Flat, loggable view (what MLflow records as the run's params)."""
        values = dataclasses.asdict(self)
        values.pop("_section")
        values.pop("overrides")
        values["hidden"] = list(self.hidden)
        return values


def _canonical(key: str, value: Any) -> Any:
    """What a grid value means, for finding repeats: 1 and 1.0 are one learning rate, and
    ``hidden: 16`` is ``hidden: [16]``."""
    if key == "hidden" and isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, list | tuple):
        return ("list", tuple(_canonical("", item) for item in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _canonical("", v)) for k, v in value.items())))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ("number", float(value))
    return (type(value).__name__, value)


SWEEPABLE = (
    "lr",
    "hidden",
    "activation",
    "loss",
    "batch_size",
    "init",
    "epochs",
    "patience",
    "patience_share",
    "lr_unit",
    "start",
)


def sweep_kind(grid: dict, fixed: dict, reach: dict, section: str) -> str:
    """What a sweep asks, hence its figure and its comparisons: ``loss_curves`` (a reach level
    over loss × lr), ``capacity`` (hidden, a fixed budget without early stopping), ``lr`` (lr
    alone), ``heatmap`` (lr and one other key)."""
    keys = set(grid)
    if reach and keys == {"loss", "lr"}:
        return "loss_curves"
    if "hidden" in keys and keys <= {"hidden", "lr"} and fixed.get("patience") == 0:
        return "capacity"
    if keys == {"lr"}:
        return "lr"
    if len(keys) == 2 and "lr" in keys:
        return "heatmap"
    raise ConfigError(
        f"{section}: no figure for a grid over {list(grid)} (fixed {fixed}, reach {reach}); a grid is lr alone, "
        "lr and one other key, hidden (and lr) with fixed patience 0, or loss × lr with a reach level"
    )


def _task_names(section: str, tasks: Any) -> None:
    """A non-empty list of task names (keys of the data section, checked where it is loaded)."""
    if not isinstance(tasks, list) or not tasks or not all(isinstance(task, str) and task for task in tasks):
        raise ConfigError(f"{section}.tasks must be a non-empty list of task names (keys of data), got {tasks!r}")


def _grid_values(section: str, key: str, values: Any) -> None:
    """A grid key's values: a non-empty list, no two the same setting."""
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{section}.grid.{key} must be a non-empty list, got {shown(values)}")
    seen: dict = {}
    for value in values:
        same = seen.setdefault(_canonical(key, value), value)
        if same is not value:
            raise ConfigError(
                f"{section}.grid.{key} lists one value twice: {shown(same)} and {shown(value)} "
                f"(the same {key}); every grid value must differ"
            )


@dataclass(frozen=True)
class SweepSpec:
    """One sweep: every combination of the ``grid``'s values (a 1-D sweep is a grid of one key),
    on each of ``tasks``, with ``fixed`` train keys set for the whole sweep."""

    grid: dict
    tasks: list
    fixed: dict = field(default_factory=dict)
    reach: dict = field(default_factory=dict)  # curve -> level: the first epoch each fit reaches it
    _section: str = field(default="sweep.x", repr=False, compare=False)

    def __post_init__(self):
        s = self._section
        if not isinstance(self.grid, dict) or not self.grid:
            raise ConfigError(f"{s}.grid must map train keys to lists of values, got {shown(self.grid)}")
        for key in {**self.grid, **(self.fixed if isinstance(self.fixed, dict) else {})}:
            if key not in SWEEPABLE:
                raise ConfigError(f"{s}: {shown(key)} is not a sweepable train key; valid: {sorted(SWEEPABLE)}")
        for key, values in self.grid.items():
            _grid_values(s, key, values)
        if not isinstance(self.fixed, dict):
            raise ConfigError(f"{s}.fixed must map train keys to values, got {shown(self.fixed)}")
        both = sorted(set(self.grid) & set(self.fixed))
        if both:
            raise ConfigError(f"{s}: {shown(both[0])} is both in grid and fixed")
        _task_names(s, self.tasks)
        if not isinstance(self.reach, dict):
            raise ConfigError(f"{s}.reach must map curves (val_accuracy, ...) to levels, got {shown(self.reach)}")
        for curve, level in self.reach.items():
            _choice(f"{s}.reach", "<curve>", str(curve).split("_", 1)[0], ("train", "val", "test"))
            _number(f"{s}.reach", curve, level)

    @property
    def keys(self) -> list[str]:
        return list(self.grid)

    @property
    def kind(self) -> str:
        return sweep_kind(self.grid, self.fixed, self.reach, self._section)

    def figure_files(self, name: str, task: str) -> list[str]:
        """The PNG files the plot stage draws for sweep ``name`` on ``task`` (report/figures/)."""
        suffix = f"_{task}" if self.kind == "heatmap" or len(self.tasks) > 1 else ""
        if self.kind == "lr":
            return [f"sweep_{name}{suffix}.png", f"sweep_{name}{suffix}_curves.png"]
        if self.kind == "loss_curves" and len(self.reach) > 1:
            return [f"sweep_{name}{suffix}_{curve}.png" for curve in self.reach]
        return [f"sweep_{name}{suffix}.png"]

    def points(self) -> list[dict]:
        """Every combination, the first key varying slowest: [{key: value, ...}, ...]."""
        return [dict(zip(self.grid, values, strict=True)) for values in itertools.product(*self.grid.values())]


@dataclass(frozen=True)
class CurvesConfig:
    """The epochs of each sweep fit kept in its curves.csv: ``points`` on an even grid (the last
    epoch too) and every one of the ``first_epochs``."""

    points: int = 200
    first_epochs: int = 0
    _section: str = field(default="curves", repr=False, compare=False)

    def __post_init__(self):
        _number("curves", "points", self.points, integer=True, minimum=2)
        _number("curves", "first_epochs", self.first_epochs, integer=True, minimum=0)


@dataclass(frozen=True)
class SweepConfig:
    """Every key of the ``sweep`` section names a sweep; DVC's ``foreach`` makes one stage of each."""

    specs: dict = field(default_factory=dict)

    @classmethod
    def from_params(cls, values: dict) -> SweepConfig:
        if not isinstance(values, dict):
            raise ConfigError(f"sweep must be a mapping, got {shown(values)}")
        return cls(specs={name: build(SweepSpec, f"sweep.{name}", spec) for name, spec in values.items()})

    def spec(self, name: str) -> SweepSpec:
        if name not in self.specs:
            raise ConfigError(f"sweep.{name} is not defined; defined sweeps: {sorted(self.specs)}")
        return self.specs[name]

    def check(self, train: TrainConfig, kinds: dict[str, str] | None = None) -> None:
        """Validate every point of every sweep, so a bad last value fails before the first fit;
        with ``kinds`` (task -> kind), every task a sweep lists must be one of them."""
        for name, spec in self.specs.items():
            for task in spec.tasks:
                if kinds is not None:
                    _choice(f"sweep.{name}", "tasks", task, kinds)
                kind = (kinds or {}).get(task)
                self.configs(name, self.inherited(name, train, task, kind), task, kind)
            spec.kind  # noqa: B018  (a grid that no figure or comparison reads fails here, before any fit)

    def inherited(self, name: str, train: TrainConfig, task: str, kind: str | None = None) -> dict[str, Any]:
        """The train settings sweep ``name`` takes from ``train`` on ``task``: train.* with the
        task's overrides, less the keys its grid and ``fixed`` set. All a sweep depends on in the
        train section, so that a change to any other key (``train.lr`` when the grid sets lr)
        re-runs no sweep: the settings stage writes these, ``sweep@<name>`` reads them."""
        spec = self.spec(name)
        base = train.for_task(task, kind)
        if spec.fixed:  # validated under the fixed keys' own name
            base.varied(spec.fixed, f"sweep.{name}.fixed").for_task(task, kind)
        return {key: value for key, value in base.as_params().items() if key not in spec.grid and key not in spec.fixed}

    def configs(self, name: str, inherited: dict, task: str, kind: str | None = None) -> list[tuple[dict, TrainConfig]]:
        """(point, TrainConfig) for every point of sweep ``name`` on ``task``: the ``inherited``
        train settings, the sweep's fixed keys, then the point's values."""
        spec = self.spec(name)
        return [
            (point, build(TrainConfig, f"sweep.{name}.grid", inherited | spec.fixed | point).for_task(task, kind))
            for point in spec.points()
        ]


RUN_KINDS = ("train", "sweep")  # kinds of MLflow run, each with its own curve thinning
MAX_MODEL_NAME = 256  # characters in a registered model's name (MLflow's database column)
MODEL_NAME_FORBIDDEN = ("/", ":", ".", "%", '"', "'")  # what MLflow refuses in a logged model's name


@dataclass(frozen=True)
class TrackingConfig:
    experiment: str
    max_logged_steps: dict = field(default_factory=lambda: {"train": 200, "sweep": 20})
    log_models: bool = True
    champion_branch: str = "main"
    _section: str = field(default="tracking", repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.experiment, str) or not self.experiment:
            raise ConfigError(f"tracking.experiment must be a non-empty string, got {shown(self.experiment)}")
        # It names the MLflow experiment and, with "-<task>" appended, the registered models and
        # logged models, so MLflow's rules for those apply; checked here, before any fit.
        longest = MAX_MODEL_NAME - max(len(f"-{task}") for task in TASKS)
        if len(self.experiment) > longest:
            raise ConfigError(
                f"tracking.experiment is {len(self.experiment)} characters long, at most {longest} fit: "
                f"MLflow names the registered models <experiment>-<task> in at most {MAX_MODEL_NAME}"
            )
        bad = sorted({c for c in self.experiment if c in MODEL_NAME_FORBIDDEN or not c.isprintable()})
        if bad or self.experiment != self.experiment.strip():
            raise ConfigError(
                f"tracking.experiment {shown(self.experiment)} cannot name an MLflow model: "
                f"{'it contains ' + shown(''.join(bad)) if bad else 'it starts or ends with a space'} "
                f"(not allowed: {' '.join(MODEL_NAME_FORBIDDEN)}); use letters, digits, '-' and '_'"
            )
        steps = self.max_logged_steps
        if not isinstance(steps, dict) or sorted(steps) != sorted(RUN_KINDS):
            raise ConfigError(
                f"tracking.max_logged_steps must map each kind of run {list(RUN_KINDS)} to a number of "
                f"steps, got {shown(steps)}"
            )
        for kind, value in steps.items():
            _number("tracking.max_logged_steps", kind, value, integer=True, minimum=2)
        if not isinstance(self.log_models, bool):
            raise ConfigError(f"tracking.log_models must be true or false, got {shown(self.log_models)}")
        if not isinstance(self.champion_branch, str) or not self.champion_branch:
            raise ConfigError(f"tracking.champion_branch must be a branch name, got {shown(self.champion_branch)}")


# The top-level sections of params.yaml; a branch that adds a section adds its name here.
SECTIONS = ("data", "train", "tracking", "sweep", "curves")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a repeated key: plain YAML keeps the last one silently, so a
    second ``lr:`` further down would override the first without anyone noticing."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                mark = key_node.start_mark
                raise ConfigError(
                    f"{mark.name}: line {mark.line + 1}, column {mark.column + 1}: key {shown(key)} "
                    f"repeats the one on line {seen[key] + 1}"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping)


# Values a params file may hold once its aliases are expanded. params.yaml has a few hundred; a
# YAML "alias bomb" (a list of 9 aliases to a list of 9 aliases to ...) is a few KB on disk and
# billions of values expanded, which anything that walks the values (DVC comparing params, a
# message showing one) never finishes.
MAX_EXPANDED_VALUES = 100_000


def check_expansion(node: yaml.Node | None, path: str | Path) -> None:
    """Refuse a YAML document whose aliases expand beyond ``MAX_EXPANDED_VALUES`` values (or refer
    to themselves), naming the key, before anything expands it. Sizes are counted once per node,
    so a bomb costs as many steps as it has nodes on disk."""
    if node is None:
        return
    sizes: dict[int, int] = {}
    keys: list[str] = []
    if _expanded_size(node, sizes, set(), path) <= MAX_EXPANDED_VALUES:
        return
    while isinstance(node, yaml.MappingNode):  # down to the key that holds the expansion
        large = [(k, v) for k, v in node.value if sizes[id(k)] + sizes[id(v)] > MAX_EXPANDED_VALUES]
        if not large:
            break
        key, node = large[0]
        keys.append(str(key.value)[:SHOWN_CHARACTERS] if isinstance(key, yaml.ScalarNode) else "<key>")
    mark = node.start_mark
    where = f"{'.'.join(keys)} (line {mark.line + 1})" if keys else f"line {mark.line + 1}"
    raise ConfigError(
        f"{path}: {where}: YAML aliases expand to more than {MAX_EXPANDED_VALUES} values "
        f"(an alias bomb?); params are refused before anything expands them"
    )


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int], path) -> int:
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:
        mark = node.start_mark
        raise ConfigError(f"{path}: line {mark.line + 1}: a YAML alias refers to a node that contains it")
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    size = 1
    for child in children:
        size += _expanded_size(child, sizes, open_nodes, path)
        size = min(size, MAX_EXPANDED_VALUES + 1)  # past the limit, the exact count is not needed
    open_nodes.discard(id(node))
    sizes[id(node)] = size
    return size


def read_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        with open(path) as handle:  # the loader's marks, hence its errors, then name the file
            loader = _UniqueKeyLoader(handle)
            try:
                node = loader.get_single_node()  # the document's nodes, each alias not yet expanded
                check_expansion(node, path)
                params = None if node is None else loader.construct_document(node)
            finally:
                loader.dispose()
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be params") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}not valid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must hold a mapping of sections")
    unknown = sorted(set(params) - set(SECTIONS), key=str)
    if unknown:
        raise ConfigError(f"{path}: {shown(unknown[0])} is not a known section; valid sections: {sorted(SECTIONS)}")
    return params


def section(params: dict, name: str) -> Any:
    if name not in params:
        raise ConfigError(f"params.yaml has no section {shown(name)}; sections: {sorted(params)}")
    return params[name]


def load_data(params: dict) -> DataConfig:
    return DataConfig.from_params(section(params, "data"))


def load_kinds(params: dict) -> dict[str, str]:
    """Every task's name -> its kind (regression, classification), in params order."""
    return load_data(params).kinds


def load_train(params: dict) -> TrainConfig:
    train = build(TrainConfig, "train", section(params, "train"))
    if "data" in params:  # an override names a task, and checks against its kind
        kinds = load_kinds(params)
        for task in train.overrides:
            _choice("train.overrides", "<task>", task, kinds)
            train.for_task(task, kinds[task])
    return train


def load_sweep(params: dict) -> SweepConfig:
    sweep = SweepConfig.from_params(section(params, "sweep"))
    sweep.check(load_train(params), load_kinds(params) if "data" in params else None)
    return sweep


def load_curves(params: dict) -> CurvesConfig:
    return build(CurvesConfig, "curves", section(params, "curves"))


def load_tracking(params: dict) -> TrackingConfig:
    return build(TrackingConfig, "tracking", section(params, "tracking"))
