"""``SchedulingPolicy``: where a task or actor should run.

A policy is pure: it gets the request and a snapshot of the cluster and returns
a node id, with no I/O. Every raylet calls it for every lease request it gets,
whatever the cluster size (and again for requests that pend there, when the cluster
view changes); a policy must therefore be fast (microseconds per call for clusters
of a few hundred nodes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


def sum_resources(maps: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Resource maps added up, name by name (e.g. the totals of every live node)."""
    out: dict[str, float] = {}
    for m in maps:
        for k, v in m.items():
            out[k] = out.get(k, 0.0) + v
    return out


@dataclass(frozen=True)
class NodeView:
    """What a policy knows of one node."""

    node_id: str
    total: Mapping[str, float]
    available: Mapping[str, float]
    alive: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)

    def fits(self, demand: Mapping[str, float]) -> bool:
        """Whether ``demand`` fits in this node's available resources now."""
        return all(self.available.get(k, 0.0) >= v - 1e-9 for k, v in demand.items() if v > 0)

    def feasible(self, demand: Mapping[str, float]) -> bool:
        """Whether ``demand`` could ever fit on this node (its totals)."""
        return all(self.total.get(k, 0.0) >= v - 1e-9 for k, v in demand.items() if v > 0)

    def utilization(self) -> float:
        """The highest used fraction over the node's resources (0.0 .. 1.0)."""
        worst = 0.0
        for k, total in self.total.items():
            if total > 0:
                worst = max(worst, 1.0 - self.available.get(k, 0.0) / total)
        return worst


@dataclass(frozen=True)
class ClusterView:
    """A snapshot of the cluster for one decision. ``local_node_id`` is the node
    whose raylet is asking."""

    nodes: Mapping[str, NodeView]
    local_node_id: str


@dataclass(frozen=True)
class SchedulingRequest:
    """A lease request: the resource shape and the scheduling strategy.

    ``strategy`` is ``"DEFAULT"``, ``"SPREAD"``, or a dict such as
    ``{"type": "node_affinity", "node_id": ..., "soft": bool}``.
    """

    resources: Mapping[str, float]
    strategy: Any = "DEFAULT"
    task_name: str = ""


@runtime_checkable
class SchedulingPolicy(Protocol):
    """Chooses a node for a request."""

    name: str

    def select_node(self, request: SchedulingRequest, cluster: ClusterView) -> str | None:
        """Return the id of an alive node where ``request`` fits now, or None when no
        node fits now. A policy never returns a node where the request does not fit
        (``NodeView.fits``) and never a dead node. Whether the request could fit
        later (feasibility) is the raylet's question, not the policy's."""
