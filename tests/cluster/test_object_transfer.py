"""Objects moving between nodes through the object manager: real nodes on this machine
(``Cluster``), each with its own store namespace, so every byte a node reads of another
node's object came through a pull, which the raylets count (``GetTransferStats``)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import microray as ray
from microray.testing.processes import wait_for

from microray.testing.object_transfer import node_stats, transfer_stats

from .isolation import ISOLATIONS

MB = 1_000_000


@ray.remote(num_cpus=0)
def make_array(nbytes: int, fill: int = 7):
    return np.full(nbytes, fill, dtype=np.uint8)


def describe_array(arr):
    """Where ``arr`` lives in this process: its mapping, as the store contract tests read
    it, and whether it is read-only; plus a checksum of every byte."""
    from microray.testing.contracts.object_store_support import mapping_of

    mapping = mapping_of(arr.__array_interface__["data"][0])
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "path": mapping.path if mapping else "",
        "shared": bool(mapping and mapping.perms.endswith("s")),
        "writeable": bool(arr.flags.writeable),
        "sum": int(arr.sum(dtype=np.uint64)),
        "size": int(arr.size),
    }


@ray.remote(num_cpus=0)
def inspect(arr):
    return describe_array(arr)


@ray.remote(num_cpus=1)
def inspect_one_cpu(arr):
    return describe_array(arr)


def three_nodes(make_cluster, src_store: str = "shm", dst_store: str = "shm", src_args=None, dst_args=None,
                isolation=None):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1}, isolation=isolation)
    b = cluster.add_node(num_cpus=1, resources={"b": 10}, object_store=src_store, **(src_args or {}))
    c = cluster.add_node(num_cpus=2, resources={"c": 10}, object_store=dst_store, **(dst_args or {}))
    cluster.wait_for_nodes()
    cluster.connect()
    return cluster, b, c


def object_size(nbytes: int, stats) -> bool:
    """A pulled object is the array plus a small header and pickle."""
    return nbytes <= stats <= nbytes + 64 * 1024


def store_used(node) -> int:
    return node_stats(node).node.object_store_used


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("data_path", [True, False], ids=["data-path", "grpc-stream"])
def test_array_made_on_b_is_read_zero_copy_on_c_after_one_pull(make_cluster, data_path, isolation):
    # the bytes over the raylets' data path, or inside the Pull gRPC stream
    both = {"object_transfer_data_path": data_path}
    cluster, b, c = three_nodes(make_cluster, src_args=both, dst_args=both, isolation=isolation)
    n = 80 * MB
    ref = make_array.options(resources={"b": 1}).remote(n)
    ray.wait([ref])
    out = ray.get(inspect.options(resources={"c": 1}).remote(ref))
    assert out["node_id"] == c.node_id
    assert out["sum"] == 7 * n and out["size"] == n
    assert not out["writeable"], "a view of the store must be read-only"
    # zero copy: the array's memory is a shared mapping of C's own store
    assert out["shared"] and c.store_namespace in out["path"], out
    if isolation:  # C's store is in C's own /dev/shm: the host (and B) never saw it
        assert not [e for e in os.listdir("/dev/shm") if c.store_namespace in e or b.store_namespace in e]
    sb, sc, sh = transfer_stats(b), transfer_stats(c), transfer_stats(cluster.head_node)
    assert (sc.pulls_completed, sb.pulls_served, sh.pulls_served, sh.pulls_completed) == (1, 1, 0, 0)
    assert object_size(n, sc.bytes_pulled) and sb.bytes_served == sc.bytes_pulled
    assert sc.chunks_pulled == sb.chunks_served >= 2  # in chunks, not one message
    assert (sc.secondary_copies, sc.secondary_bytes) == (1, sc.bytes_pulled)

    # a second read on C maps the same copy: no second pull
    assert ray.get(inspect.options(resources={"c": 1}).remote(ref))["sum"] == 7 * n
    assert transfer_stats(c).pulls_completed == 1

    # the owner frees it: the primary on B and the secondary copy on C go
    before_b, before_c = store_used(b), store_used(c)
    assert before_b >= n and before_c >= n
    del ref
    wait_for(lambda: transfer_stats(c).secondary_copies == 0, timeout=20, what="C's copy to be freed")
    assert transfer_stats(c).secondary_freed == 1
    wait_for(lambda: store_used(c) <= before_c - n and store_used(b) <= before_b - n, timeout=20,
             what="both nodes' stores to let go of the object")


@pytest.mark.parametrize("src_store,dst_store", [("lmdb", "shm"), ("shm", "lmdb")])
def test_both_backends_as_source_and_destination(make_cluster, src_store, dst_store):
    cluster, b, c = three_nodes(make_cluster, src_store, dst_store)
    n = 30 * MB
    ref = make_array.options(resources={"b": 1}).remote(n, 3)
    out = ray.get(inspect.options(resources={"c": 1}).remote(ref))
    assert out["sum"] == 3 * n and not out["writeable"]
    assert out["shared"] and c.store_namespace in out["path"], out
    sc = transfer_stats(c)
    assert sc.pulls_completed == 1 and object_size(n, sc.bytes_pulled)
    assert transfer_stats(b).bytes_served == sc.bytes_pulled
    del ref
    wait_for(lambda: transfer_stats(c).secondary_copies == 0, timeout=20, what="C's copy to be freed")


def test_two_tasks_on_one_node_pull_one_object_once(make_cluster):
    cluster, b, c = three_nodes(make_cluster)
    n = 40 * MB
    ref = make_array.options(resources={"b": 1}).remote(n)
    ray.wait([ref])
    # two tasks on C (2 CPUs, one each) need the same argument
    outs = ray.get([inspect_one_cpu.options(resources={"c": 1}).remote(ref) for _ in range(2)])
    assert [o["sum"] for o in outs] == [7 * n, 7 * n]
    assert {o["node_id"] for o in outs} == {c.node_id}
    sc, sb = transfer_stats(c), transfer_stats(b)
    assert sc.pulls_completed == 1 and sb.pulls_served == 1 and object_size(n, sc.bytes_pulled)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_driver_gets_an_object_made_on_another_node(make_cluster, isolation):
    cluster, b, c = three_nodes(make_cluster, isolation=isolation)
    from microray.testing.contracts.object_store_support import mapping_of

    n = 30 * MB
    ref = make_array.options(resources={"b": 1}).remote(n, 5)
    arr = ray.get(ref)
    assert int(arr.sum(dtype=np.uint64)) == 5 * n and not arr.flags.writeable
    mapping = mapping_of(arr.__array_interface__["data"][0])
    assert mapping is not None and cluster.head_node.store_namespace in mapping.path, mapping
    sh = transfer_stats(cluster.head_node)
    assert sh.pulls_completed == 1 and object_size(n, sh.bytes_pulled)
    assert transfer_stats(b).pulls_served == 1


def test_small_objects_travel_inline_not_through_the_object_manager(make_cluster):
    cluster, b, c = three_nodes(make_cluster)
    ref = make_array.options(resources={"b": 1}).remote(1000)
    assert ray.get(inspect.options(resources={"c": 1}).remote(ref))["sum"] == 7000
    assert ray.get(ref).sum() == 7000
    assert all(transfer_stats(node).pulls_served == 0 for node in (b, c, cluster.head_node))


def test_holder_killed_mid_transfer_the_pull_finishes_from_another_holder(make_cluster):
    # B sends slowly (a pause before each chunk) and C asks for small chunks: C's pull
    # from B takes 40 chunks x 0.25 s, time enough to kill B in the middle of it
    cluster, b, c = three_nodes(make_cluster, src_args={"testing_object_chunk_delay_s": 0.25},
                                dst_args={"object_transfer_chunk_bytes": 1024 * 1024})
    d = cluster.add_node(num_cpus=1, resources={"d": 10})
    cluster.wait_for_nodes()
    n = 40 * MB
    ref = make_array.options(resources={"b": 1}).remote(n, 9)
    assert ray.get(inspect.options(resources={"d": 1}).remote(ref))["sum"] == 9 * n  # D holds a copy too
    assert transfer_stats(d).pulls_completed == 1

    task = inspect.options(resources={"c": 1}).remote(ref)  # C pulls from B, the first location
    wait_for(lambda: transfer_stats(c).chunks_pulled >= 1, timeout=60, what="C to start pulling from B")
    early = transfer_stats(c)
    assert early.pulls_completed == 0, f"the pull from B ended before B could be killed: {early}"
    cluster.remove_node(b, allow_graceful=False)
    out = ray.get(task, timeout=120)
    assert out["sum"] == 9 * n and out["node_id"] == c.node_id
    sc, sd = transfer_stats(c), transfer_stats(d)
    assert sc.source_failures == 1 and sc.pulls_completed == 1, (sc, sd)
    assert sd.pulls_served == 1, (sc, sd)


def test_an_object_whose_only_holder_is_gone_is_lost_with_its_id_and_why(make_cluster):
    cluster, b, c = three_nodes(make_cluster)
    # max_retries=0: its task may not run again to rebuild it (docs/cluster.md)
    ref = make_array.options(resources={"b": 1}, max_retries=0).remote(20 * MB)
    ray.wait([ref])
    cluster.remove_node(b, allow_graceful=False)
    with pytest.raises(ray.exceptions.ObjectLostError) as info:
        ray.get(inspect.options(resources={"c": 1}).remote(ref), timeout=120)
    text = str(info.value)
    assert ref.hex() in text and b.node_id in text, text


def test_pulled_copies_are_evicted_oldest_first_to_make_room(make_cluster):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    b = cluster.add_node(num_cpus=1, resources={"b": 10})
    c = cluster.add_node(num_cpus=1, resources={"c": 10}, object_store_memory=100 * MB)
    cluster.wait_for_nodes()
    cluster.connect()
    n = 45 * MB
    x = make_array.options(resources={"b": 1}).remote(n, 1)
    y = make_array.options(resources={"b": 1}).remote(n, 2)
    assert ray.get(inspect.options(resources={"c": 1}).remote(x))["sum"] == n
    # 45 MB held; 45 more would pass 80 MB (80% of 100 MB): the copy of x goes first
    assert ray.get(inspect.options(resources={"c": 1}).remote(y))["sum"] == 2 * n
    sc = transfer_stats(c)
    assert (sc.pulls_completed, sc.secondary_evicted, sc.secondary_copies) == (2, 1, 1)
    # x is still the owner's: reading it on C pulls it again (and evicts y)
    assert ray.get(inspect.options(resources={"c": 1}).remote(x))["sum"] == n
    assert transfer_stats(c).pulls_completed == 3
