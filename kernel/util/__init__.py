"""Ray's ``util`` namespace: ActorPool, Queue, the multiprocessing Pool, scheduling
strategies, the state API, accelerator names, named actors, the node's IP, serializers
and the serializability check, and the placement group names (placement groups are not
supported)."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ActorPool": "microray.util.actor_pool",
    "list_named_actors": "microray.actor",
    "scheduling_strategies": None,
    "queue": None,
    "state": None,
    "accelerators": None,
    "serialization": None,
    "register_serializer": "microray.util.serialization",
    "check_serialize": None,
    "inspect_serializability": "microray.util.check_serialize",
    "multiprocessing": None,
    "deregister_serializer": "microray.util.serialization",
    "PlacementGroup": "microray.util.placement_group",
    "get_current_placement_group": "microray.util.placement_group",
    "get_placement_group": "microray.util.placement_group",
    "placement_group": None,
    "placement_group_table": "microray.util.placement_group",
    "remove_placement_group": "microray.util.placement_group",
}


def get_node_ip_address(address: str | None = None) -> str:
    """The IP address of the node this process runs on: its raylet's, once connected;
    before that, the IP a node started here would use (config key ``node_ip``).
    ``address`` is accepted as in Ray (where it picks a network to look from) and not
    needed: a microray node's IP is set, never guessed."""
    from microray.core import context

    worker = context.worker
    if worker is not None:
        return worker.raylet_address.rsplit(":", 1)[0]
    from microray import config

    return config.resolve().node_ip


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'microray.util' has no attribute {name!r}")
    module = _LAZY[name]
    if module is None:
        return importlib.import_module(f"microray.util.{name}")
    return getattr(importlib.import_module(module), name)
