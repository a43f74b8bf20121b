"""A head whose GCS store is a 3-member etcd cluster: SIGKILL the member the GCS talks to
(the raft leader) while a driver runs tasks and creates and calls named and detached actors;
the cluster keeps working, and after the GCS itself is killed and restarted every record is
still there.

Real processes throughout: the etcd members (``microray.testing.servers.etcd_cluster``), the
GCS, raylet and workers. Which member the GCS uses is read from its TCP connections.
"""

from __future__ import annotations

import threading
import uuid

import psutil
import pytest

import microray as ray
from microray import node
from microray.testing.servers import EtcdServer
from microray.util.state import list_actors

from .helpers import kill9, wait_for
from .test_head_restart import Counter, _kv_get, _kv_put, inc

pytestmark = pytest.mark.slow


def _members_in_use(cluster, gcs_pid: int) -> list[EtcdServer]:
    """The members the GCS process has an established connection to."""
    by_port = {m.port: m for m in cluster.members}
    conns = psutil.Process(gcs_pid).net_connections(kind="tcp")
    ports = {c.raddr.port for c in conns if c.raddr and c.status == psutil.CONN_ESTABLISHED}
    return [by_port[p] for p in sorted(ports & set(by_port))]


def test_gcs_keeps_serving_when_its_etcd_member_dies(make_cluster, etcd_cluster):
    etcd_cluster.ensure_running()
    leader = etcd_cluster.leader()  # listed first: the GCS starts on it (the worst member to lose)
    endpoints = [leader.url, *(m.url for m in etcd_cluster.members if m is not leader)]
    options = {"endpoints": endpoints, "namespace": f"ft-{uuid.uuid4().hex[:10]}"}
    worker = make_cluster(gcs_store="etcd", gcs_store_options=options, namespace="ft")
    head = ray.api._head
    gcs_pid = head.pids["gcs"]

    keeper = Counter.options(name="keeper", lifetime="detached").remote(100)
    counter = Counter.options(name="counter").remote()
    assert ray.get([keeper.incr.remote(), counter.incr.remote()], timeout=60) == [101, 1]
    _kv_put(worker, b"before", b"the kill")
    used = wait_for(lambda: _members_in_use(etcd_cluster, gcs_pid), timeout=20,
                    what="the GCS's connection to an etcd member")  # fmt: skip
    assert used == [leader], used
    victim = leader

    # -- a driver thread: tasks, new named (some detached) actors, KV writes through the GCS ------
    progress = {"done": 0, "actors": [], "error": None}
    stop = threading.Event()

    def load() -> None:
        try:
            i = 0
            while not stop.is_set():
                assert ray.get(inc.remote(i), timeout=120) == i + 1
                _kv_put(worker, b"load-%d" % i, b"%d" % i)
                if i % 10 == 0:
                    name = f"during-{i}"
                    lifetime = "detached" if i % 20 == 0 else None
                    actor = Counter.options(name=name, lifetime=lifetime).remote(i)
                    assert ray.get(actor.incr.remote(), timeout=120) == i + 1
                    progress["actors"].append((name, actor, lifetime))  # the handle keeps it alive
                i += 1
                progress["done"] = i
        except BaseException as exc:  # noqa: BLE001 -- reported by the test
            progress["error"] = exc

    runner = threading.Thread(target=load, name="load", daemon=True)
    runner.start()
    try:
        wait_for(lambda: progress["done"] >= 20 or progress["error"], timeout=120, what="the load to get going")
        assert progress["error"] is None, progress["error"]

        victim.kill()  # SIGKILL the member the GCS talks to
        at_kill, actors_at_kill = progress["done"], len(progress["actors"])
        wait_for(lambda: progress["error"] or (progress["done"] >= at_kill + 40
                                               and len(progress["actors"]) >= actors_at_kill + 4),
                 timeout=180, what="the cluster to keep working without the member")  # fmt: skip
        assert progress["error"] is None, f"the load failed after the member died: {progress['error']!r}"
        now_used = _members_in_use(etcd_cluster, gcs_pid)
        assert now_used and victim not in now_used, (victim, now_used)
        assert _kv_get(worker, b"before") == b"the kill"

        victim.launch()  # back again (from this thread: its parent-death signal follows it)
        victim.wait_ready()
    finally:
        stop.set()
        runner.join(timeout=180)
    assert not runner.is_alive(), "the load thread hangs"
    assert progress["error"] is None, progress["error"]
    done, made = progress["done"], list(progress["actors"])

    # -- the GCS itself dies and restarts on the same etcd cluster: nothing is lost ---------------
    kill9(gcs_pid)
    node.restart_gcs(head)
    for i in range(0, done, 7):
        assert _kv_get(worker, b"load-%d" % i) == b"%d" % i
    assert _kv_get(worker, b"before") == b"the kill"
    found_keeper = ray.get_actor("keeper", namespace="ft")
    assert found_keeper._actor_id == keeper._actor_id
    assert ray.get(found_keeper.incr.remote(), timeout=60) == 102  # the same process, state kept
    assert ray.get(ray.get_actor("counter").incr.remote(), timeout=60) == 2
    for name, actor, _ in made:
        assert ray.get_actor(name, namespace="ft")._actor_id == actor._actor_id
    rows = {a["actor_id"]: a for a in list_actors()}
    assert all(rows[actor._actor_id]["state"] == "ALIVE" for _, actor, _ in made)
    assert {rows[actor._actor_id]["lifetime"] for _, actor, life in made if life} == {"detached"}
    assert ray.get(made[-1][1].incr.remote(), timeout=60) == int(made[-1][0].split("-")[1]) + 2
    assert ray.get([inc.remote(i) for i in range(50)], timeout=120) == list(range(1, 51))
