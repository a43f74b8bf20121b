"""``spread``: round-robin over the nodes where the request fits.

Like Ray's ``SpreadSchedulingPolicy``: the nodes are visited in node-id order,
starting after the node chosen last, and the first alive node where the request
fits now is chosen. Each ``SpreadPolicy`` instance keeps its own cursor, so one
raylet's decisions rotate over the cluster. Spreading trades locality for
balance (and fault isolation); the cost is fragmentation — a big request may
find no node with enough room left.
"""

from __future__ import annotations

from microray.interfaces.scheduling import ClusterView, SchedulingRequest
from microray.plugins.scheduling.strategies import StrategyAwarePolicy

__all__ = ["SpreadPolicy"]


class SpreadPolicy(StrategyAwarePolicy):
    """Round-robin over fitting nodes; ``"DEFAULT"`` and ``"SPREAD"`` share one cursor."""

    name = "spread"

    def select_default(self, request: SchedulingRequest, cluster: ClusterView) -> str | None:
        """The next fitting node after the one chosen last (wrapping), or None."""
        return self.spread.choose(request, cluster)
