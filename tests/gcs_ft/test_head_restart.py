"""Issue 5, "GCS fault tolerance": kill -9 the head's GCS while a driver works, restart it
on the same Redis / etcd store, and check that nobody notices apart from a short pause.

Real processes throughout: the GCS is SIGKILLed by pid and started again with
``node.restart_gcs`` (what an operator's ``microray restart-gcs`` does).
"""

from __future__ import annotations

import threading
import time

import pytest

import common_actors
import microray as ray
from microray import node
from microray.protocol import gcs_pb2
from microray.util.state import list_actors, list_jobs, list_nodes

from .helpers import kill9, wait_for

pytestmark = pytest.mark.slow

AFTER_RESTART_TASKS = 300
MAX_LOOP_TASKS = 200_000


@ray.remote
def inc(x):
    return x + 1


Counter = ray.remote(common_actors.Counter)


def _kv_put(worker, key: bytes, value: bytes) -> None:
    worker.call(worker.gcs.KvPut, gcs_pb2.KvPutRequest(ns="ft_test", key=key, value=value, overwrite=True))


def _kv_get(worker, key: bytes) -> bytes | None:
    reply = worker.call(worker.gcs.KvGet, gcs_pb2.KvGetRequest(ns="ft_test", key=key))
    return reply.value if reply.found else None


def test_gcs_kill9_and_restart_loses_nothing(make_cluster, store):
    worker = make_cluster(gcs_store=store.name, gcs_store_options=store.options, namespace="ft")
    head = ray.api._head
    assert head is not None and head.embedded

    # -- state written before the kill ------------------------------------------------------
    counter = Counter.options(name="counter").remote()
    keeper = Counter.options(name="keeper", lifetime="detached").remote(100)
    assert ray.get([counter.incr.remote() for _ in range(3)], timeout=60) == [1, 2, 3]
    assert ray.get(keeper.incr.remote(), timeout=60) == 101
    counter_pid = ray.get(counter.pid.remote(), timeout=30)
    for i in range(20):
        _kv_put(worker, f"key-{i}".encode(), f"value-{i}".encode() * 10)
    _kv_put(worker, b"\x00binary\xff", b"\x01\x02")
    jobs_before = {j["job_id"]: j for j in list_jobs()}
    actors_before = {a["actor_id"]: a for a in list_actors()}
    assert worker.job_id in jobs_before
    assert {counter._actor_id, keeper._actor_id} <= set(actors_before)
    nodes_before = list_nodes()
    assert [n["state"] for n in nodes_before] == ["ALIVE"]
    assert ray.get(inc.remote(0), timeout=30) == 1  # exported before the kill

    # -- a driver loop of tasks, running through the kill, the outage and the restart -------------
    # It runs until told to stop (after the restart), then AFTER_RESTART_TASKS more.
    progress = {"done": 0, "error": None}
    restarted = threading.Event()

    def loop() -> None:
        try:
            i = 0
            remaining = AFTER_RESTART_TASKS
            while remaining > 0:
                assert ray.get(inc.remote(i), timeout=120) == i + 1
                i += 1
                progress["done"] = i
                if restarted.is_set():
                    remaining -= 1
                assert i < MAX_LOOP_TASKS, "the restart never finished"
        except BaseException as exc:  # noqa: BLE001 -- reported by the test
            progress["error"] = exc

    runner = threading.Thread(target=loop, name="task-loop", daemon=True)
    runner.start()
    wait_for(lambda: progress["done"] >= 100 or progress["error"], timeout=60, what="the loop to get going")
    assert progress["error"] is None, progress["error"]

    gcs_pid = head.pids["gcs"]
    done_at_kill = progress["done"]
    kill9(gcs_pid)
    killed_at = time.time()

    # -- during the outage: the task path does not touch the GCS ------------------------------------
    during = inc.remote(41)  # inc is exported already: no GCS call on this path
    assert ray.get(during, timeout=30) == 42
    assert ray.get(counter.incr.remote(), timeout=30) == 4  # actor calls go worker to worker

    # a function never exported before needs the GCS (function table): its submission waits
    # for the restarted GCS instead of failing
    @ray.remote
    def brand_new(x):
        return x * 10

    submitted: dict = {}

    def submit_new() -> None:
        try:
            submitted["ref"] = brand_new.remote(7)
        except BaseException as exc:  # noqa: BLE001
            submitted["error"] = exc

    submitter = threading.Thread(target=submit_new, name="submit-during-outage", daemon=True)
    submitter.start()
    submitter.join(timeout=0.3)
    assert submitter.is_alive() and not submitted, f"the export did not wait for the GCS: {submitted}"

    # -- restart on the same store --------------------------------------------------------------
    node.restart_gcs(head)
    restarted_at = time.time()
    restarted.set()
    done_at_restart = progress["done"]
    assert head.pids["gcs"] != gcs_pid

    submitter.join(timeout=60)
    assert "error" not in submitted, f"submission during the outage failed: {submitted['error']!r}"
    assert ray.get(submitted["ref"], timeout=60) == 70

    runner.join(timeout=180)
    assert not runner.is_alive(), f"the task loop hangs after {progress['done']} tasks"
    assert progress["error"] is None, f"the loop saw an error: {progress['error']!r}"
    assert done_at_kill < done_at_restart < progress["done"], (done_at_kill, done_at_restart, progress["done"])

    # -- actors keep their state and are found again --------------------------------------------
    assert ray.get(counter.incr.remote(), timeout=30) == 5
    assert ray.get(counter.pid.remote(), timeout=30) == counter_pid  # the same process, not a restart
    found = ray.get_actor("counter")
    assert found._actor_id == counter._actor_id
    assert ray.get(found.incr.remote(), timeout=30) == 6
    found_keeper = ray.get_actor("keeper", namespace="ft")
    assert found_keeper._actor_id == keeper._actor_id
    assert ray.get(found_keeper.incr.remote(), timeout=30) == 102
    with pytest.raises(ValueError, match="Failed to look up actor"):
        ray.get_actor("never-created")

    # -- the node re-registers / heartbeats resume ---------------------------------------------------
    def fresh_heartbeat():
        rows = list_nodes()
        alive = [n for n in rows if n["state"] == "ALIVE"]
        ok = len(rows) == 1 and len(alive) == 1 and alive[0]["last_heartbeat"] > restarted_at
        return alive[0] if ok else None

    row = wait_for(fresh_heartbeat, timeout=30, what="a heartbeat of the node to the restarted GCS")
    assert row["node_id"] == nodes_before[0]["node_id"]
    first = row["last_heartbeat"]
    wait_for(lambda: list_nodes()[0]["last_heartbeat"] > first, timeout=30, what="heartbeats to keep coming")

    # -- nothing written before the kill is lost -------------------------------------------------
    for i in range(20):
        assert _kv_get(worker, f"key-{i}".encode()) == f"value-{i}".encode() * 10
    assert _kv_get(worker, b"\x00binary\xff") == b"\x01\x02"
    jobs_after = {j["job_id"]: j for j in list_jobs()}
    assert set(jobs_before) <= set(jobs_after)
    assert jobs_after[worker.job_id]["status"] == "RUNNING"
    assert jobs_after[worker.job_id]["start_time"] == jobs_before[worker.job_id]["start_time"]
    actors_after = {a["actor_id"]: a for a in list_actors()}
    assert set(actors_before) <= set(actors_after)
    for actor in (counter, keeper):
        before, after = actors_before[actor._actor_id], actors_after[actor._actor_id]
        assert after["state"] == "ALIVE"
        assert (after["name"], after["pid"], after["num_restarts"]) == (before["name"], before["pid"], 0)
    assert actors_after[keeper._actor_id]["lifetime"] == "detached"

    # -- the cluster keeps working: new actors, new jobs' data ------------------------------------------
    fresh = Counter.options(name="after-restart").remote(7)
    assert ray.get(fresh.incr.remote(), timeout=60) == 8
    assert ray.get_actor("after-restart")._actor_id == fresh._actor_id
    _kv_put(worker, b"after", b"restart")
    assert _kv_get(worker, b"after") == b"restart"
    assert ray.get([inc.remote(i) for i in range(50)], timeout=60) == list(range(1, 51))
    assert time.time() - killed_at < 240


RESTARTING_DRIVER = """
import json, signal
from microray import node
from microray.process import pid_alive
ray.init(num_cpus=1, include_dashboard=False, gcs_store=os.environ["FT_STORE"],
         gcs_store_options=json.loads(os.environ["FT_OPTS"]))
head = ray.api._head
os.kill(head.pids["gcs"], signal.SIGKILL)
while pid_alive(head.pids["gcs"]):
    time.sleep(0.01)
node.restart_gcs(head)
@ray.remote
def f():
    return os.getpid()
worker_pid = ray.get(f.remote(), timeout=60)
print("PIDS", json.dumps({**head.pids, "worker": worker_pid}), flush=True)
time.sleep(600)
"""


def test_restarted_gcs_of_an_embedded_head_dies_with_its_driver(store):
    """An embedded head's processes die with the driver that started it; a GCS that was
    restarted for it too (no orphaned GCS after the driver is killed)."""
    import json
    import os
    import signal

    from .helpers import pid_alive, read_marker, start_driver

    driver = start_driver(RESTARTING_DRIVER, env={"FT_STORE": store.name, "FT_OPTS": json.dumps(store.options)})
    pids: dict = {}
    try:
        pids = json.loads(read_marker(driver, "PIDS", timeout=120))
        assert all(pid_alive(p) for p in pids.values()), pids
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(10)
        wait_for(lambda: not [name for name, p in pids.items() if pid_alive(p)], timeout=20,
                 what=f"the head's processes {pids} to die with their driver")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
        for stream in (driver.stdout, driver.stderr, driver.stdin):
            stream.close()
        for p in pids.values():
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)


@ray.remote
class SlowStart:
    def __init__(self, marker):
        import os
        import time

        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(3)
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    def pid(self):
        import os

        return os.getpid()


def test_actors_that_change_during_the_outage(make_cluster, store, tmp_path):
    """What happens to actors while the GCS is down: one being created (the creation is
    re-run, the abandoned worker is stopped), one that dies and may restart (it restarts),
    one that dies and may not (it is DEAD)."""
    import os
    import signal

    from microray.exceptions import RayActorError
    from microray.util.state import list_workers

    from .helpers import pid_alive

    make_cluster(gcs_store=store.name, gcs_store_options=store.options, namespace="ft")
    head = ray.api._head
    restartable = Counter.options(max_restarts=1).remote()
    mortal = Counter.options(name="mortal").remote()
    restartable_pid = ray.get(restartable.pid.remote(), timeout=60)
    mortal_pid = ray.get(mortal.pid.remote(), timeout=60)
    marker = str(tmp_path / "creating")
    creating = SlowStart.options(name="creating").remote(marker)
    wait_for(lambda: os.path.exists(marker) and open(marker).read(), timeout=60, what="the constructor to start")
    abandoned_pid = int(open(marker).read())

    kill9(head.pids["gcs"])
    os.kill(restartable_pid, signal.SIGKILL)
    os.kill(mortal_pid, signal.SIGKILL)
    node.restart_gcs(head)

    # the creation is re-run on a new worker; the worker of the first attempt is stopped
    assert ray.get(creating.incr.remote(), timeout=60) == 1
    new_pid = ray.get(creating.pid.remote(), timeout=30)
    assert new_pid != abandoned_pid
    wait_for(lambda: not pid_alive(abandoned_pid), timeout=20, what="the abandoned actor worker to be stopped")
    assert abandoned_pid not in {w["pid"] for w in list_workers()}
    assert ray.get_actor("creating")._actor_id == creating._actor_id

    # an actor that died meanwhile restarts (it may) or is DEAD (it may not)
    assert ray.get(restartable.incr.remote(), timeout=60) == 1  # a fresh instance
    assert ray.get(restartable.pid.remote(), timeout=30) != restartable_pid
    rows = {a["actor_id"]: a for a in list_actors()}
    assert rows[restartable._actor_id]["state"] == "ALIVE" and rows[restartable._actor_id]["num_restarts"] == 1
    wait_for(lambda: {a["actor_id"]: a for a in list_actors()}[mortal._actor_id]["state"] == "DEAD", timeout=30,
             what="the killed actor to be DEAD")
    assert "died unexpectedly" in {a["actor_id"]: a for a in list_actors()}[mortal._actor_id]["death_cause"]
    with pytest.raises(RayActorError):
        ray.get(mortal.incr.remote(), timeout=30)
    with pytest.raises(ValueError):
        ray.get_actor("mortal")


def test_a_new_head_on_a_used_namespace_does_not_see_ghost_nodes(make_cluster, store):
    """``shutdown()`` (or ``microray stop``) and a new head on the same namespace: the new
    cluster recovers the jobs, KV and detached actors' records, but the stopped node is DEAD,
    so no task is sent to a raylet that is gone."""
    first = make_cluster(gcs_store=store.name, gcs_store_options=store.options, namespace="ft")
    old_node = first.node_id
    assert ray.get([inc.remote(i) for i in range(10)], timeout=60) == list(range(1, 11))
    ray.shutdown()

    second = make_cluster(gcs_store=store.name, gcs_store_options=store.options, namespace="ft")
    assert second.node_id != old_node
    states = {n["node_id"]: n["state"] for n in list_nodes()}
    assert states == {old_node: "DEAD", second.node_id: "ALIVE"}, states
    assert ray.get([inc.remote(i) for i in range(2000)], timeout=120) == list(range(1, 2001))
    assert {j["status"] for j in list_jobs() if j["job_id"] != second.job_id} == {"FINISHED"}


def test_a_new_head_after_a_crashed_one_marks_the_lost_node_dead_at_once(make_cluster, store):
    """The whole head crashed (GCS and raylet killed) and a new head starts on the same
    namespace, as a restarted head machine or pod would. The crashed node is recorded ALIVE;
    the new GCS finds nothing at its raylet's address and marks it DEAD at once, instead of
    after node_dead_after_s (30 s here, so that the probe is what is tested) during which
    the new raylet would spill tasks to it ("could not lease a worker: ... Connection refused")."""
    import os
    import signal

    options = dict(gcs_store=store.name, gcs_store_options=store.options, namespace="ft", node_dead_after_s=30)
    first = make_cluster(**options)
    old_node = first.node_id
    head = ray.api._head
    assert ray.get(inc.remote(1), timeout=60) == 2
    for name in ("raylet", "gcs"):
        os.kill(head.pids[name], signal.SIGKILL)
    ray.shutdown()

    second = make_cluster(**options)
    started = time.monotonic()
    assert second.node_id != old_node
    wait_for(lambda: {n["node_id"]: n["state"] for n in list_nodes()} == {old_node: "DEAD", second.node_id: "ALIVE"},
             timeout=5, what="the crashed node to be marked DEAD")
    assert time.monotonic() - started < 5  # node_dead_after_s is 30
    while time.monotonic() < started + 3:  # past the new raylet's first heartbeats (node table)
        assert ray.get([inc.remote(i) for i in range(50)], timeout=120) == list(range(1, 51))


def test_detached_actors_of_a_crashed_head_restart_on_the_new_one(make_cluster, store):
    """The head crashed with everything on it; a new head on the same namespace recovers the
    detached actors' records: one that may restart comes back (a fresh instance, same name
    and id), one that may not is DEAD with the cause, and its name is free again."""
    import os
    import signal

    options = dict(gcs_store=store.name, gcs_store_options=store.options, namespace="ft")
    make_cluster(**options)
    head = ray.api._head
    phoenix = Counter.options(name="phoenix", lifetime="detached", max_restarts=1).remote(40)
    mortal = Counter.options(name="mortal", lifetime="detached").remote()
    assert ray.get([phoenix.incr.remote(), mortal.incr.remote()], timeout=60) == [41, 1]
    for name in ("raylet", "gcs"):
        os.kill(head.pids[name], signal.SIGKILL)
    ray.shutdown()

    make_cluster(**options)
    again = ray.get_actor("phoenix")
    assert again._actor_id == phoenix._actor_id
    assert ray.get(again.incr.remote(), timeout=60) == 41  # the constructor ran again
    rows = {a["actor_id"]: a for a in list_actors()}
    assert rows[phoenix._actor_id]["num_restarts"] == 1
    wait_for(lambda: {a["actor_id"]: a for a in list_actors()}[mortal._actor_id]["state"] == "DEAD", timeout=30,
             what="the actor that may not restart to be DEAD")
    with pytest.raises(ValueError):
        ray.get_actor("mortal")
    fresh = Counter.options(name="mortal", lifetime="detached").remote(5)
    assert ray.get(fresh.incr.remote(), timeout=60) == 6
