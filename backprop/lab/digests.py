"""What a stage depends on, as one digest: its declared deps' content and params' values.

Every run a stage creates carries the digest as a tag: versioned files find runs by it and by the
run's name, never by an id that changes with every run. Equal digests mean the same code, params
and input data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from backprop.lab.outputs import STAGING_DIR

DIGEST_TAG = "stage_digest"
DIGEST_LENGTH = 16  # hex digits shown in tags and filter strings
# What .dvcignore leaves out of a dependency's hash, so the digests skip it too.
NOT_HASHED = frozenset({"__pycache__", STAGING_DIR})


def _hash_files(digest, name: str, path: Path) -> None:
    """Each file under ``path`` (or ``path`` itself) as its name under ``name`` and its content
    hash, in sorted order; what .dvcignore skips is skipped. A missing path counts as empty."""
    if path.is_file():
        files = [(name, path)]
    elif path.is_dir():
        files = sorted(
            (f"{name}/{p.relative_to(path).as_posix()}", p)
            for p in path.rglob("*")
            if p.is_file() and not NOT_HASHED & set(p.relative_to(path).parts)
        )
    else:
        files = []
    for label, file in files:
        digest.update(label.encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())


def content_digest(paths: Mapping[str, Path] | list[str], values: Mapping | None = None) -> str:
    """sha256 of the files under ``paths`` (names relative to the working directory, as DVC's
    are, or a mapping of name to path) and of ``values`` as sorted JSON."""
    named = paths if isinstance(paths, Mapping) else {name: Path(name) for name in paths}
    digest = hashlib.sha256()
    for name in sorted(named):
        _hash_files(digest, name, Path(named[name]))
    digest.update(json.dumps(values or {}, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _declared_dependencies(stage: str) -> tuple[dict[str, Path], dict]:
    """(dependency paths, params values) that dvc.yaml declares for ``stage``, as DVC resolves
    them. Outside DVC (a stage run by hand or by a test): the package, the stage's module and
    the whole params.yaml."""
    if os.environ.get("DVC_STAGE") == stage and Path("dvc.yaml").is_file():
        from dvc.dependency.param import ParamsDependency
        from dvc.repo import Repo

        with Repo(os.getcwd()) as repo:
            (found,) = repo.stage.collect(stage)
            paths, params = {}, {}
            for dependency in found.deps:
                if isinstance(dependency, ParamsDependency):
                    params[dependency.def_path] = dependency.read_params(flatten=False)
                else:
                    paths[dependency.def_path] = Path(dependency.fs_path)
        return paths, params
    import yaml

    package = Path(__file__).resolve().parents[1]
    module = package.parent / "stages" / f"{stage.split('@')[0]}.py"
    params = yaml.safe_load(Path("params.yaml").read_text()) if Path("params.yaml").is_file() else {}
    return {"backprop": package, f"stages/{module.name}": module}, {"params.yaml": params}


@functools.cache
def stage_digest(stage: str) -> str:
    """The digest of what ``stage`` depends on: its name, the content of its declared deps and
    the values of its declared params. It changes exactly when DVC would run the stage again, so
    it is a pure function of what the stage's outputs are a function of."""
    paths, params = _declared_dependencies(stage)
    return content_digest(paths, {"stage": stage, "params": params})[:DIGEST_LENGTH]
