"""Recovery from node death, on real nodes: each test SIGKILLs a worker node's whole process
group (``Cluster.remove_node(allow_graceful=False)``) and checks what the driver sees."""

from __future__ import annotations

import os
import time

import pytest

import microray as ray
from microray.exceptions import ActorDiedError, GcsUnavailableError
from microray.testing.processes import pid_alive, wait_for

from .isolation import NODE_DEATHS

# a killed node is declared dead after node_dead_after_s (4 s); deadlines are generous
DEADLINE = 60


def _wait_file(path: str, timeout: float = 60) -> str:
    wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0, timeout=timeout, what=f"{path} to appear")
    with open(path) as f:
        return f.read()


def _node_by_id(cluster, node_id: str):
    return next(n for n in cluster.list_all_nodes() if n.node_id == node_id)


@ray.remote(num_cpus=1)
def where_then_wait(marker_dir: str, go: str) -> str:
    """Write this attempt's node id, wait for ``go`` to exist, return the node id."""
    node_id = ray.get_runtime_context().get_node_id()
    path = os.path.join(marker_dir, f"attempt-{os.getpid()}")
    with open(path + ".tmp", "w") as f:
        f.write(node_id)
    os.rename(path + ".tmp", path)
    deadline = time.monotonic() + 120
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.05)
    return node_id


@pytest.mark.parametrize(("isolation", "unplug"), NODE_DEATHS)
def test_task_on_a_killed_node_is_retried_on_another(make_cluster, tmp_path, monkeypatch, isolation, unplug):
    from microray.core.submitter import TaskSubmitter

    told: list[str] = []  # node deaths the driver's raylet told it of
    nodes_died = TaskSubmitter.nodes_died
    monkeypatch.setattr(TaskSubmitter, "nodes_died", lambda self, ids: (told.extend(ids), nodes_died(self, ids)))
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 0}, isolation=isolation)
    a = cluster.add_node(num_cpus=1)
    b = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    cluster.connect()
    markers = tmp_path / "markers"
    markers.mkdir()
    go = str(tmp_path / "go")
    ref = where_then_wait.remote(str(markers), go)
    wait_for(lambda: list(markers.glob("attempt-*[0-9]")), timeout=DEADLINE, what="the task to start")
    first = next(markers.glob("attempt-*[0-9]")).read_text()
    victim = _node_by_id(cluster, first)
    assert victim in (a, b)
    cluster.remove_node(victim, allow_graceful=False, unplug=unplug)
    open(go, "w").close()
    # the owner saw the worker's stream break (unplugged: its raylet told it the node was
    # declared dead, long before the connection's pings would have given up) and ran the
    # task again, on the node left
    survivor = b if victim is a else a
    assert ray.get(ref, timeout=DEADLINE) == survivor.node_id
    attempts = sorted(p.read_text() for p in markers.glob("attempt-*[0-9]"))
    assert attempts == sorted([victim.node_id, survivor.node_id]), attempts
    if unplug:
        assert victim.node_id in told, told


# max_task_retries: a call already sent when the node was killed (its stream not yet seen
# broken) runs again on the restarted actor instead of failing as in flight
@ray.remote(num_cpus=1, max_restarts=1, max_task_retries=3)
class Where:
    def __init__(self) -> None:
        self.calls = 0

    def node(self) -> str:
        self.calls += 1
        return ray.get_runtime_context().get_node_id()


@pytest.mark.parametrize(("isolation", "unplug"), NODE_DEATHS)
def test_actor_on_a_killed_node_restarts_elsewhere_then_dies_when_restarts_are_used_up(make_cluster, isolation,
                                                                                         unplug):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 0}, isolation=isolation)
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    cluster.connect()
    actor = Where.remote()
    first = ray.get(actor.node.remote(), timeout=DEADLINE)
    victim = _node_by_id(cluster, first)
    cluster.remove_node(victim, allow_graceful=False, unplug=unplug)
    # calls made while the actor restarts wait for the new incarnation
    second = ray.get(actor.node.remote(), timeout=DEADLINE)
    survivor = next(n for n in nodes if n is not victim)
    assert second == survivor.node_id
    # max_restarts=1 is used up: the next node death is final, and callers are told so
    cluster.remove_node(survivor, allow_graceful=False, unplug=unplug)
    with pytest.raises(ActorDiedError) as info:
        ray.get(actor.node.remote(), timeout=DEADLINE)
    assert "died" in str(info.value), str(info.value)

    # a call sent before the caller heard of the death fails as in flight; once the GCS
    # has the actor DEAD, every call's error gives the cause
    def cause() -> str:
        try:
            ray.get(actor.node.remote(), timeout=DEADLINE)
        except ActorDiedError as exc:
            return str(exc)
        raise AssertionError("a call to an actor with no restart left succeeded")

    message = wait_for(lambda: (lambda m: m if "max_restarts=1" in m else None)(cause()), timeout=DEADLINE,
                       what="the actor's death cause to name max_restarts")
    assert "died" in message, message


def test_driver_whose_head_vanished_gets_gcs_unavailable_not_a_hang(make_cluster):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1, "gcs_rpc_timeout_s": 3})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    cluster.connect()
    assert len(ray.nodes()) == 2
    from microray import worker_node

    worker_node.kill_process_group(cluster.head_node.pids["gcs"])
    wait_for(lambda: not _alive(cluster.head_node.pids["gcs"]), timeout=10, what="the GCS to die")
    t0 = time.monotonic()
    with pytest.raises(GcsUnavailableError) as info:
        ray.nodes()
    elapsed = time.monotonic() - t0
    assert cluster.address in str(info.value), str(info.value)
    assert elapsed < 3 + 7, f"ray.nodes() took {elapsed:.1f}s with gcs_rpc_timeout_s=3"
    with pytest.raises(GcsUnavailableError):
        Where.remote()


def _alive(pid: int) -> bool:
    return pid_alive(pid)
