"""``least_loaded``: an example third-party scheduling policy.

It uses only microray's public plugin API — ``microray.hookspecs.hookimpl``,
``microray.registrations`` and ``microray.interfaces`` — exactly as a package
outside this repository would. Enable it by naming the module in config::

    plugins = ["microray.contrib.example_policy"]
    scheduling_policy = "least_loaded"

or ship it in its own distribution with an entry point (see
``docs/writing-a-plugin.md``)::

    [project.entry-points.microray]
    least_loaded = "microray.contrib.example_policy"

The policy sends each request to the alive node where it fits now with the
lowest utilization (``NodeView.utilization``: the highest used fraction over
all of the node's resources), ties broken by node id. It honours the request's
strategy first: node affinity (hard: only that node; soft: that node when the
request fits there, else the least loaded one). ``"SPREAD"`` is treated like
``"DEFAULT"`` — always picking the least loaded node already spreads work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from microray.hookspecs import hookimpl
from microray.interfaces import ClusterView, SchedulingRequest
from microray.registrations import OptionSpec, SchedulingPolicyRegistration

__all__ = ["LeastLoadedPolicy", "microray_scheduling_policies"]


class LeastLoadedPolicy:
    """Choose the least utilized alive node where the request fits."""

    name = "least_loaded"

    def __init__(self, prefer_local: bool = False) -> None:
        self.prefer_local = prefer_local

    def select_node(self, request: SchedulingRequest, cluster: ClusterView) -> str | None:
        """Honour node affinity, else return the least loaded fitting node (or None)."""
        strategy: Any = request.strategy
        if isinstance(strategy, Mapping) and strategy.get("type") == "node_affinity":
            target = cluster.nodes.get(strategy.get("node_id"))
            if target is not None and target.alive and target.fits(request.resources):
                return target.node_id
            if not strategy.get("soft", False):
                return None
        fitting = [n for n in cluster.nodes.values() if n.alive and n.fits(request.resources)]
        if not fitting:
            return None
        best = min(fitting, key=lambda n: (n.utilization(), n.node_id))
        if self.prefer_local:
            for node in fitting:
                if node.node_id == cluster.local_node_id and node.utilization() <= best.utilization():
                    return node.node_id
        return best.node_id


@hookimpl
def microray_scheduling_policies() -> Iterable[SchedulingPolicyRegistration]:
    """Register ``least_loaded``."""
    yield SchedulingPolicyRegistration(
        name="least_loaded",
        factory=LeastLoadedPolicy,
        description="the alive node with the lowest utilization where the request fits",
        capabilities=frozenset({"node_affinity", "deterministic"}),
        options={
            "prefer_local": OptionSpec(
                bool, "choose the local node when it is tied for least loaded", default=False
            ),
        },
    )
