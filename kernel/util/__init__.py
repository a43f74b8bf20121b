"""Ray's ``util`` namespace: ActorPool, Queue, scheduling strategies, the state API,
accelerator names and the placement group names (placement groups are not supported)."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ActorPool": "microray.util.actor_pool",
    "scheduling_strategies": None,
    "queue": None,
    "state": None,
    "accelerators": None,
    "serialization": None,
    "register_serializer": "microray.util.serialization",
    "deregister_serializer": "microray.util.serialization",
    "PlacementGroup": "microray.util.placement_group",
    "get_current_placement_group": "microray.util.placement_group",
    "get_placement_group": "microray.util.placement_group",
    "placement_group": None,
    "placement_group_table": "microray.util.placement_group",
    "remove_placement_group": "microray.util.placement_group",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'microray.util' has no attribute {name!r}")
    module = _LAZY[name]
    if module is None:
        return importlib.import_module(f"microray.util.{name}")
    return getattr(importlib.import_module(module), name)
