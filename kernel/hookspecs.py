"""Hook specifications: the whole surface a plugin can implement.

Registration hooks are plural nouns returning registrations; the kernel picks
one of them by the name given in config (``select(family, name)``). Observer
hooks are named as past events. The kernel calls observers off the hot path
(from a side thread, in batches where events are frequent); an observer that
raises is logged and never breaks the runtime.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pluggy

from microray.registrations import (
    DashboardRegistration,
    GcsStoreRegistration,
    ObjectStoreRegistration,
    SchedulingPolicyRegistration,
)

PROJECT = "microray"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------
# registration hooks
# ---------------------------------------------------------------------------


@hookspec
def microray_gcs_stores() -> Iterable[GcsStoreRegistration]:
    """Return the GCS store backends this plugin provides.

    Called once per plugin manager. Example::

        @hookimpl
        def microray_gcs_stores():
            yield GcsStoreRegistration(name="memory", factory=MemoryGcsStore)
    """


@hookspec
def microray_object_stores() -> Iterable[ObjectStoreRegistration]:
    """Return the object store backends this plugin provides."""


@hookspec
def microray_scheduling_policies() -> Iterable[SchedulingPolicyRegistration]:
    """Return the scheduling policies this plugin provides."""


@hookspec
def microray_dashboards() -> Iterable[DashboardRegistration]:
    """Return the dashboards this plugin provides."""


# ---------------------------------------------------------------------------
# observer hooks (past events; never on the hot path; errors are logged)
# ---------------------------------------------------------------------------


@hookspec
def microray_task_finished(task: dict[str, Any]) -> None:
    """A task ended (finished, failed or cancelled).

    ``task`` holds ``task_id``, ``name``, ``state`` (FINISHED / FAILED /
    CANCELLED), ``node_id``, ``worker_id``, ``start_time``, ``end_time`` and
    ``error`` (a string or None). Called in the owner's process.
    """


@hookspec
def microray_actor_state_changed(actor: dict[str, Any]) -> None:
    """An actor moved to a new state. ``actor`` holds ``actor_id``, ``name``,
    ``namespace``, ``state``, ``num_restarts``, ``pid``, ``node_id``. Called in the GCS."""


@hookspec
def microray_node_added(node: dict[str, Any]) -> None:
    """A node registered with the GCS. ``node`` holds ``node_id``, ``address``,
    ``resources``, ``state``, ``labels``, ``is_head``. Called in the GCS."""


@hookspec
def microray_node_removed(node: dict[str, Any]) -> None:
    """A node left the cluster or was declared dead. Called in the GCS."""


@hookspec
def microray_object_created(obj: dict[str, Any]) -> None:
    """An object was sealed in a node's object store (``object_id``, ``size``, ``node_id``)."""


@hookspec
def microray_object_spilled(obj: dict[str, Any]) -> None:
    """An object was spilled to disk (``object_id``, ``size``, ``path``)."""


@hookspec
def microray_object_restored(obj: dict[str, Any]) -> None:
    """A spilled object was read back into memory."""


@hookspec
def microray_object_freed(obj: dict[str, Any]) -> None:
    """An object was deleted because its last reference went away."""


@hookspec
def microray_add_cli_commands(cli: Any) -> None:
    """Add commands to the ``microray`` click group ``cli``."""
