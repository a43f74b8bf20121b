"""Placement group names with Ray's signatures (``microray.util.placement_group``).

microray does not support placement groups: it places each task and actor on its own.
The names import so that programs and test files that mention them load; creating,
waiting on or removing a placement group raises ``PlacementGroupsNotSupportedError``
saying what to use instead. Asking for the current placement group answers None and
the placement group table is empty, which is true of every microray cluster."""

from __future__ import annotations

import sys
import types
from typing import Any

from microray.exceptions import RayError

_INSTEAD = (
    "microray does not support placement groups; it places each task and actor on its own. "
    "To keep work together or apart use scheduling_strategy='SPREAD', "
    "NodeAffinitySchedulingStrategy(node_id, soft=...), or custom resources given to nodes at start "
    "(see docs/compatibility.md)."
)


class PlacementGroupsNotSupportedError(RayError, NotImplementedError):
    """Raised by every operation that would create or use a placement group."""

    def __init__(self, what: str = "placement groups") -> None:
        super().__init__(f"{what}: {_INSTEAD}")


class PlacementGroup:
    """Ray's placement group handle. microray never creates one; constructing or using
    one raises ``PlacementGroupsNotSupportedError``."""

    def __init__(self, id: Any = None, bundle_cache: Any = None) -> None:  # noqa: A002 -- Ray's name
        raise PlacementGroupsNotSupportedError("PlacementGroup()")

    @staticmethod
    def empty() -> "PlacementGroup":
        raise PlacementGroupsNotSupportedError("PlacementGroup.empty()")


def placement_group(
    bundles: list[dict[str, float]],
    strategy: str = "PACK",
    name: str = "",
    lifetime: str | None = None,
    _max_cpu_fraction_per_node: float = 1.0,
    _soft_target_node_id: str | None = None,
    bundle_label_selector: list[dict[str, str]] | None = None,
) -> PlacementGroup:
    """Ray creates a placement group here; microray raises ``PlacementGroupsNotSupportedError``."""
    raise PlacementGroupsNotSupportedError("placement_group()")


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """Ray looks a named placement group up; microray has none, so this raises."""
    raise PlacementGroupsNotSupportedError(f"get_placement_group({placement_group_name!r})")


def remove_placement_group(placement_group: PlacementGroup) -> None:
    raise PlacementGroupsNotSupportedError("remove_placement_group()")


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict:
    """Every placement group of the cluster by id: always empty on microray."""
    if placement_group is not None:
        raise PlacementGroupsNotSupportedError("placement_group_table(placement_group)")
    return {}


def get_current_placement_group() -> PlacementGroup | None:
    """The placement group the current task or actor runs in: always None on microray."""
    return None


def check_placement_group_index(placement_group: PlacementGroup | None, bundle_index: int) -> None:
    if placement_group is not None:
        raise PlacementGroupsNotSupportedError("a placement group bundle index")


__all__ = [
    "PlacementGroup", "PlacementGroupsNotSupportedError", "placement_group", "get_placement_group",
    "remove_placement_group", "placement_group_table", "get_current_placement_group",
]


class _CallableModule(types.ModuleType):
    """In Ray ``ray.util.placement_group`` is both this module and the function of that
    name; calling the module calls the function, so both spellings behave alike."""

    def __call__(self, *args: Any, **kwargs: Any) -> PlacementGroup:
        return placement_group(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
