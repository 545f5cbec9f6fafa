"""The layer order: engine → pure lab parts → tracking and execution → stages, and no cycle.

A module imports only from its own layer or the ones below, at any depth (a lazy import inside a
function counts), and no chain of imports comes back to where it started. The layers are named
here, once, and the README's tour names the same modules in the same order.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top. A module not listed fails `test_every_module_has_a_layer`: place it on purpose.
LAYERS = {
    "engine": [f"backprop/{name}" for name in ["__init__", "activations", "initializers", "losses", "metrics", "mlp"]],
    "pure lab parts": [
        f"backprop/lab/{name}"
        for name in [
            "__init__",
            *(f"answers/{path.stem}" for path in sorted((ROOT / "backprop/lab/answers").glob("*.py"))),
            "baselines",
            "blocks",
            "comparisons",
            "config",
            "control",
            "curvature",
            "datasets",
            "figures",
            "jobs",
            "mechanisms",
            "memory",
            "protocol",
            "report",
            "run_metrics",
            "sweeps",
            "thinning",
            "training",
            "verify",
        ]
    ],
    "tracking and execution": [
        f"backprop/lab/{name}"
        for name in [
            "processes",
            "outputs",
            "counters",
            "datafiles",
            "store",
            "failures",
            "digests",
            "provenance",
            "executor",
            "pyfunc",
            "pyfunc_model",
            "tracking",
            "stage_run",
            "preflight",
            "plots_page",
        ]
    ],
    "stages": [f"stages/{path.stem}" for path in sorted((ROOT / "stages").glob("*.py"))],
}
RANK = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}


def module_file(dotted: str, root: Path) -> str | None:
    """``backprop.lab.store`` → ``backprop/lab/store`` when that file (or package) exists."""
    path = root.joinpath(*dotted.split("."))
    if path.with_suffix(".py").is_file():
        return path.relative_to(root).as_posix()
    if (path / "__init__.py").is_file():
        return (path / "__init__").relative_to(root).as_posix()
    return None


def imports(path: Path, root: Path) -> set[str]:
    """The project modules ``path`` imports, anywhere in it; ``from package import module`` names
    the module, not the package's ``__init__``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {module_file(alias.name, root) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                found.add(module_file(f"{node.module}.{alias.name}", root) or module_file(node.module, root))
    return found - {None}  # type: ignore[arg-type]


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = [*sorted((root / "backprop").rglob("*.py")), *sorted((root / "stages").glob("*.py"))]
    return {path.relative_to(root).with_suffix("").as_posix(): imports(path, root) for path in files}


def back_edges(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a module from a layer above the importer's, as a line naming both."""
    names = list(LAYERS)
    return [
        f"{importer} ({names[RANK[importer]]}) imports {imported} ({names[RANK[imported]]})"
        for importer, targets in sorted(graph.items())
        for imported in sorted(targets)
        if importer in RANK and imported in RANK and RANK[imported] > RANK[importer]
    ]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected set of modules (Tarjan), or none."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            component.append(node)
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    modules = set(import_graph())
    assert sorted(modules - RANK.keys()) == []
    assert sorted(RANK.keys() - modules) == []  # a layer that names a module no longer there
    assert len(RANK) == sum(len(layer) for layer in LAYERS.values())  # and each in one layer only


def test_imports_follow_the_layer_order():
    assert back_edges(import_graph()) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def tour_mark(module: str) -> str:
    """How the tour names a module: ``backprop/lab/store`` as `store.py`, a module of the package
    ``backprop/lab/answers`` as `answers/`."""
    path = Path(module)
    return f"`{path.parent.name}/`" if path.parent != Path("backprop/lab") else f"`{path.name}.py`"


def test_the_readme_tour_states_the_same_order():
    """The tour's first paragraph names the engine, every module of the two middle layers (a
    package's modules by the package) and the stages, each layer after the one below it."""
    tour = (ROOT / "README.md").read_text().split("## A short tour\n\n", 1)[1].split("\n\n", 1)[0]
    middle = list(LAYERS.values())[1:-1]
    named = [
        list(dict.fromkeys(tour_mark(module) for module in layer if module != "backprop/lab/__init__"))
        for layer in middle
    ]
    marks = [["`backprop/`"], *named, ["`stages/`"]]
    assert [mark for layer in marks for mark in layer if mark not in tour] == []
    places = [[tour.index(mark) for mark in layer] for layer in marks]
    assert all(max(below) < min(above) for below, above in itertools.pairwise(places))


@pytest.fixture
def crafted(tmp_path):
    """A copy of the project's modules where the engine imports the tracking module, and the
    tracking module's store imports the tracking module back."""
    for path in [*(ROOT / "backprop").rglob("*.py"), *(ROOT / "stages").glob("*.py")]:
        copy = tmp_path / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(path.read_text())
    mlp, store = tmp_path / "backprop" / "mlp.py", tmp_path / "backprop" / "lab" / "store.py"
    mlp.write_text(mlp.read_text() + "\n\ndef _late():\n    from backprop.lab.tracking import Tracker\n")
    store.write_text(store.read_text() + "\n\ndef _late():\n    from backprop.lab import tracking\n")
    return tmp_path


def test_the_checks_catch_a_back_edge_and_a_cycle(crafted):
    graph = import_graph(crafted)
    assert "backprop/mlp (engine) imports backprop/lab/tracking (tracking and execution)" in back_edges(graph)
    assert any({"backprop/lab/store", "backprop/lab/tracking"} <= set(cycle) for cycle in cycles(graph))
