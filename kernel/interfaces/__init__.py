"""The interfaces a backend or plugin implements (``typing.Protocol``s)."""

from microray.interfaces.dashboard import Dashboard, DashboardContext
from microray.interfaces.gcs_store import GcsStore, WatchEvent
from microray.interfaces.object_store import ObjectStore, ObjectStoreUsage
from microray.interfaces.scheduling import (
    ClusterView,
    NodeView,
    SchedulingPolicy,
    SchedulingRequest,
)

__all__ = [
    "ClusterView",
    "Dashboard",
    "DashboardContext",
    "GcsStore",
    "NodeView",
    "ObjectStore",
    "ObjectStoreUsage",
    "SchedulingPolicy",
    "SchedulingRequest",
    "WatchEvent",
]
