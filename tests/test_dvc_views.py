"""What DVC sees: each stage's declared code and params, the sweeps named in params.yaml only,
no silent override, a readable `dvc exp show`, offline plots, and `make verify`'s logic."""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TINY, run

from backprop.lab.config import ConfigError, SweepConfig, TrainConfig, load_sweep, load_train, read_params
from backprop.lab.pyfunc import ENTRY_POINT, imported_files
from backprop.lab.verify import verify

FITTING = ("train", "sweep", "baselines")
REPORT_CODE = (
    "backprop/lab/report.py",
    "backprop/lab/figures.py",
    *sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "backprop/lab/answers").glob("*.py")),
)
# Files a module reads by path rather than imports.
READS = {
    "backprop/lab/pyfunc.py": ["backprop/lab/pyfunc_model.py"],
    "backprop/lab/report.py": ["backprop/lab/templates"],
}


def import_closure(start: str) -> set[str]:
    """The project files ``start`` imports (the model's walk, over backprop and stages), and the
    files they read by path."""
    files = {path.relative_to(ROOT).as_posix() for path in imported_files(ROOT / start, ("backprop", "stages"))}
    return files | {extra for file in files for extra in READS.get(file, [])}


def dvc_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def code_deps(definition: dict) -> set[str]:
    body = definition.get("do", definition)
    return {dep for dep in body["deps"] if dep.startswith(("backprop", "stages/"))}


@pytest.mark.parametrize("name", sorted(dvc_stages()))
def test_each_stage_lists_exactly_the_code_it_imports(name):
    assert code_deps(dvc_stages()[name]) == import_closure(f"stages/{name}.py")


def test_fitting_stages_do_not_import_report_or_figure_code():
    for name in FITTING:
        assert not import_closure(f"stages/{name}.py") & set(REPORT_CODE), name


def test_the_sweeps_are_named_in_params_only():
    text = (ROOT / "dvc.yaml").read_text()
    sweeps = load_sweep(read_params(ROOT / "params.yaml")).specs
    assert dvc_stages()["sweep"]["foreach"] == "${sweep}"
    for name in sweeps:
        assert not re.search(rf"stages\.\w+ .*\b{name}\b|--names|sweep_{name}\b", text), name


# ---- an experiment re-runs what it changes ---------------------------------------------------


def test_a_sweep_takes_no_train_key_that_its_grid_or_fixed_sets():
    params = read_params(ROOT / "params.yaml")
    train, sweep = load_train(params), load_sweep(params)
    for name, spec in sweep.specs.items():
        for task in spec.tasks:
            inherited = sweep.inherited(name, train, task)
            assert not set(inherited) & (set(spec.grid) | set(spec.fixed)), name
            assert set(inherited) | set(spec.grid) | set(spec.fixed) == set(train.as_params()), name


def test_changing_train_lr_changes_no_sweeps_settings_but_train_hidden_does():
    """`dvc exp run -S train.lr=0.03` re-runs the settings stage, whose files it leaves byte for
    byte the same: DVC then re-runs no sweep (every grid sets lr)."""
    params = read_params(ROOT / "params.yaml")
    train, sweep = load_train(params), load_sweep(params)

    def settings(changes):
        changed = train.varied(changes, "train")
        return {name: {t: sweep.inherited(name, changed, t) for t in s.tasks} for name, s in sweep.specs.items()}

    assert settings({}) == settings({"lr": 0.03})
    moved = {name for name, values in settings({"activation": "tanh"}).items() if values != settings({})[name]}
    assert moved == {name for name, spec in sweep.specs.items() if "activation" not in spec.grid}


def test_sweep_configs_are_the_train_settings_with_fixed_and_point_on_top():
    sweep = SweepConfig.from_params({"g": {"grid": {"lr": [0.5]}, "fixed": {"epochs": 7}, "tasks": ["classification"]}})
    train = TrainConfig(hidden=(4,), activation="tanh", lr=0.01, epochs=100, overrides={"classification": {"lr": 0.3}})
    [(point, config)] = sweep.configs("g", sweep.inherited("g", train, "classification"), "classification")
    assert point == {"lr": 0.5} and (config.lr, config.epochs, config.hidden, config.activation) == (
        0.5,
        7,
        (4,),
        "tanh",
    )


def test_a_sweeps_kind_is_a_property_of_its_spec():
    sweep = load_sweep(read_params(ROOT / "params.yaml"))
    assert {name: spec.kind for name, spec in sweep.specs.items()} == {
        "lr": "lr",
        "activation": "heatmap",
        "hidden": "heatmap",
        "capacity": "capacity",
        "loss": "loss_curves",
        "saturated": "loss_curves",
    }
    odd = SweepConfig.from_params({"odd": {"grid": {"hidden": [2], "activation": ["tanh"]}, "tasks": ["regression"]}})
    with pytest.raises(ConfigError, match=r"^sweep\.odd: no figure for a grid over \['hidden', 'activation'\]"):
        odd.check(TrainConfig(hidden=(4,), activation="tanh", lr=0.1, epochs=10))


# ---- no silent override ------------------------------------------------------------------------


def test_a_per_task_override_is_said_whenever_it_replaces_a_value():
    train = TrainConfig(hidden=(4,), activation="tanh", lr=0.03, epochs=10, overrides={"classification": {"lr": 0.3}})
    assert train.overridden() == [
        "train: classification trains at lr 0.3 (train.overrides.classification.lr), not train.lr 0.03"
    ]
    same = TrainConfig(hidden=(4,), activation="tanh", lr=0.3, epochs=10, overrides={"classification": {"lr": 0.3}})
    assert same.overridden() == []


# ---- make verify --------------------------------------------------------------------------------


def committed_outputs() -> dict[str, str]:
    """The committed fits and conclusions (HEAD: a repro running in the workspace cannot change them)."""
    listing = run(["git", "ls-tree", "-r", "--name-only", "HEAD", "--", "metrics", "sweeps"], ROOT).stdout.split()
    wanted = [p for p in listing if p.endswith((".json", "/results.csv", "/summary.csv"))]
    return {path: run(["git", "show", f"HEAD:{path}"], ROOT).stdout for path in wanted}


def test_verify_passes_on_unchanged_outputs():
    files = committed_outputs()
    result = verify(files, dict(files))
    assert result.passed and not result.differing and result.identical > 400 and result.conclusions > 100


def test_verify_fails_on_a_changed_choice_and_names_it():
    files = committed_outputs()
    comparison = json.loads(files["metrics/comparison.json"])
    comparison["regression"]["sweeps"]["lr"]["best"]["lr"] = 123.0  # no grid has it
    fresh = files | {"metrics/comparison.json": json.dumps(comparison)}
    result = verify(files, fresh)
    assert not result.passed
    assert any(line.startswith("comparison.regression.sweeps.lr.best: ") for line in result.changed)


def test_verify_fails_on_a_changed_outcome_count_and_explains_the_fit():
    files = committed_outputs()
    results = files["sweeps/lr/results.csv"].splitlines()
    row = next(i for i, line in enumerate(results) if line.startswith("regression,0.3,0,0,"))
    cells = results[row].split(",")
    cells[results[0].split(",").index("outcome")] = "oscillating"
    fresh_results = "\n".join([*results[:row], ",".join(cells), *results[row + 1 :]]) + "\n"
    summary = files["sweeps/lr/summary.csv"].replace("regression,0.3,5,5,0,0,0,", "regression,0.3,5,4,0,1,0,")
    fresh = files | {"sweeps/lr/results.csv": fresh_results, "sweeps/lr/summary.csv": summary}
    result = verify(files, fresh)
    assert not result.passed and [
        c for c in result.changed if c.startswith("sweeps/lr/summary.csv task=regression lr=0.3")
    ]
    assert len(result.differing) == 1 and "past the lr limit" in result.differing[0]


def test_verify_lists_a_moved_fit_without_failing_when_no_conclusion_moves():
    files = committed_outputs()
    scores = json.loads(files["metrics/regression-scores.json"])
    scores["folds"][2]["test_mse"] *= 1.000001
    result = verify(files, files | {"metrics/regression-scores.json": json.dumps(scores)})
    assert result.passed and len(result.differing) == 1 and result.differing[0].endswith(": unexplained")


# ---- end to end, in a copy of the tiny pipeline ------------------------------------------------------


@pytest.fixture
def views_repo(tiny_repo, tmp_path):
    """A copy of the tiny pipeline after its repro, with a store of its own."""
    dest = tmp_path / "repo"
    shutil.copytree(tiny_repo, dest, symlinks=True, ignore=shutil.ignore_patterns("mlflow.db*", "mlartifacts"))
    return dest


def changed_stages(repo: Path) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], repo).stdout))


@pytest.mark.e2e
def test_an_lr_experiment_reruns_no_sweep_and_its_table_fits_120_columns(views_repo):
    result = run(["dvc", "exp", "run", "-S", "train.lr=0.03", "--name", "lr-003"], views_repo)
    ran = set(re.findall(r"Running stage '([^']+)'", result.stdout))
    reading_lr = {f"sweep@{name}" for name, spec in TINY["sweep"].items() if "lr" not in spec["grid"]}
    assert reading_lr == {"sweep@capacity"}  # the tiny capacity sweep trains at train.lr
    assert ran == {"settings", "train", "baselines", "compare", "plot", "report"} | reading_lr, result.stdout
    assert "classification trains at lr" in result.stdout  # the override that lr does not reach is said
    makefile = (ROOT / "Makefile").read_text()
    keep, drop = (
        re.search(rf"^{name} := (.*)$", makefile, re.M).group(1).replace("$$", "$")
        for name in ("EXPS_KEEP", "EXPS_DROP")
    )
    table = run(
        ["dvc", "exp", "show", "--no-pager", "--only-changed", "--keep", keep, "--drop", drop],
        views_repo,
        COLUMNS="120",
    ).stdout
    assert "lr-003" in table and "train.lr" in table and "test_mse" in table and "…" not in table
    assert "classification.lr" in table  # the lr classification trained at, beside train.lr
    assert max(map(len, table.splitlines())) <= 120
    assert not re.search(r"folds|learned_folds|stages/|backprop/", table)


@pytest.mark.e2e
def test_editing_report_or_figure_code_reruns_no_fit(views_repo):
    for path, stage in (("backprop/lab/answers/q21.py", "report"), ("backprop/lab/figures.py", "plot")):
        with open(views_repo / path, "a") as handle:
            handle.write("\n# an edit\n")
        assert changed_stages(views_repo) == {stage}
        run(["git", "checkout", "--", path], views_repo)


@pytest.mark.e2e
def test_a_seventh_sweep_needs_params_yaml_only(views_repo):
    params = yaml.safe_load((views_repo / "params.yaml").read_text())
    params["sweep"]["batch"] = {"grid": {"batch_size": [0, 32], "lr": [0.1]}, "tasks": ["regression"]}
    (views_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert {"settings", "sweep@batch", "compare", "plot", "report"} <= changed_stages(views_repo)
    result = run(["dvc", "repro"], views_repo)
    ran = set(re.findall(r"Running stage '([^']+)'", result.stdout))
    assert ran == {"settings", "sweep@batch", "compare", "plot", "report"}, result.stdout
    comparison = json.loads((views_repo / "metrics" / "comparison.json").read_text())
    assert comparison["regression"]["sweeps"]["batch"]["best"]["batch_size"] in (0, 32)
    assert (views_repo / "report" / "figures" / "sweep_batch_regression.png").exists()
    edited = run(["git", "status", "--porcelain", "--", "dvc.yaml", "stages", "backprop"], views_repo).stdout
    assert edited == ""


def test_the_committed_offline_page_is_the_one_plots_page_writes():
    """.dvc/config names it for every `dvc plots show`/`diff`; a vl-convert-python upgrade makes
    it stale (`make plots-page` rewrites it)."""
    from backprop.lab.plots_page import page

    configured = re.search(r"html_template = (.*)", (ROOT / ".dvc" / "config").read_text()).group(1)
    committed = (ROOT / ".dvc" / configured).read_text()
    assert committed == page()
    assert "{plot_divs}" in committed and not re.search(r"<script[^>]*\ssrc=", committed)


@pytest.mark.e2e
def test_dvc_plots_show_loads_no_remote_script(views_repo):
    run(["dvc", "plots", "show", "-o", "out"], views_repo)  # a clone as it is: nothing generated
    page = (views_repo / "out" / "index.html").read_text()
    assert not re.search(r"<script[^>]*\ssrc=", page) and "cdn" not in page.lower()
    assert "vegaEmbed" in page and '"title": "MSE (log scale)"' in page
    assert '"color": {"field": "field"' in page  # train, val and test apart by colour
    run(["dvc", "plots", "diff", "HEAD", "-o", "diff"], views_repo)  # the committed curves against these
    page = (views_repo / "diff" / "index.html").read_text()
    assert not re.search(r"<script[^>]*\ssrc=", page) and '"strokeDash": {"field": "rev"' in page
    assert '"HEAD"' in page and '"workspace"' in page


# ---- make ---------------------------------------------------------------------------------------------


def test_make_ui_takes_a_port_and_repro_ends_with_the_next_commands():
    ui = run(["make", "-n", "ui", "PORT=5123"], ROOT).stdout
    assert re.search(r"mlflow ui .*--host 127\.0\.0\.1 --port 5123$", ui, re.M)
    repro = run(["make", "-n", "repro"], ROOT).stdout.splitlines()
    after = repro[next(i for i, line in enumerate(repro) if line.strip() == "dvc repro") :]
    said = "\n".join(after)
    assert "source .venv/bin/activate" in said and "dvc exp run -S train.lr=0.03" in said and "make exps" in said


def test_the_model_folder_bundles_only_code_the_train_stage_declares():
    """A model folder is a train output: the code it bundles must be among train's deps, or an edit
    to, say, the report's code would change models/ without DVC running train again."""
    bundled = {path.relative_to(ROOT).as_posix() for path in imported_files(ENTRY_POINT)}
    assert "backprop/lab/pyfunc_model.py" in bundled and not bundled & set(REPORT_CODE)
    assert bundled <= code_deps(dvc_stages()["train"])


@pytest.mark.e2e
def test_a_saved_model_folder_holds_exactly_those_files(tiny_repo):
    code = tiny_repo / "models" / "regression" / "code"
    saved = {path.relative_to(code).as_posix() for path in code.rglob("*.py")}
    assert saved == {path.relative_to(ROOT).as_posix() for path in imported_files(ENTRY_POINT)}
