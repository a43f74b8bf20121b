"""Lineage reconstruction on real nodes: an object whose only copy was in the store of a
node that died (SIGKILL of its process group) is rebuilt by running the task that made it
again, its lost arguments first; an object that cannot be rebuilt fails with an error that
names it and says why; a put object of a live owner is never lost to a dead node."""

from __future__ import annotations

import os

import numpy as np
import pytest

import microray as ray
from microray.exceptions import ObjectReconstructionFailedMaxAttemptsExceededError
from microray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .isolation import ISOLATIONS

MB = 1_000_000
DEADLINE = 90


def _count(marker_dir: str, name: str) -> None:
    with open(os.path.join(marker_dir, f"{name}-{os.getpid()}-{os.urandom(4).hex()}"), "w") as f:
        f.write(ray.get_runtime_context().get_node_id())


def _runs(marker_dir, name: str) -> list[str]:
    return sorted(p.read_text() for p in marker_dir.glob(f"{name}-*"))


@ray.remote(num_cpus=1)
def produce(marker_dir: str, nbytes: int, fill: int):
    _count(marker_dir, "produce")
    return np.full(nbytes, fill, dtype=np.uint8)


@ray.remote(num_cpus=1)
def plus_one(marker_dir: str, arr):
    _count(marker_dir, "plus_one")
    return arr + 1


@ray.remote(num_cpus=1)
def checksum(arr) -> tuple[int, int, str]:
    return int(arr.sum(dtype=np.uint64)), int(arr.size), ray.get_runtime_context().get_node_id()


def _on(node, soft: bool = True) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node.node_id, soft=soft)


def _two_workers(make_cluster, isolation=None):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 0}, isolation=isolation)
    a = cluster.add_node(num_cpus=1)
    b = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    cluster.connect()
    return cluster, a, b


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_chain_lost_with_its_node_is_rebuilt_recursively(make_cluster, tmp_path, isolation):
    cluster, a, b = _two_workers(make_cluster, isolation)
    n = 4 * MB
    x = produce.options(scheduling_strategy=_on(a)).remote(str(tmp_path), n, 5)
    y = plus_one.options(scheduling_strategy=_on(a)).remote(str(tmp_path), x)
    del x  # only y is held: x's value may go, its lineage stays (y may need it)
    ready, _ = ray.wait([y], timeout=DEADLINE)
    assert ready
    assert _runs(tmp_path, "produce") == [a.node_id] and _runs(tmp_path, "plus_one") == [a.node_id]

    cluster.remove_node(a, allow_graceful=False)  # y's only copy (and x's) die with a
    total, size, _ = ray.get(checksum.remote(y), timeout=DEADLINE)
    assert (total, size) == (6 * n, n)
    # both tasks ran again, on the node left: x first (y's argument), then y
    assert _runs(tmp_path, "produce") == sorted([a.node_id, b.node_id])
    assert _runs(tmp_path, "plus_one") == sorted([a.node_id, b.node_id])
    arr = ray.get(y, timeout=DEADLINE)
    assert arr.shape == (n,) and int(arr[0]) == 6 and int(arr[-1]) == 6


def test_a_lost_object_whose_task_may_not_run_again_fails_naming_it_and_why(make_cluster, tmp_path):
    cluster, a, b = _two_workers(make_cluster)
    x = produce.options(scheduling_strategy=_on(a), max_retries=0).remote(str(tmp_path), 2 * MB, 1)
    ray.wait([x], timeout=DEADLINE)
    cluster.remove_node(a, allow_graceful=False)
    with pytest.raises(ObjectReconstructionFailedMaxAttemptsExceededError) as info:
        ray.get(x, timeout=DEADLINE)
    message = str(info.value)
    assert x.hex() in message and a.node_id in message and "died" in message, message
    assert "max_retries=0" in message, message
    assert _runs(tmp_path, "produce") == [a.node_id]  # not run again


def test_a_put_object_of_a_live_owner_survives_the_death_of_a_node_that_read_it(make_cluster):
    cluster, a, b = _two_workers(make_cluster)
    n = 3 * MB
    ref = ray.put(np.full(n, 9, dtype=np.uint8))
    assert ray.get(checksum.options(scheduling_strategy=_on(a, soft=False)).remote(ref),
                   timeout=DEADLINE)[2] == a.node_id  # a pulled a copy
    cluster.remove_node(a, allow_graceful=False)
    total, size, where = ray.get(checksum.options(scheduling_strategy=_on(b, soft=False)).remote(ref),
                                 timeout=DEADLINE)
    assert (total, size, where) == (9 * n, n, b.node_id)
    assert int(ray.get(ref, timeout=DEADLINE)[0]) == 9
