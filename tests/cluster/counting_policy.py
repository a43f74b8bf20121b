"""A test plugin: a contrib-style scheduling policy, ``counting``, that records each call.

Registered with ``plugins=["tests.cluster.counting_policy"]`` and selected with
``scheduling_policy="counting"``. It chooses like first fit (the first alive node in
node-id order where the request fits now, honouring node affinity) and appends one JSON
line per ``select_node`` call to the file named by ``TEST_POLICY_CALLS_FILE`` (the I/O is
for the test only: a real policy does none).
"""

from __future__ import annotations

import os

from microray.hookspecs import hookimpl
from microray.interfaces import ClusterView, SchedulingRequest
from microray.registrations import SchedulingPolicyRegistration
from microray.testing.event_files import append_event, read_events

ENV = "TEST_POLICY_CALLS_FILE"


class CountingPolicy:
    name = "counting"

    def select_node(self, request: SchedulingRequest, cluster: ClusterView) -> str | None:
        chosen = self._choose(request, cluster)
        append_event(ENV, {"resources": dict(request.resources), "nodes": sorted(cluster.nodes),
                            "local": cluster.local_node_id, "chosen": chosen, "pid": os.getpid()})
        return chosen

    @staticmethod
    def _choose(request: SchedulingRequest, cluster: ClusterView) -> str | None:
        strategy = request.strategy
        if isinstance(strategy, dict) and strategy.get("type") == "node_affinity":
            node = cluster.nodes.get(strategy["node_id"])
            if node is not None and node.alive and node.fits(request.resources):
                return node.node_id
            if not strategy.get("soft", False):
                return None
        for node_id in sorted(cluster.nodes):
            node = cluster.nodes[node_id]
            if node.alive and node.fits(request.resources):
                return node_id
        return None


def read_calls(path: str) -> list[dict]:
    """The ``select_node`` calls recorded in ``path`` so far."""
    return read_events(path)


@hookimpl
def microray_scheduling_policies():
    yield SchedulingPolicyRegistration(
        name="counting", factory=CountingPolicy, description="first fit that records its calls",
        capabilities=frozenset({"node_affinity"}),
    )
