"""The trained network as an MLflow pyfunc model: raw feature columns in, predictions out.

``save`` writes a self-contained model directory (models-from-code, weights and scaler as
artifacts) that ``mlflow.pyfunc.load_model(<dir>)`` loads with no tracking store; the tracking
module logs the same directory's content as a LoggedModel.
"""

from __future__ import annotations

import ast
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from backprop.lab.store import quiet_mlflow
from backprop.mlp import MLP

quiet_mlflow()

PACKAGE = Path(__file__).resolve().parents[1]
ENTRY_POINT = PACKAGE / "lab" / "pyfunc_model.py"
EXAMPLE_ROWS = 5


def imported_files(start: Path, packages: tuple[str, ...] = (PACKAGE.name,)) -> list[Path]:
    """The files of ``packages`` (beside this package) that ``start`` imports, directly or not, at
    any depth (a lazy import inside a function counts): what the model needs to load and predict,
    and what a stage must list under its deps."""
    root, seen, todo = PACKAGE.parent, set(), [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            for name in (n for n in names if n.split(".")[0] in packages):
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):
                    module = root.joinpath(*parts[:depth])
                    todo += [f for f in (module / "__init__.py", module.with_suffix(".py")) if f.is_file()]
    return sorted(seen)


def _model_code(scratch: Path) -> Path:
    """The package as the model bundles it: only the files the entry point imports, in the
    package's layout, so the model folder changes only with code the train stage declares."""
    for path in imported_files(ENTRY_POINT):
        copy = scratch / path.relative_to(PACKAGE.parent)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
    return scratch / PACKAGE.name


def requirements() -> list[str]:
    # Stated, not inferred: inference imports the model in a subprocess and is slow.
    return [f"{name}=={version(name)}" for name in ("numpy", "pandas", "mlflow")]


def signature(features: list[str]) -> ModelSignature:
    # MLflow's schema check refuses int64 for a `double` column before the model's code runs
    # ("Can not safely convert int64 to float64"), and pd.read_csv gives int64 for columns such
    # as age. The columns are therefore declared `any`, and BackpropModel.predict converts them
    # to float itself, refusing what is not numeric.
    return ModelSignature(
        inputs=Schema([ColSpec(AnyType(), name) for name in features]),
        outputs=Schema([ColSpec("double")]),
    )


def raw_rows(prepared, rows: int = EXAMPLE_ROWS) -> pd.DataFrame:
    """The first training rows in the units of the CSV file. Standardising and back leaves
    float noise (2 → 2.0000000000000004); the raw tables have at most 4 decimals."""
    X = prepared.X["train"][:rows] * prepared.std + prepared.mean
    return pd.DataFrame(np.round(X, 6), columns=prepared.features)


def model_spec(model_dir: str | Path) -> dict:
    """What mlflow.pyfunc.save_model/log_model need to (re)build the model saved in ``model_dir``."""
    model_dir = Path(model_dir)
    saved = mlflow.models.Model.load(model_dir)
    return {
        "python_model": str(ENTRY_POINT),
        "artifacts": {name: str(model_dir / "artifacts" / f"{name}.npz") for name in ("weights", "scaler")},
        "code_paths": [str(model_dir / "code" / PACKAGE.name)],  # the files the folder bundles
        "signature": saved.signature,
        "input_example": saved.load_input_example(str(model_dir)),
        "pip_requirements": requirements(),
    }


def save(path: str | Path, network: MLP, prepared) -> None:
    """The network and the training split's scaler as an MLflow model directory at ``path``."""
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)  # save_model refuses an existing folder
    with tempfile.TemporaryDirectory() as scratch:
        weights, scaler = Path(scratch) / "weights.npz", Path(scratch) / "scaler.npz"
        network.save(weights)
        np.savez(scaler, features=np.array(prepared.features), mean=prepared.mean, std=prepared.std)
        mlflow.pyfunc.save_model(
            path=path,
            python_model=str(ENTRY_POINT),
            artifacts={"weights": str(weights), "scaler": str(scaler)},
            code_paths=[str(_model_code(Path(scratch) / "code"))],
            signature=signature(prepared.features),
            input_example=raw_rows(prepared),
            pip_requirements=requirements(),
        )
    for cache in path.rglob("__pycache__"):  # compiled files of this machine's interpreter
        shutil.rmtree(cache)
    # MLmodel records where the code and artifacts were copied from: paths of this machine (and
    # a deleted scratch folder) in a versioned file. Loading uses only the copies inside `path`
    # (the code file by its base name), so they are recorded relative to it.
    mlmodel = mlflow.models.Model.load(path)
    flavor = mlmodel.flavors["python_function"]
    flavor["model_code_path"] = ENTRY_POINT.name
    for artifact in flavor["artifacts"].values():
        artifact["uri"] = artifact["path"]
    write_mlmodel(mlmodel, path / "MLmodel")


# MLmodel fields that differ on every save of the same model: a random id, the time, and the ids
# of a run or LoggedModel (none for a folder saved by itself). MLflow loads and serves a folder
# without them; the model logged to MLflow keeps its own.
VOLATILE_FIELDS = ("model_uuid", "utc_time_created", "run_id", "model_id", "artifact_path")


def write_mlmodel(mlmodel: mlflow.models.Model, path: str | Path) -> None:
    """``mlmodel`` as YAML without its volatile fields: the same network gives the same file."""
    import yaml

    fields = {key: value for key, value in mlmodel.to_dict().items() if key not in VOLATILE_FIELDS}
    Path(path).write_text(yaml.safe_dump(fields, default_flow_style=False))


class BackpropModel(mlflow.pyfunc.PythonModel):
    """Standardises with the training split's statistics, then runs the network."""

    def load_context(self, context) -> None:
        self.network = MLP.load(context.artifacts["weights"])
        with np.load(context.artifacts["scaler"], allow_pickle=False) as scaler:
            self.features = [str(name) for name in scaler["features"]]
            self.mean, self.std = scaler["mean"], scaler["std"]

    def predict(self, context, model_input: pd.DataFrame, params=None):
        missing = [name for name in self.features if name not in model_input.columns]
        if missing:
            raise ValueError(f"input is missing feature column(s) {missing}")
        columns = model_input[self.features]
        not_numeric = [name for name in self.features if not pd.api.types.is_numeric_dtype(columns[name])]
        if not_numeric:
            raise ValueError(f"feature column(s) {not_numeric} must be numeric")
        X = columns.to_numpy(dtype=float)
        return pd.Series(self.network.predict((X - self.mean) / self.std), name="prediction")
