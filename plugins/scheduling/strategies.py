"""Scheduling strategies shared by every shipped policy.

A request's ``strategy`` is honoured *before* a policy's own logic:

``"DEFAULT"`` (or ``None``)
    The policy's own behaviour (``StrategyAwarePolicy.select_default``).
``"SPREAD"``
    Round-robin over the nodes where the request fits, whatever the policy.
``{"type": "node_affinity", "node_id": X, "soft": False}``
    Hard affinity: node ``X`` if it is alive and the request fits there now,
    otherwise ``None`` (a dead or unknown ``X`` gives ``None`` too).
``{"type": "node_affinity", "node_id": X, "soft": True}``
    Soft affinity: ``X`` if it is alive and the request fits there now,
    otherwise the policy's own behaviour.

Strategy *types* are looked up in ``STRATEGY_HANDLERS`` (string strategies are
the types ``"default"`` and ``"spread"``). That table is the extension point:
placement-group strategies (``{"type": "placement_group", ...}``) will be one
more handler there, and every policy that derives from
``StrategyAwarePolicy`` picks it up with no change of its own.

Everything here is pure: no I/O, no logging on the decision path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from microray.interfaces.scheduling import ClusterView, NodeView, SchedulingRequest

__all__ = [
    "STRATEGY_HANDLERS",
    "RoundRobin",
    "StrategyAwarePolicy",
    "fitting_nodes",
    "normalize_strategy",
]


def fitting_nodes(
    request: SchedulingRequest, cluster: ClusterView, *, ordered: bool = True
) -> list[NodeView]:
    """The alive nodes where ``request`` fits now, ordered by node id.

    The order is what makes the policies deterministic: it does not depend on
    the order in which the cluster view's mapping was built. ``ordered=False``
    skips the sort for callers that impose their own total order.

    The check is ``NodeView.fits`` unrolled (the demand's positive entries are
    computed once instead of once per node); the contract suite checks every
    choice against ``NodeView.fits`` itself, so a drift between the two fails it.
    """
    needs = [(key, amount - 1e-9) for key, amount in request.resources.items() if amount > 0]
    out = []
    for node in cluster.nodes.values():
        if not node.alive:
            continue
        available = node.available
        for key, need in needs:
            if available.get(key, 0.0) < need:
                break
        else:
            out.append(node)
    if ordered:
        out.sort(key=_node_id)
    return out


def _node_id(node: NodeView) -> str:
    return node.node_id


def node_fits_now(node_id: Any, request: SchedulingRequest, cluster: ClusterView) -> bool:
    """Whether ``node_id`` is a known, alive node where ``request`` fits now."""
    node = cluster.nodes.get(node_id) if isinstance(node_id, str) else None
    return node is not None and node.alive and node.fits(request.resources)


class RoundRobin:
    """Round-robin over fitting nodes in node-id order.

    The cursor is the id of the node chosen last; the next choice is the first
    fitting node whose id sorts after it, wrapping around. Keeping an id
    rather than an index means a node joining or leaving the cluster does not
    make the rotation skip or repeat nodes. Like Ray's ``SpreadSchedulingPolicy``
    (which keeps ``spread_scheduling_next_index_`` over the sorted node ids).
    Two threads calling at once may both pick the same node (the rotation is
    then merely uneven); every answer is still a valid node.
    """

    def __init__(self) -> None:
        self.last: str | None = None

    def choose(self, request: SchedulingRequest, cluster: ClusterView) -> str | None:
        """The next fitting node after the last one chosen, or None if none fits."""
        first: str | None = None  # smallest fitting id: where the rotation wraps to
        after: str | None = None  # smallest fitting id greater than the cursor
        last = self.last
        for node in fitting_nodes(request, cluster, ordered=False):
            node_id = node.node_id
            if first is None or node_id < first:
                first = node_id
            if last is not None and node_id > last and (after is None or node_id < after):
                after = node_id
        chosen = after if after is not None else first
        if chosen is not None:
            self.last = chosen
        return chosen


def normalize_strategy(strategy: Any) -> dict[str, Any]:
    """Turn a request's ``strategy`` into a dict with a lower-case ``type``.

    ``None`` and ``"DEFAULT"`` become ``{"type": "default"}``, ``"SPREAD"``
    becomes ``{"type": "spread"}``, dicts are copied with their ``type``
    lower-cased. Anything else raises ``ValueError`` naming the strategy.
    """
    if strategy is None:
        return {"type": "default"}
    if isinstance(strategy, str):
        return {"type": strategy.strip().lower()}
    if isinstance(strategy, Mapping):
        kind = strategy.get("type")
        if not isinstance(kind, str):
            raise ValueError(
                f"scheduling strategy {dict(strategy)!r} has no 'type'; expected e.g. "
                "{'type': 'node_affinity', 'node_id': ..., 'soft': False}"
            )
        return {**strategy, "type": kind.strip().lower()}
    raise ValueError(
        f"unsupported scheduling strategy {strategy!r}; expected 'DEFAULT', 'SPREAD' "
        "or a dict with a 'type'"
    )


#: A handler gets the policy, the request, the cluster and the normalized
#: strategy dict, and returns a node id or None.
StrategyHandler = Callable[["StrategyAwarePolicy", SchedulingRequest, ClusterView, dict], "str | None"]


def _default(
    policy: "StrategyAwarePolicy", request: SchedulingRequest, cluster: ClusterView, strategy: dict
) -> str | None:
    return policy.select_default(request, cluster)


def _spread(
    policy: "StrategyAwarePolicy", request: SchedulingRequest, cluster: ClusterView, strategy: dict
) -> str | None:
    return policy.spread.choose(request, cluster)


def _node_affinity(
    policy: "StrategyAwarePolicy", request: SchedulingRequest, cluster: ClusterView, strategy: dict
) -> str | None:
    if "node_id" not in strategy:
        raise ValueError(f"node_affinity strategy {strategy!r} needs a 'node_id'")
    node_id = strategy["node_id"]
    if node_fits_now(node_id, request, cluster):
        return node_id
    if strategy.get("soft", False):
        return policy.select_default(request, cluster)
    return None


#: Strategy type -> handler. Add ``"placement_group"`` here when placement
#: groups land; policies need no change.
STRATEGY_HANDLERS: dict[str, StrategyHandler] = {
    "default": _default,
    "spread": _spread,
    "node_affinity": _node_affinity,
}


class StrategyAwarePolicy:
    """Base of the shipped policies: dispatches the request's strategy.

    Subclasses set ``name`` and implement ``select_default``; ``select_node``
    (the ``SchedulingPolicy`` protocol method) handles the strategies above
    first. Each instance keeps its own ``RoundRobin`` cursor for ``"SPREAD"``.
    """

    name: str = ""

    def __init__(self) -> None:
        self.spread = RoundRobin()

    def select_node(self, request: SchedulingRequest, cluster: ClusterView) -> str | None:
        """Return an alive node where ``request`` fits now, or None."""
        strategy = normalize_strategy(request.strategy)
        handler = STRATEGY_HANDLERS.get(strategy["type"])
        if handler is None:
            known = ", ".join(sorted(STRATEGY_HANDLERS))
            raise ValueError(
                f"unsupported scheduling strategy type {strategy['type']!r}; "
                f"{self.name or type(self).__name__} supports: {known}"
            )
        return handler(self, request, cluster, strategy)

    def select_default(self, request: SchedulingRequest, cluster: ClusterView) -> str | None:
        """The policy's own choice for a ``"DEFAULT"`` request."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
