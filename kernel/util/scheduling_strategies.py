"""Scheduling strategies with Ray's names (``microray.util.scheduling_strategies``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NodeAffinitySchedulingStrategy:
    """Run on ``node_id``; with ``soft=True`` fall back to the policy when it can't."""

    node_id: str
    soft: bool = False

    def __post_init__(self) -> None:
        node_id: Any = self.node_id
        if not isinstance(node_id, str):  # a NodeID (``get_runtime_context().node_id``) names its node too
            if not callable(getattr(node_id, "hex", None)):
                raise TypeError(f"NodeAffinitySchedulingStrategy node_id must be a node id (a hex string or a "
                                f"NodeID), got {type(node_id).__name__}")
            object.__setattr__(self, "node_id", node_id.hex())

    def to_wire(self) -> dict[str, Any]:
        return {"type": "node_affinity", "node_id": self.node_id, "soft": self.soft}


@dataclass(frozen=True)
class PlacementGroupSchedulingStrategy:
    """Ray's strategy for running inside a placement group bundle. microray does not
    support placement groups: a strategy that names one fails when a task or actor is
    submitted with it; with ``placement_group=None`` it means the default strategy."""

    placement_group: Any
    placement_group_bundle_index: int = -1
    placement_group_capture_child_tasks: bool | None = None

    def to_wire(self) -> Any:
        if self.placement_group is None:
            return "DEFAULT"
        from microray.util.placement_group import PlacementGroupsNotSupportedError

        raise PlacementGroupsNotSupportedError("PlacementGroupSchedulingStrategy")
