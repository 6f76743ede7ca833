"""``layers_to_freeze``: freeze the first N layer groups of a model (spec section 5)."""

from __future__ import annotations

from jupyter_avml.models.zoo import ModelSpec


def freeze_layer_groups(model, spec: ModelSpec, count: int | None) -> list[str]:
    """Set ``requires_grad=False`` on every parameter of the first ``count`` groups of ``spec.layer_groups``.

    Returns the names of the frozen parameters. A group whose prefixes match no parameter is a bug in the
    registry entry (the backend renamed its modules), so it raises instead of silently freezing less.
    """
    if not count:
        return []
    if count > len(spec.layer_groups):
        raise ValueError(f"{spec.name} has {len(spec.layer_groups)} layer groups, cannot freeze {count}")
    named = list(model.named_parameters())
    frozen: list[str] = []
    for group in spec.layer_groups[:count]:
        matched = [name for name, _ in named if name.startswith(group)]
        if not matched:
            raise RuntimeError(f"{spec.name}: layer group {group} matches no parameter of the model")
        frozen.extend(matched)
    frozen_set = set(frozen)
    for name, param in named:
        if name in frozen_set:
            param.requires_grad_(False)
    return frozen
