"""Node affinity on a real one-machine cluster, and the API that is refused outright."""

from __future__ import annotations

import pytest

import microray as ray
from microray.exceptions import ActorDiedError, TaskUnschedulableError
from microray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(120)

UNKNOWN_NODE = "f" * 56


@ray.remote
def where_am_i():
    return ray.get_runtime_context().get_node_id()


def test_hard_affinity_to_unknown_node_fails_naming_the_task(cluster) -> None:
    ref = where_am_i.options(scheduling_strategy=NodeAffinitySchedulingStrategy(UNKNOWN_NODE, soft=False)).remote()
    with pytest.raises(TaskUnschedulableError) as info:
        ray.get(ref, timeout=60)
    message = str(info.value)
    assert UNKNOWN_NODE in message and "where_am_i" in message and cluster.node_id in message


def test_soft_affinity_to_unknown_node_falls_back(cluster) -> None:
    strategy = NodeAffinitySchedulingStrategy(UNKNOWN_NODE, soft=True)
    assert ray.get(where_am_i.options(scheduling_strategy=strategy).remote(), timeout=60) == cluster.node_id


def test_hard_affinity_to_this_node_runs_here(cluster) -> None:
    strategy = NodeAffinitySchedulingStrategy(cluster.node_id, soft=False)
    assert ray.get(where_am_i.options(scheduling_strategy=strategy).remote(), timeout=60) == cluster.node_id


def test_hard_affinity_takes_the_node_id_object_the_runtime_context_gives(cluster) -> None:
    """``get_runtime_context().node_id`` is a NodeID, not its hex; Ray's examples pass it as is."""
    node_id = ray.get_runtime_context().node_id
    assert not isinstance(node_id, str)
    strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    assert strategy.node_id == cluster.node_id
    assert ray.get(where_am_i.options(scheduling_strategy=strategy).remote(), timeout=60) == cluster.node_id
    with pytest.raises(TypeError, match="node_id must be a node id"):
        NodeAffinitySchedulingStrategy(node_id=42)


@ray.remote
class Pinned:
    def node(self):
        return ray.get_runtime_context().get_node_id()


def test_actor_with_hard_affinity_to_unknown_node_dies_unschedulable(cluster) -> None:
    a = Pinned.options(scheduling_strategy=NodeAffinitySchedulingStrategy(UNKNOWN_NODE, soft=False)).remote()
    with pytest.raises(ActorDiedError) as info:
        ray.get(a.node.remote(), timeout=60)
    message = str(info.value)
    assert "cannot be scheduled" in message and UNKNOWN_NODE in message and "Pinned" in message


def test_actor_with_soft_affinity_to_unknown_node_runs_here(cluster) -> None:
    a = Pinned.options(scheduling_strategy=NodeAffinitySchedulingStrategy(UNKNOWN_NODE, soft=True)).remote()
    assert ray.get(a.node.remote(), timeout=60) == cluster.node_id


def test_put_with_owner_is_refused(cluster) -> None:
    with pytest.raises(ValueError, match=r"put\(_owner=...\) is not supported"):
        ray.put(1, _owner=object())
