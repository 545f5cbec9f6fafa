"""Where a run comes from: the git commit and branch, the DVC experiment and its baseline, the
pipeline a stage belongs to, the params an experiment changed, and what a registered model
version is described and tagged with.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from backprop.lab.blocks import LABELS
from backprop.lab.digests import DIGEST_LENGTH, content_digest
from backprop.lab.run_metrics import interval_tags


def current_branch(cwd: str | Path = ".") -> str | None:
    try:
        return subprocess.run(
            ["git", "symbolic-ref", "--quiet", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # no git, or a detached HEAD
        return None


def crowns_champion(branch: str) -> bool:
    """A repro of ``branch`` (the project's main line) in the workspace, not a DVC experiment:
    the one kind of run whose model becomes the registry's ``champion``."""
    return not os.environ.get("DVC_EXP_NAME") and current_branch() == branch


def git_commit(cwd: str | Path = ".") -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def as_text(value) -> str:
    """A param or tag value as the REST API requires it (a string; SQLite would take a float or
    a list, a tracking server refuses them): a tuple written as the list params.yaml has."""
    return str(list(value) if isinstance(value, tuple) else value)


def flatten(values: Mapping, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = as_text(value)
    return flat


@functools.cache
def head_commit() -> str:
    return git_commit()


def run_tags(stage: str, **extra: str) -> dict[str, str]:
    tags = {
        "stage": os.environ.get("DVC_STAGE", stage),
        "mlflow.source.git.commit": head_commit(),
        "mlflow.source.name": f"stages/{stage.split('@')[0]}.py",
    }
    return tags | dvc_tags() | {key: str(value) for key, value in extra.items()}


def dvc_tags() -> dict[str, str]:
    tags = {}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc_baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags


def pipeline_key() -> tuple[str, str]:
    """(tag value, run name) of the pipeline run this stage belongs to: the DVC experiment, or,
    for a plain `dvc repro`, a digest of the pipeline's code and definition (``backprop/``,
    ``stages/``, ``dvc.yaml``, ``params.yaml``): the same on every machine and clone, unlike a commit."""
    experiment = os.environ.get("DVC_EXP_NAME")
    if experiment:
        return f"exp:{experiment}", f"dvc exp {experiment}"
    digest = content_digest(["backprop", "stages", "dvc.yaml", "params.yaml"])[:DIGEST_LENGTH]
    return f"repro:{digest}", f"dvc repro {digest[:8]}"


def pipeline_label() -> str:
    """What run names carry of their pipeline: the DVC experiment's name, or the branch (``repro``
    on a detached HEAD) and the digest of the pipeline run's name (``pipeline_key``)."""
    experiment = os.environ.get("DVC_EXP_NAME")
    if experiment:
        return experiment
    digest = pipeline_key()[0].removeprefix("repro:")[:8]
    return f"{current_branch() or 'repro'} {digest}"


def changed_params(rev: str) -> dict[str, str] | None:
    """The params.yaml keys (flattened, ``train.lr``) whose values differ from those at git
    revision ``rev``; None when git cannot show that revision's params.yaml."""
    import yaml

    try:
        old = subprocess.run(["git", "show", f"{rev}:params.yaml"], capture_output=True, text=True, check=True).stdout
        before, now = flatten(yaml.safe_load(old) or {}), flatten(yaml.safe_load(Path("params.yaml").read_text()) or {})
    except (OSError, subprocess.CalledProcessError, yaml.YAMLError):
        return None
    return {key: value for key, value in now.items() if before.get(key) != value} | {
        key: "(removed)" for key in before.keys() - now.keys()
    }


def version_record(task: str, loss: str, summary: Mapping[str, Mapping[str, float]], outcomes: Mapping[str, int]):
    """(description, tags) of a registered model version: the pipeline that made it (the DVC
    experiment and its baseline, or the branch and commit), the params it changed from that
    baseline (for a repro, from the commit) and its cross-validated headline."""
    experiment, baseline = os.environ.get("DVC_EXP_NAME"), os.environ.get("DVC_EXP_BASELINE_REV")
    commit, branch = head_commit(), current_branch()
    changed = changed_params(baseline or "HEAD")
    changes = "unknown" if changed is None else "; ".join(f"{k}={v}" for k, v in changed.items()) or "none"
    tags = {"pipeline": pipeline_label(), "git_commit": commit, "git_branch": branch or "(detached)"} | dvc_tags()
    tags["params_changed"] = changes[:1000]
    test, val = summary[f"test_{loss}"], summary[f"val_{loss}"]
    tags |= {f"test_{loss}_mean": f"{test['mean']:.6g}", f"val_{loss}_mean": f"{val['mean']:.6g}"}
    tags |= interval_tags(summary, loss, outcomes)
    made_by = (
        f"DVC experiment {experiment} (baseline {(baseline or 'unknown')[:8]})"
        if experiment
        else f"dvc repro on {branch or 'a detached HEAD'} at {commit[:8]}"
    )
    label = LABELS.get(loss, loss)
    description = (
        f"The {task} network of {made_by}; params changed from {'its baseline' if experiment else 'the commit'}: "
        f"{changes[:1000]}. Cross-validated test {label} {test['mean']:.4g} (95% CI {test['ci_low']:.4g} to "
        f"{test['ci_high']:.4g}), validation {label} {val['mean']:.4g}, over {sum(outcomes.values())} folds "
        f"({tags['outcomes']}); the network shipped is one fold's."
    )
    return description, tags
