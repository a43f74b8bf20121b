"""Scheduling strategies with Ray's names (``microray.util.scheduling_strategies``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NodeAffinitySchedulingStrategy:
    """Run on ``node_id``; with ``soft=True`` fall back to the policy when it can't."""

    node_id: str
    soft: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"type": "node_affinity", "node_id": self.node_id, "soft": self.soft}


@dataclass(frozen=True)
class PlacementGroupSchedulingStrategy:
    """Run inside a placement group bundle (placement groups arrive with a later issue)."""

    placement_group: Any
    placement_group_bundle_index: int = -1
    placement_group_capture_child_tasks: bool | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "placement_group",
            "placement_group_id": getattr(self.placement_group, "id", None),
            "bundle_index": self.placement_group_bundle_index,
        }

