"""A network's settings in words as they ran: its early stopping (the patience it used), its
epoch budget, where its settings come from in params.yaml. No I/O."""

from __future__ import annotations

import math

from backprop.lab.blocks import fmt


def effective_patience(config: dict) -> int:
    """The patience early stopping used (``TrainConfig.stopping_patience``): ``patience``, but
    never fewer than ``patience_share`` of the epoch budget; 0 stays off."""
    patience = int(config.get("patience") or 0)
    if not patience:
        return 0
    share = float(config.get("patience_share") or 0.0)
    return max(patience, math.ceil(share * int(config.get("epochs") or 0)))


def patience_text(config: dict) -> str:
    """Early stopping as it ran: the effective patience, with the rule behind it when the share
    of the budget raised it above ``patience``."""
    patience = int(config.get("patience") or 0)
    if not patience:
        return "no early stopping"
    effective = effective_patience(config)
    if effective == patience:
        return f"early stopping after {patience} epochs without improvement (patience {patience})"
    return (
        f"early stopping after {effective} epochs without improvement (patience {patience}, at least "
        f"{fmt(config['patience_share'])} of the {config['epochs']}-epoch budget)"
    )


def intro_patience(configs: dict) -> str:
    """Early stopping across the headline networks, each task's effective patience in brackets
    where a share of the budget raised it above ``patience``."""
    texts = {patience_text(config) for config in configs.values()}
    if len(texts) == 1:
        return next(iter(texts))
    rules = {(config.get("patience"), config.get("patience_share")) for config in configs.values()}
    if len(rules) > 1:
        return "; ".join(f"{task} {patience_text(config)}" for task, config in configs.items())
    patience, share = next(iter(rules))
    each = ", ".join(f"{task} {effective_patience(config)}" for task, config in configs.items())
    return f"early stopping after max({patience}, {fmt(share)} × the epoch budget) epochs without improvement ({each})"


def settings_text(task: str, config: dict, overrides: dict) -> str:
    """A task's headline network and where its settings come from (params.yaml)."""
    text = (
        f"hidden {as_point_value(config['hidden'])}, {config['activation']}, lr {config['lr']}, at most "
        f"{config['epochs']} epochs, batch {config['batch_size'] or 'full'}, {patience_text(config)}, from "
        "params.yaml `train`"
    )
    keys = overrides.get(task, [])
    if keys:
        text += f" with `train.overrides.{task}` setting {', '.join(f'`{key}`' for key in keys)}"
    return text


def as_point_value(value):
    """A setting as a sweep's point holds it (a one-layer width as its integer)."""
    return int(value[0]) if isinstance(value, list | tuple) and len(value) == 1 else value


def sweep_budget(config: dict, fixed: dict | None = None, rule: bool = False) -> str:
    """``≤ 4000 epochs, patience 1000``: the budget and effective patience of a fit with the train
    settings ``config`` and a sweep's ``fixed`` keys; ``rule``: in words, with the rule behind it."""
    merged = config | (fixed or {})
    if rule:
        return f"≤ {merged.get('epochs')} epochs; {patience_text(merged).replace(' (', ': ', 1).removesuffix(')')}"
    return f"≤ {merged.get('epochs')} epochs, patience {effective_patience(merged)}"
