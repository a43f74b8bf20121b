"""Specific behaviour of the built-in policies (the contract covers the shared rules)."""

from __future__ import annotations

import random
import time

import pytest

from microray.exceptions import ConfigError
from microray.interfaces.scheduling import ClusterView, NodeView, SchedulingRequest
from microray.plugins.scheduling.hybrid import HybridPolicy, critical_utilization
from microray.plugins.scheduling.random import RandomPolicy
from microray.plugins.scheduling.spread import SpreadPolicy
from microray.plugins.scheduling.strategies import STRATEGY_HANDLERS, normalize_strategy
from microray.testing.contracts.scheduling_policy import make_cluster, random_cluster, random_request

CPU1 = SchedulingRequest({"CPU": 1})


def cpu_nodes(used: dict[str, float], total: float = 4.0, local: str | None = None) -> ClusterView:
    """Nodes with ``total`` CPUs of which ``used[node]`` are busy."""
    return make_cluster(
        {node: {"total": {"CPU": total}, "available": {"CPU": total - u}} for node, u in used.items()},
        local_node_id=local,
    )


def place(policy: HybridPolicy | SpreadPolicy, used: dict[str, float], local: str, count: int,
          total: float = 4.0) -> list[str]:
    """Place ``count`` one-CPU tasks one after another, updating the cluster each time."""
    used = dict(used)
    chosen = []
    for _ in range(count):
        node = policy.select_node(CPU1, cpu_nodes(used, total, local))
        assert node is not None
        used[node] += 1
        chosen.append(node)
    return chosen


# -- hybrid ------------------------------------------------------------------


def test_hybrid_packs_on_the_local_node_below_the_threshold() -> None:
    # local is node-c, not the first in id order: locality beats id order.
    chosen = place(HybridPolicy(), {"node-a": 0, "node-b": 0, "node-c": 0}, local="node-c", count=3)
    # 0/4, 1/4 are below 50%; at 2/4 = 50% the local node is no longer idle.
    assert chosen == ["node-c", "node-c", "node-a"]


def test_hybrid_prefers_local_over_an_emptier_remote_node_below_threshold() -> None:
    cluster = cpu_nodes({"node-a": 0, "node-b": 1.5}, local="node-b")  # 37.5% on local
    assert HybridPolicy().select_node(CPU1, cluster) == "node-b"


def test_hybrid_spreads_once_the_local_node_is_above_the_threshold() -> None:
    chosen = place(HybridPolicy(), {"node-a": 0, "node-b": 0, "node-c": 0}, local="node-a", count=8)
    # node-a packs to 2/4, then node-b (first idle in id order) to 2/4, then
    # node-c; with everything at 50%+ the least utilized node wins (ties: id order).
    assert chosen == ["node-a", "node-a", "node-b", "node-b", "node-c", "node-c", "node-a", "node-b"]


def test_hybrid_above_threshold_picks_the_least_utilized_node() -> None:
    cluster = cpu_nodes({"node-a": 3, "node-b": 2.5, "node-c": 3.5}, local="node-a")
    assert HybridPolicy().select_node(CPU1, cluster) == "node-b"


def test_hybrid_keeps_the_local_node_when_it_is_tied_for_least_utilized() -> None:
    cluster = cpu_nodes({"node-a": 3, "node-b": 3, "node-c": 3}, local="node-c")
    assert HybridPolicy().select_node(CPU1, cluster) == "node-c"


def test_hybrid_spills_from_a_full_local_node_to_the_first_idle_node_in_id_order() -> None:
    cluster = make_cluster(
        {
            "node-b": {"total": {"CPU": 4}, "available": {"CPU": 4}},  # 0%: idle
            "node-a": {"total": {"CPU": 4}, "available": {"CPU": 3}},  # 25%: idle too
            "node-local": {"total": {"CPU": 4}, "available": {"CPU": 0}},
        },
        local_node_id="node-local",
    )
    # Both remotes are under the threshold, so they tie at 0: first in id order
    # wins (packing), not the emptier node-b.
    assert HybridPolicy().select_node(CPU1, cluster) == "node-a"
    # The same when the asking node is not in the view at all.
    assert HybridPolicy().select_node(CPU1, ClusterView(cluster.nodes, "node-gone")) == "node-a"


def test_hybrid_threshold_is_an_option() -> None:
    cluster = cpu_nodes({"node-a": 1, "node-b": 0}, local="node-a")  # local at 25%
    assert HybridPolicy(spread_threshold=0.5).select_node(CPU1, cluster) == "node-a"
    assert HybridPolicy(spread_threshold=0.2).select_node(CPU1, cluster) == "node-b"
    # Threshold 1.0: every node is idle, pure packing onto the local node.
    busy = cpu_nodes({"node-a": 3, "node-b": 0}, local="node-a")
    assert HybridPolicy(spread_threshold=1.0).select_node(CPU1, busy) == "node-a"


def test_hybrid_utilization_uses_critical_resources_only() -> None:
    node = NodeView(
        "n",
        total={"CPU": 4, "GPU": 2, "memory": 100, "object_store_memory": 10, "accel": 1},
        available={"CPU": 3, "GPU": 0, "memory": 40, "object_store_memory": 10, "accel": 0},
    )
    assert critical_utilization(node) == pytest.approx(0.6)  # memory; not GPU/accel (1.0)
    # GPU-only busy node still counts as idle: work packs onto the local node.
    cluster = make_cluster(
        {
            "node-a": {"total": {"CPU": 4}, "available": {"CPU": 4}},
            "node-b": {"total": {"CPU": 4, "GPU": 2}, "available": {"CPU": 4, "GPU": 0}},
        },
        local_node_id="node-b",
    )
    assert HybridPolicy(avoid_gpu_nodes=False).select_node(CPU1, cluster) == "node-b"


def test_hybrid_avoids_gpu_nodes_for_cpu_work() -> None:
    cluster = make_cluster(
        {
            "node-gpu": {"total": {"CPU": 8, "GPU": 1}},
            "node-cpu": {"total": {"CPU": 2}, "available": {"CPU": 1}},  # 50%: busy
        },
        local_node_id="node-gpu",
    )
    policy = HybridPolicy()
    assert policy.select_node(CPU1, cluster) == "node-cpu"
    assert policy.select_node(SchedulingRequest({"CPU": 2}), cluster) == "node-gpu"  # fallback
    assert policy.select_node(SchedulingRequest({"GPU": 1}), cluster) == "node-gpu"
    assert HybridPolicy(avoid_gpu_nodes=False).select_node(CPU1, cluster) == "node-gpu"


def test_hybrid_options_validated_through_the_registration() -> None:
    from microray.plugins.scheduling import microray_scheduling_policies

    registration = {r.name: r for r in microray_scheduling_policies()}["hybrid"]
    assert registration.validate_options("scheduling_policy", {"spread_threshold": 1})[
        "spread_threshold"
    ] == 1.0
    with pytest.raises(ConfigError, match=r"spread_threshold.*1\.5.*between 0\.0 and 1\.0"):
        registration.validate_options("scheduling_policy", {"spread_threshold": 1.5})
    with pytest.raises(ConfigError, match=r"unknown option 'spread_treshold'.*spread_threshold"):
        registration.validate_options("scheduling_policy", {"spread_treshold": 0.3})
    with pytest.raises(ConfigError, match="avoid_gpu_nodes"):
        registration.validate_options("scheduling_policy", {"avoid_gpu_nodes": "yes"})


def ray_hybrid_reference(policy: HybridPolicy, request: SchedulingRequest, cluster: ClusterView) -> str | None:
    """Ray's GetBestNode written out literally (top-k = 1), from ``policy.score``."""
    nodes = [n for n in cluster.nodes.values() if n.alive and n.fits(request.resources)]
    if policy.avoid_gpu_nodes and request.resources.get("GPU", 0) <= 0:
        nodes = [n for n in nodes if n.total.get("GPU", 0) <= 0] or nodes
    if not nodes:
        return None
    scored = sorted(((n.node_id, policy.score(n)) for n in nodes), key=lambda p: p[0])
    scored.sort(key=lambda p: p[1])  # stable: ties keep id order
    local = cluster.nodes.get(cluster.local_node_id)
    if local is not None and any(node_id == local.node_id for node_id, _ in scored):
        if policy.score(local) <= scored[0][1]:
            return local.node_id
    return scored[0][0]


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("avoid_gpu", [True, False])
def test_hybrid_matches_rays_algorithm_on_random_clusters(threshold: float, avoid_gpu: bool) -> None:
    policy = HybridPolicy(spread_threshold=threshold, avoid_gpu_nodes=avoid_gpu)
    for case in range(400):
        rng = random.Random(case)
        cluster, request = random_cluster(rng), random_request(rng)
        expected = ray_hybrid_reference(policy, request, cluster)
        assert policy.select_node(request, cluster) == expected, f"case {case}"


# -- spread ------------------------------------------------------------------


def test_spread_round_robins_over_fitting_nodes() -> None:
    cluster = cpu_nodes({"node-c": 0, "node-a": 0, "node-b": 4}, local="node-c")  # node-b full
    policy = SpreadPolicy()
    chosen = [policy.select_node(CPU1, cluster) for _ in range(5)]
    assert chosen == ["node-a", "node-c", "node-a", "node-c", "node-a"]


def test_spread_cursor_survives_membership_changes() -> None:
    policy = SpreadPolicy()
    assert place(policy, {"node-a": 0, "node-b": 0, "node-c": 0}, "node-a", 2, total=8) == [
        "node-a", "node-b",
    ]
    # node-b leaves, node-bb joins: the rotation continues after node-b.
    cluster = cpu_nodes({"node-a": 0, "node-bb": 0, "node-c": 0}, total=8)
    assert [policy.select_node(CPU1, cluster) for _ in range(3)] == ["node-bb", "node-c", "node-a"]


def test_spread_strategy_round_robins_under_every_policy() -> None:
    cluster = cpu_nodes({"node-a": 0, "node-b": 0, "node-c": 0}, local="node-a")
    request = SchedulingRequest({"CPU": 1}, strategy="SPREAD")
    for policy in (HybridPolicy(), SpreadPolicy(), RandomPolicy(seed=1)):
        chosen = [policy.select_node(request, cluster) for _ in range(6)]
        assert chosen == ["node-a", "node-b", "node-c"] * 2, policy
    # ... while DEFAULT on hybrid keeps packing on the idle local node.
    assert {HybridPolicy().select_node(CPU1, cluster) for _ in range(6)} == {"node-a"}


# -- random ------------------------------------------------------------------


def test_random_is_reproducible_with_a_seed_and_covers_all_fitting_nodes() -> None:
    cluster = cpu_nodes({"node-a": 0, "node-b": 0, "node-c": 0, "node-d": 4})
    first = [RandomPolicy(seed=42).select_node(CPU1, cluster) for _ in range(1)]
    runs = [[p.select_node(CPU1, cluster) for _ in range(60)] for p in (RandomPolicy(42), RandomPolicy(42))]
    assert runs[0] == runs[1]
    assert runs[0][:1] == first
    assert set(runs[0]) == {"node-a", "node-b", "node-c"}
    other = [RandomPolicy(seed=43).select_node(CPU1, cluster) for _ in range(60)]
    assert other != runs[0]


# -- strategies --------------------------------------------------------------


def test_strategy_normalization_and_errors() -> None:
    assert normalize_strategy(None) == {"type": "default"}
    assert normalize_strategy("SPREAD") == {"type": "spread"}
    assert normalize_strategy({"type": "NODE_AFFINITY", "node_id": "x"})["type"] == "node_affinity"
    with pytest.raises(ValueError, match="no 'type'"):
        normalize_strategy({"node_id": "x"})
    with pytest.raises(ValueError, match="unsupported scheduling strategy 42"):
        normalize_strategy(42)
    cluster = cpu_nodes({"node-a": 0})
    with pytest.raises(ValueError, match=r"'placement_group'.*default, node_affinity, spread"):
        HybridPolicy().select_node(SchedulingRequest({}, {"type": "placement_group"}), cluster)
    with pytest.raises(ValueError, match="needs a 'node_id'"):
        HybridPolicy().select_node(SchedulingRequest({}, {"type": "node_affinity"}), cluster)


def test_strategy_table_is_the_extension_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        STRATEGY_HANDLERS, "last", lambda policy, request, cluster, strategy: sorted(cluster.nodes)[-1]
    )
    cluster = cpu_nodes({"node-a": 0, "node-z": 0})
    assert SpreadPolicy().select_node(SchedulingRequest({}, {"type": "last"}), cluster) == "node-z"


def test_policies_are_fast_on_a_few_hundred_nodes() -> None:
    cluster = cpu_nodes({f"node-{i:03d}": i % 5 for i in range(300)}, total=8, local="node-007")
    for policy in (HybridPolicy(), SpreadPolicy(), RandomPolicy(seed=0)):
        start = time.perf_counter()
        for _ in range(50):
            assert policy.select_node(CPU1, cluster) is not None
        per_call = (time.perf_counter() - start) / 50
        assert per_call < 0.005, f"{policy!r}: {per_call * 1e6:.0f} us per decision"
