"""Opening the configured object store in any process of a node."""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import psutil

from microray import config as config_mod
from microray.plugin_manager import get_plugin_manager
from microray.registrations import ObjectStoreRegistration


def default_capacity() -> int:
    """Ray's default: 30% of the machine's memory, but never more than /dev/shm can hold."""
    cap = int(psutil.virtual_memory().total * 0.3)
    try:
        cap = min(cap, int(shutil.disk_usage("/dev/shm").free * 0.9))
    except OSError:
        pass
    return cap


def open_object_store(cfg: config_mod.Config, namespace: str, session_dir: str) -> Any:
    """Build this process's instance of the node's object store (same namespace: same objects)."""
    pm = get_plugin_manager(cfg.plugins)
    reg = pm.select("object_store", cfg.object_store)
    options = reg.validate_options("object_store", cfg.object_store_options)
    capacity = cfg.object_store_memory or default_capacity()
    spill_dir = os.path.join(session_dir, "spill", namespace)
    try:  # spilled objects are this user's only, like the session folder
        os.makedirs(os.path.dirname(spill_dir), mode=0o700, exist_ok=True)
    except OSError:
        pass  # not ours to make: the backend says what is wrong if it needs the folder
    return reg.factory(namespace, capacity, spill_dir, on_event=_observer(pm), **options)


def _observer(pm):
    hooks = {"spilled": "microray_object_spilled", "restored": "microray_object_restored"}

    def on_event(kind: str, info: dict) -> None:
        hook = hooks.get(kind)
        if hook and pm.has_observers(hook):
            pm.notify(hook, obj=info)

    return on_event


_NAMESPACE = re.compile(r"^mr-(\d+)-[0-9a-f]{8}$")


def node_namespace(raylet_pid: int, node_id: str) -> str:
    """The object-store namespace of a node: it names the raylet that owns it, so a
    namespace whose raylet is gone can be recognised and swept."""
    return f"mr-{raylet_pid}-{node_id[:8]}"


def namespace_in_use(namespace: str) -> bool:
    """False only for a node namespace whose raylet process no longer runs."""
    m = _NAMESPACE.match(namespace)
    if m is None:
        return True  # not ours to judge
    from microray.process import pid_alive

    return pid_alive(int(m.group(1)))


def sweep_stale_namespaces(cfg: config_mod.Config) -> list[str]:
    """Ask the configured backend to remove namespaces of raylets that died without
    destroying their store (killed drivers' embedded nodes, failed starts)."""
    reg = get_plugin_manager(cfg.plugins).select("object_store", cfg.object_store)
    assert isinstance(reg, ObjectStoreRegistration)  # the plugin manager checks each family's type
    if reg.sweep is None:
        return []
    options = reg.validate_options("object_store", cfg.object_store_options)
    return reg.sweep(namespace_in_use, **options)


def destroy_namespace(cfg: config_mod.Config, namespace: str, session_dir: str) -> None:
    """Remove a node's store after its raylet failed to start (best effort)."""
    try:
        open_object_store(cfg, namespace, session_dir).destroy()
    except Exception:  # noqa: BLE001 -- cleanup after a failure must not hide it
        pass
