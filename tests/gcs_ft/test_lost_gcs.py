"""A GCS that loses the cluster's state (gcs_store="memory") or never comes back: drivers
get a clear error naming the cause within a bounded time, never a hang."""

from __future__ import annotations

import os
import time

import pytest

import common_actors
import microray as ray
from microray import node
from microray.exceptions import GcsUnavailableError, GetTimeoutError, RaySystemError
from microray.util.state import list_nodes

from .helpers import kill9, wait_for

pytestmark = pytest.mark.slow


@ray.remote
def long_task(marker: str) -> str:
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)
    return "finished"


Counter = ray.remote(common_actors.Counter)


def _running_long_task(tmp_path) -> ray.ObjectRef:
    """A task that is running (not just queued) on a worker."""
    marker = str(tmp_path / f"running-{os.urandom(4).hex()}")
    ref = long_task.remote(marker)
    wait_for(lambda: os.path.exists(marker), timeout=60, what="the long task to start")
    return ref


def test_memory_store_restart_fails_drivers_with_a_clear_error(make_cluster, tmp_path):
    node_id = make_cluster(gcs_store="memory", namespace="mem").node_id
    head = ray.api._head
    counter = Counter.options(name="counter").remote()
    assert ray.get(counter.incr.remote(), timeout=60) == 1
    pending = _running_long_task(tmp_path)

    kill9(head.pids["gcs"])
    node.restart_gcs(head)  # an empty GCS: the memory store kept nothing
    restarted = time.monotonic()

    # the very first GCS call after the restart: not "no such actor", but the real cause
    with pytest.raises(RaySystemError) as info:
        ray.get_actor("counter")
    message = str(info.value)
    assert "memory" in message and "restarted without the cluster's state" in message, message
    assert time.monotonic() - restarted < 30

    # work that was in flight fails with the same error instead of waiting for ever
    with pytest.raises(RaySystemError) as info:
        ray.get(pending, timeout=30)
    assert not isinstance(info.value, GetTimeoutError)
    assert "memory" in str(info.value), str(info.value)
    assert time.monotonic() - restarted < 30

    # the raylet re-registers its node with the empty GCS (a fresh cluster on the same node)
    wait_for(lambda: [(n["node_id"], n["state"]) for n in list_nodes()] == [(node_id, "ALIVE")], timeout=30,
             what="the node to re-register with the new GCS")

    # and every later call that needs the GCS says so too, at once
    t0 = time.monotonic()
    with pytest.raises(RaySystemError, match="memory"):
        ray.nodes()
    with pytest.raises(RaySystemError, match="memory"):
        Counter.options(name="another").remote()
    assert time.monotonic() - t0 < 5


def test_gcs_that_stays_away_raises_gcs_unavailable_naming_the_address(make_cluster, tmp_path):
    worker = make_cluster(gcs_store="memory", gcs_rpc_timeout_s=3, namespace="gone")
    head = ray.api._head
    address = worker.gcs_address
    Counter.options(name="counter").remote()
    pending = _running_long_task(tmp_path)

    kill9(head.pids["gcs"])
    killed = time.monotonic()

    t0 = time.monotonic()
    with pytest.raises(GcsUnavailableError) as info:
        ray.get_actor("counter")
    elapsed = time.monotonic() - t0
    assert address in str(info.value), str(info.value)
    assert elapsed < 3 + 7, f"get_actor took {elapsed:.1f}s with gcs_rpc_timeout_s=3"

    # the in-flight task's result can never be confirmed by the cluster: the driver's GCS
    # monitor gives up after gcs_rpc_timeout_s and fails it with the same kind of error
    with pytest.raises(GcsUnavailableError) as info:
        ray.get(pending, timeout=30)
    assert address in str(info.value) and "gcs_rpc_timeout_s=3" in str(info.value), str(info.value)
    assert time.monotonic() - killed < 3 + 12

    with pytest.raises(GcsUnavailableError):
        ray.nodes()


@ray.remote
def task_seeing_an_unreachable_gcs():
    # what a task's get_actor()/function load raises when the GCS stays away
    raise GcsUnavailableError("the GCS at 10.0.0.1:6379 did not answer within 2s")


def test_a_gcs_error_inside_a_task_reaches_the_driver_as_that_error(make_cluster):
    make_cluster(namespace="inside")
    with pytest.raises(GcsUnavailableError) as info:
        ray.get(task_seeing_an_unreachable_gcs.remote(), timeout=60)
    assert "10.0.0.1:6379" in str(info.value)
