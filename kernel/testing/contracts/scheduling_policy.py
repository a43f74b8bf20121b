"""The contract every ``SchedulingPolicy`` must pass.

Subclass ``SchedulingPolicyContract`` and provide a ``policy`` fixture that
returns a fresh policy; optionally override ``capabilities`` with the
registration's capabilities so the tests that only apply to some policies
(``deterministic``) run::

    import pytest
    from microray.testing.contracts import SchedulingPolicyContract

    class TestMyPolicy(SchedulingPolicyContract):
        @pytest.fixture
        def policy(self):
            return MyPolicy()

The checks are property-style: each runs a policy over a few hundred random
clusters and requests drawn from ``random.Random(seed)`` (no hypothesis
dependency), so a failure names the seed and can be replayed with
``random_cluster(random.Random(seed))``.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from microray.interfaces.scheduling import (
    ClusterView,
    NodeView,
    SchedulingPolicy,
    SchedulingRequest,
)

__all__ = [
    "SchedulingPolicyContract",
    "make_cluster",
    "random_cluster",
    "random_request",
]

#: Resource names the generators draw from (Ray's predefined ones plus a custom one).
RESOURCES: tuple[str, ...] = ("CPU", "GPU", "memory", "object_store_memory", "accel")
_AMOUNTS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
_DEMANDS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 8.0)
#: How many random cases each property check runs.
CASES = 300
UNKNOWN_NODE = "node-unknown"


def make_cluster(
    nodes: Mapping[str, Mapping[str, Any]] | list[NodeView], local_node_id: str | None = None
) -> ClusterView:
    """Build a ``ClusterView`` from ``NodeView``s or ``{node_id: {"total": ..., ...}}``.

    A node given as a dict takes ``total``, ``available`` (default: ``total``),
    ``alive`` (default True) and ``labels``. ``local_node_id`` defaults to the
    first node.
    """
    views: list[NodeView]
    if isinstance(nodes, Mapping):
        views = [
            NodeView(
                node_id=node_id,
                total=dict(spec.get("total", {})),
                available=dict(spec.get("available", spec.get("total", {}))),
                alive=spec.get("alive", True),
                labels=dict(spec.get("labels", {})),
            )
            for node_id, spec in nodes.items()
        ]
    else:
        views = list(nodes)
    by_id = {view.node_id: view for view in views}
    if local_node_id is None:
        local_node_id = views[0].node_id if views else UNKNOWN_NODE
    return ClusterView(nodes=by_id, local_node_id=local_node_id)


def _random_node(rng: random.Random, node_id: str) -> NodeView:
    total: dict[str, float] = {}
    available: dict[str, float] = {}
    for name in RESOURCES:
        if rng.random() < (0.9 if name == "CPU" else 0.4):
            amount = rng.choice(_AMOUNTS)
            total[name] = amount
            available[name] = rng.choice((0.0, amount, amount / 2, round(rng.uniform(0, amount), 2)))
    return NodeView(node_id=node_id, total=total, available=available, alive=rng.random() < 0.8)


def random_cluster(rng: random.Random, max_nodes: int = 12) -> ClusterView:
    """A random cluster: 0..max_nodes nodes, some dead, mixed resources.

    The node mapping is built in a random order and the local node is
    sometimes dead or not in the view at all.
    """
    count = rng.randint(0, max_nodes)
    ids = [f"node-{rng.randrange(16**6):06x}-{i}" for i in range(count)]
    rng.shuffle(ids)
    nodes = {node_id: _random_node(rng, node_id) for node_id in ids}
    local = rng.choice(ids + [UNKNOWN_NODE]) if ids else UNKNOWN_NODE
    return ClusterView(nodes=nodes, local_node_id=local)


def random_request(rng: random.Random, strategy: Any = "DEFAULT") -> SchedulingRequest:
    """A random resource shape (possibly empty or all zeros) with ``strategy``."""
    demand = {name: rng.choice(_DEMANDS) for name in RESOURCES if rng.random() < 0.4}
    return SchedulingRequest(resources=demand, strategy=strategy, task_name="contract")


def _cases(seed: int, strategy: Any = "DEFAULT") -> Iterator[tuple[int, ClusterView, SchedulingRequest]]:
    for case in range(CASES):
        rng = random.Random(seed * 100_003 + case)
        cluster = random_cluster(rng)
        yield case, cluster, random_request(rng, strategy)


def _fitting(cluster: ClusterView, request: SchedulingRequest) -> list[str]:
    return sorted(
        node.node_id
        for node in cluster.nodes.values()
        if node.alive and node.fits(request.resources)
    )


def _assert_valid(result: Any, cluster: ClusterView, request: SchedulingRequest, where: str) -> None:
    """``result`` is None or an alive node of ``cluster`` where ``request`` fits."""
    if result is None:
        return
    assert isinstance(result, str), f"{where}: returned {result!r}, expected a node id or None"
    node = cluster.nodes.get(result)
    assert node is not None, f"{where}: returned unknown node {result!r}"
    assert node.alive, f"{where}: returned dead node {result!r}"
    assert node.fits(request.resources), (
        f"{where}: returned {result!r} where {dict(request.resources)} does not fit "
        f"(available {dict(node.available)})"
    )


def _affinity(node_id: str, soft: bool) -> dict[str, Any]:
    return {"type": "node_affinity", "node_id": node_id, "soft": soft}


class SchedulingPolicyContract:
    """Behaviour every scheduling policy guarantees. Subclass and provide ``policy``."""

    @pytest.fixture
    def policy(self) -> SchedulingPolicy:
        """A fresh policy instance. Subclasses must override this fixture."""
        raise NotImplementedError("provide a `policy` fixture returning a fresh SchedulingPolicy")

    @pytest.fixture
    def capabilities(self) -> frozenset[str]:
        """The policy registration's capabilities; override to enable optional checks."""
        return frozenset()

    # -- shape -----------------------------------------------------------
    def test_is_a_scheduling_policy(self, policy: SchedulingPolicy) -> None:
        assert isinstance(policy, SchedulingPolicy)
        assert isinstance(policy.name, str) and policy.name

    # -- safety ----------------------------------------------------------
    def test_only_returns_alive_nodes_where_request_fits(self, policy: SchedulingPolicy) -> None:
        for case, cluster, request in _cases(seed=1):
            result = policy.select_node(request, cluster)
            _assert_valid(result, cluster, request, f"case {case} (seed 1)")

    def test_never_returns_a_dead_node(self, policy: SchedulingPolicy) -> None:
        # The dead nodes are the biggest and emptiest, and the local one is dead.
        cluster = make_cluster(
            {
                "node-a": {"total": {"CPU": 64}, "alive": False},
                "node-b": {"total": {"CPU": 2}, "available": {"CPU": 1}},
                "node-c": {"total": {"CPU": 64}, "alive": False},
            },
            local_node_id="node-a",
        )
        for _ in range(20):
            assert policy.select_node(SchedulingRequest({"CPU": 1}), cluster) == "node-b"
            assert policy.select_node(SchedulingRequest({"CPU": 2}), cluster) is None

    def test_none_when_nothing_fits(self, policy: SchedulingPolicy) -> None:
        assert policy.select_node(SchedulingRequest({"CPU": 1}), make_cluster({})) is None
        cluster = make_cluster(
            {
                "node-a": {"total": {"CPU": 4}, "available": {"CPU": 0.5}},
                "node-b": {"total": {"CPU": 4, "GPU": 1}, "available": {"CPU": 4, "GPU": 0}},
                "node-c": {"total": {"CPU": 16, "GPU": 4}, "alive": False},
            }
        )
        assert policy.select_node(SchedulingRequest({"CPU": 1, "GPU": 1}), cluster) is None
        assert policy.select_node(SchedulingRequest({"CPU": 5}), cluster) is None
        assert policy.select_node(SchedulingRequest({"custom": 1}), cluster) is None
        for case, cluster, request in _cases(seed=2):
            if not _fitting(cluster, request):
                assert policy.select_node(request, cluster) is None, f"case {case} (seed 2)"

    def test_does_not_mutate_its_inputs(self, policy: SchedulingPolicy) -> None:
        for case, cluster, request in _cases(seed=3):
            before = copy.deepcopy((cluster, request))
            policy.select_node(request, cluster)
            assert (cluster, request) == before, f"case {case} (seed 3): inputs were mutated"

    # -- liveness --------------------------------------------------------
    def test_returns_a_node_when_one_fits(self, policy: SchedulingPolicy) -> None:
        for strategy in ("DEFAULT", "SPREAD"):
            for case, cluster, request in _cases(seed=4, strategy=strategy):
                result = policy.select_node(request, cluster)
                where = f"case {case} (seed 4, {strategy})"
                if _fitting(cluster, request):
                    assert result is not None, f"{where}: a node fits but the policy said None"
                _assert_valid(result, cluster, request, where)

    def test_zero_resource_request_goes_to_any_alive_node(self, policy: SchedulingPolicy) -> None:
        cluster = make_cluster(
            {
                "node-a": {"total": {"CPU": 4}, "available": {"CPU": 0}},
                "node-b": {"total": {}, "available": {}},
                "node-c": {"total": {"CPU": 4}, "alive": False},
            },
            local_node_id="node-c",
        )
        for demand in ({}, {"CPU": 0}, {"CPU": 0, "GPU": 0}):
            for _ in range(10):
                assert policy.select_node(SchedulingRequest(demand), cluster) in {"node-a", "node-b"}
        for target in ("node-a", "node-b"):
            strategy = _affinity(target, soft=False)
            assert policy.select_node(SchedulingRequest({}, strategy), cluster) == target
        assert policy.select_node(SchedulingRequest({}, _affinity("node-c", soft=False)), cluster) is None

    # -- node affinity ---------------------------------------------------
    def test_hard_node_affinity_only_that_node(self, policy: SchedulingPolicy) -> None:
        for case in range(CASES):
            rng = random.Random(500_000 + case)
            cluster = random_cluster(rng)
            target = rng.choice(sorted(cluster.nodes) + [UNKNOWN_NODE])
            request = random_request(rng, _affinity(target, soft=False))
            result = policy.select_node(request, cluster)
            node = cluster.nodes.get(target)
            expected = target if node is not None and node.alive and node.fits(request.resources) else None
            assert result == expected, f"case {case} (seed 5): hard affinity to {target!r} gave {result!r}"

    def test_hard_node_affinity_dead_or_unknown_node_is_none(self, policy: SchedulingPolicy) -> None:
        cluster = make_cluster(
            {
                "node-a": {"total": {"CPU": 8}},
                "node-dead": {"total": {"CPU": 8}, "alive": False},
            }
        )
        for target in ("node-dead", "node-missing"):
            request = SchedulingRequest({"CPU": 1}, _affinity(target, soft=False))
            assert policy.select_node(request, cluster) is None
        busy = SchedulingRequest({"CPU": 9}, _affinity("node-a", soft=False))
        assert policy.select_node(busy, cluster) is None

    def test_soft_node_affinity_prefers_the_node_then_falls_back(self, policy: SchedulingPolicy) -> None:
        cluster = make_cluster(
            {
                "node-a": {"total": {"CPU": 8}},
                "node-b": {"total": {"CPU": 8}, "available": {"CPU": 1}},
                "node-dead": {"total": {"CPU": 8}, "alive": False},
            }
        )
        # The preferred node is the busier one: still chosen while the request fits.
        for _ in range(10):
            assert policy.select_node(SchedulingRequest({"CPU": 1}, _affinity("node-b", True)), cluster) == "node-b"
        # Does not fit there, dead, unknown: another node where it fits (only node-a).
        for target in ("node-b", "node-dead", "node-missing"):
            request = SchedulingRequest({"CPU": 2}, _affinity(target, soft=True))
            assert policy.select_node(request, cluster) == "node-a"
        # Nowhere fits: None.
        request = SchedulingRequest({"CPU": 9}, _affinity("node-a", soft=True))
        assert policy.select_node(request, cluster) is None

    def test_soft_node_affinity_random_clusters(self, policy: SchedulingPolicy) -> None:
        for case in range(CASES):
            rng = random.Random(600_000 + case)
            cluster = random_cluster(rng)
            target = rng.choice(sorted(cluster.nodes) + [UNKNOWN_NODE])
            request = random_request(rng, _affinity(target, soft=True))
            result = policy.select_node(request, cluster)
            where = f"case {case} (seed 6): soft affinity to {target!r}"
            _assert_valid(result, cluster, request, where)
            fitting = _fitting(cluster, request)
            if target in fitting:
                assert result == target, f"{where} gave {result!r}, but {target!r} fits"
            elif fitting:
                assert result is not None, f"{where} gave None though {fitting} fit"
            else:
                assert result is None, f"{where} gave {result!r} though nothing fits"

    # -- determinism (capability "deterministic") -------------------------
    def test_deterministic_for_the_same_inputs(
        self, policy: SchedulingPolicy, capabilities: frozenset[str]
    ) -> None:
        if "deterministic" not in capabilities:
            pytest.skip("the policy does not declare the 'deterministic' capability")
        for case, cluster, request in _cases(seed=7):
            first = policy.select_node(request, cluster)
            again = policy.select_node(request, cluster)
            reordered = ClusterView(
                nodes=dict(reversed(list(cluster.nodes.items()))),
                local_node_id=cluster.local_node_id,
            )
            shuffled = policy.select_node(request, reordered)
            assert first == again == shuffled, (
                f"case {case} (seed 7): {first!r}, then {again!r}, then {shuffled!r} "
                "with the node mapping in another order"
            )
