"""``hybrid``: Ray's default policy — pack onto the local node, spread past a threshold.

How Ray does it (``src/ray/raylet/scheduling/policy/hybrid_scheduling_policy.cc``
and ``NodeResources::CalculateCriticalResourceUtilization``), and what we keep:

1. Only alive nodes where the request fits *now* are candidates (Ray: "prefer
   available nodes over feasible ones"; a feasible-but-busy node is the
   raylet's business here, never the policy's, so we stop at available).
2. Each candidate gets a score: its *critical resource utilization*, the
   highest used fraction ``1 - available / total`` over ``CPU``, ``memory`` and
   ``object_store_memory`` (GPUs and custom resources are not critical in Ray),
   measured *before* placing the request. A score below ``spread_threshold``
   (default 0.5, Ray's ``scheduler_spread_threshold``) is truncated to 0, so
   every node under the threshold looks equally good.
3. Candidates are ordered by node id, then stably by score: ties — in
   particular all the nodes under the threshold — keep the fixed id order, so
   work packs onto the first node in that order until it crosses the threshold.
4. The local node (``cluster.local_node_id``) wins when it is a candidate and
   its score is no worse than the best: under the threshold that is always
   true (locality: no cold worker pool, no argument transfer). Past the
   threshold it still wins if nothing is less loaded.
5. Otherwise the best node: the first node under the threshold in id order,
   else the least utilized node above it.
6. ``avoid_gpu_nodes`` (Ray's ``scheduler_avoid_gpu_nodes``, default on): a
   request that asks for no GPU is first tried on nodes without GPUs, and only
   falls back to GPU nodes when none of those fits.

Deliberate difference: Ray picks uniformly among the top ``k`` nodes
(``k = max(scheduler_top_k_absolute=1, 20% of the nodes)``) to smooth load when
many raylets decide at once. We always take the top node, so the policy is
deterministic — the same request and cluster view give the same node, which
makes decisions reproducible and testable. Spreading under contention is what
the ``spread`` policy and the ``"SPREAD"`` strategy are for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from microray.interfaces.scheduling import ClusterView, NodeView, SchedulingRequest
from microray.plugins.scheduling.strategies import StrategyAwarePolicy, fitting_nodes
from microray.registrations import OptionSpec

__all__ = ["HybridPolicy", "OPTIONS", "critical_utilization"]

#: Ray's critical resources (``CPU``, ``MEM``, ``OBJECT_STORE_MEM``).
CRITICAL_RESOURCES: tuple[str, ...] = ("CPU", "memory", "object_store_memory")


def _parse_fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number between 0.0 and 1.0, got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"expected a number between 0.0 and 1.0, got {value!r}")
    return value


def _parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _parse_names(value: Any) -> list:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"expected a list of resource names, got {value!r}")
    names = list(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"expected a non-empty list of resource names, got {value!r}")
    return names


OPTIONS: Mapping[str, OptionSpec] = {
    "spread_threshold": OptionSpec(
        float,
        "critical-resource utilization (0..1) under which a node counts as idle "
        "and work packs onto it; above it, work goes to the least utilized node",
        default=0.5,
        parse=_parse_fraction,
    ),
    "avoid_gpu_nodes": OptionSpec(
        bool,
        "place requests that need no GPU on non-GPU nodes when one fits",
        default=True,
        parse=_parse_bool,
    ),
    "critical_resources": OptionSpec(
        list,
        "resources whose used fraction is the node's utilization",
        default=list(CRITICAL_RESOURCES),
        parse=_parse_names,
    ),
}


def critical_utilization(node: NodeView, resources: Iterable[str] = CRITICAL_RESOURCES) -> float:
    """The highest used fraction over ``resources`` that the node has.

    0.0 .. 1.0 (more if the node is over-committed). A node with none of them
    (total 0) has utilization 0, as in Ray.
    """
    worst = 0.0
    totals, available = node.total, node.available
    for key in resources:
        total = totals.get(key, 0.0)
        if total > 0:
            used = 1.0 - available.get(key, 0.0) / total
            if used > worst:
                worst = used
    return worst


class HybridPolicy(StrategyAwarePolicy):
    """Pack onto the local node (then the first nodes in id order) while they are
    under ``spread_threshold``; past it, choose the least utilized node."""

    name = "hybrid"

    def __init__(
        self,
        spread_threshold: float = 0.5,
        avoid_gpu_nodes: bool = True,
        critical_resources: Iterable[str] = CRITICAL_RESOURCES,
    ) -> None:
        super().__init__()
        self.spread_threshold = _parse_fraction(spread_threshold)
        self.avoid_gpu_nodes = bool(avoid_gpu_nodes)
        self.critical_resources = tuple(critical_resources)

    def score(self, node: NodeView) -> float:
        """The node's critical utilization, 0 when under the spread threshold."""
        used = critical_utilization(node, self.critical_resources)
        return 0.0 if used < self.spread_threshold else used

    def select_default(self, request: SchedulingRequest, cluster: ClusterView) -> str | None:
        """Ray's hybrid choice among the nodes where ``request`` fits now."""
        candidates = fitting_nodes(request, cluster, ordered=False)
        if self.avoid_gpu_nodes and request.resources.get("GPU", 0) <= 0:
            without_gpu = [n for n in candidates if n.total.get("GPU", 0) <= 0]
            if without_gpu:
                candidates = without_gpu
        if not candidates:
            return None
        # The minimum of (score, node id) is the head of Ray's "sort by id, then
        # stable sort by score", found without sorting. ``self.score`` is
        # inlined: this loop is the policy's whole cost on a large cluster.
        threshold, critical = self.spread_threshold, self.critical_resources
        local_id = cluster.local_node_id
        best_score = 0.0
        best_id: str | None = None
        local_score: float | None = None
        for node in candidates:
            totals, available = node.total, node.available
            used = 0.0
            for key in critical:
                total = totals.get(key, 0.0)
                if total > 0:
                    fraction = 1.0 - available.get(key, 0.0) / total
                    if fraction > used:
                        used = fraction
            if used < threshold:
                used = 0.0
            node_id = node.node_id
            if best_id is None or used < best_score or (used == best_score and node_id < best_id):
                best_score, best_id = used, node_id
            if node_id == local_id:
                local_score = used
        if local_score is not None and local_score <= best_score:
            return local_id
        return best_id
