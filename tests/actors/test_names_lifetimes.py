"""Named actors in namespaces, get_if_exists, and lifetimes: detached actors outlive
their driver; non-detached ones die with it (clean exit or SIGKILL) or when their
last handle goes away."""

from __future__ import annotations

import os
import signal

import pytest

import common_actors
import microray as ray
from microray.util.state import list_actors

from .helpers import actor_state, read_marker, run_driver, start_driver, wait_for, wait_state


Counter = ray.remote(common_actors.Counter)


def _by_name(name, namespace):
    rows = [a for a in list_actors() if a["name"] == name and a["namespace"] == namespace]
    return rows[-1] if rows else None


def test_duplicate_name_raises_value_error(cluster):
    a = Counter.options(name="dup", namespace="ns1").remote()
    assert ray.get(a.incr.remote()) == 1
    with pytest.raises(ValueError, match="dup"):
        Counter.options(name="dup", namespace="ns1").remote()
    # the same name in another namespace is another actor
    b = Counter.options(name="dup", namespace="ns2").remote(10)
    assert ray.get(b.incr.remote()) == 11
    assert ray.get(ray.get_actor("dup", namespace="ns1").incr.remote()) == 2
    assert ray.get(ray.get_actor("dup", namespace="ns2").incr.remote()) == 12
    ray.kill(a)
    ray.kill(b)


def test_get_actor_default_namespace_is_the_jobs(cluster):
    a = Counter.options(name="mine").remote(5)
    ray.get(a.incr.remote())
    assert actor_state(a)["namespace"] == ray.get_runtime_context().namespace
    assert ray.get(ray.get_actor("mine").incr.remote()) == 7
    with pytest.raises(ValueError):
        ray.get_actor("mine", namespace="elsewhere")
    ray.kill(a)


def test_get_actor_missing_name_raises_value_error(cluster):
    with pytest.raises(ValueError, match="no-such-actor"):
        ray.get_actor("no-such-actor")
    with pytest.raises(ValueError):
        ray.get_actor("")


def test_name_is_free_again_after_the_actor_dies(cluster):
    a = Counter.options(name="reuse", namespace="ns3").remote()
    ray.get(a.incr.remote())
    ray.kill(a)
    wait_state(a, "DEAD")
    wait_for(lambda: _raises_value_error(lambda: ray.get_actor("reuse", namespace="ns3")),
             what="the dead actor's name to be released")
    b = Counter.options(name="reuse", namespace="ns3").remote(50)
    assert ray.get(ray.get_actor("reuse", namespace="ns3").incr.remote()) == 51
    assert b != a
    ray.kill(b)


def _raises_value_error(fn):
    try:
        fn()
    except ValueError:
        return True
    return False


def test_get_if_exists_returns_the_existing_actor(cluster):
    first = Counter.options(name="shared", namespace="gie", get_if_exists=True).remote(0)
    assert ray.get(first.incr.remote()) == 1
    second = Counter.options(name="shared", namespace="gie", get_if_exists=True).remote(1000)
    assert second == first and second._actor_id == first._actor_id
    assert ray.get(second.incr.remote()) == 2  # the same state: constructor not re-run
    assert ray.get(first.incr.remote()) == 3
    assert len([a for a in list_actors() if a["name"] == "shared" and a["namespace"] == "gie"]) == 1
    ray.kill(first)


def test_calls_made_through_a_dropped_handle_still_run(cluster):
    """``ray.get(A.remote().f.remote())``: the handle is gone at once, but the calls
    already made through it finish before the actor is killed (as in Ray)."""
    assert ray.get(Counter.remote(41).incr.remote()) == 42
    c = Counter.remote()
    refs = [c.incr.remote() for _ in range(20)]
    actor_id = c._actor_id
    del c
    assert ray.get(refs) == list(range(1, 21))
    row = wait_state(actor_id, "DEAD")
    assert "out of scope" in row["death_cause"]


def test_handle_going_out_of_scope_kills_a_non_detached_actor(cluster):
    a = Counter.remote()
    ray.get(a.incr.remote())
    actor_id = a._actor_id
    del a
    row = wait_state(actor_id, "DEAD")
    assert "out of scope" in row["death_cause"]


DRIVER_CREATES = """
from tests.common_actors import Counter as _Counter
ray.init(address={address!r}, namespace="life")
Counter = ray.remote(_Counter)

@ray.remote
def make_in_task():
    return Counter.remote()  # owned by the task's worker; the handle escapes to the driver

owned = Counter.options(name="owned").remote()
print("OWNED", owned._actor_id, ray.get(owned.incr.remote()), flush=True)
from_task = ray.get(make_in_task.remote())
print("FROM_TASK", from_task._actor_id, ray.get(from_task.incr.remote()), flush=True)
{extra}
"""


def test_non_detached_actor_dies_when_its_driver_exits(cluster):
    gcs = ray.api._worker.gcs_address
    body = DRIVER_CREATES.format(address=gcs, extra="ray.shutdown()")
    out = run_driver(body).stdout
    actor_id = out.split("OWNED", 1)[1].split()[0]
    from_task_id = out.split("FROM_TASK", 1)[1].split()[0]
    for aid in (actor_id, from_task_id):  # created by the driver, or by a task of its job
        row = wait_state(aid, "DEAD")
        assert "owner" in row["death_cause"]
    with pytest.raises(ValueError):
        ray.get_actor("owned", namespace="life")


def test_non_detached_actor_dies_when_its_driver_is_sigkilled(cluster):
    gcs = ray.api._worker.gcs_address
    body = DRIVER_CREATES.format(address=gcs, extra="time.sleep(120)")
    proc = start_driver(body)
    try:
        actor_id = read_marker(proc, "OWNED").split()[0]
        assert actor_state(actor_id)["state"] == "ALIVE"
        # the driver is still running: its actor is usable from here
        assert ray.get(ray.get_actor("owned", namespace="life").incr.remote()) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        row = wait_state(actor_id, "DEAD", timeout=30)  # the GCS notices the dead pid
        assert "owner" in row["death_cause"]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_detached_actor_outlives_its_driver(cli_cluster):
    """Driver A creates a detached and a non-detached named actor and exits; driver B
    finds the detached one (state intact) while the other died with driver A."""
    out = cli_cluster.run_driver(DRIVER_CREATES.format(address="auto", extra="""
det = Counter.options(name="det", namespace="app", lifetime="detached").remote()
print("DETACHED", det._actor_id, ray.get([det.incr.remote() for _ in range(3)])[-1], flush=True)
""")).stdout
    assert "OWNED" in out and "DETACHED" in out, out
    detached_id, value = out.split("DETACHED", 1)[1].split()[:2]
    assert value == "3"
    out = cli_cluster.run_driver("""
from microray.util.state import list_actors
ray.init(address="auto")
det = ray.get_actor("det", namespace="app")
print("VALUE", ray.get(det.incr.remote()), det._actor_id)
rows = {a["name"]: a for a in list_actors()}
print("STATES", rows["det"]["state"], rows["det"]["lifetime"])
try:
    ray.get_actor("owned", namespace="life")
    print("OWNED_FOUND")
except ValueError:
    print("OWNED_GONE")
ray.kill(det)
""").stdout
    assert f"VALUE 4 {detached_id}" in out, out
    assert "STATES ALIVE detached" in out, out
    assert "OWNED_GONE" in out, out


@ray.remote
class Parent:
    def __init__(self):
        self.child = Counter.remote()
        # get_if_exists: a restarted parent finds the detached child of its first run
        self.detached_child = Counter.options(name="orphan-ok", lifetime="detached", get_if_exists=True).remote()

    def children(self):
        ray.get([self.child.incr.remote(), self.detached_child.incr.remote()])
        return self.child._actor_id, self.detached_child._actor_id

    def pid(self):
        return os.getpid()


def test_non_detached_actor_dies_with_its_owner_actor(cluster):
    """Fate sharing as in Ray: an actor created by another actor is owned by it and
    dies when the owner's process goes (killed, crashed or restarted); a detached
    child lives on."""
    parent = Parent.options(max_restarts=1).remote()
    child_id, detached_id = ray.get(parent.children.remote())
    os.kill(ray.get(parent.pid.remote()), signal.SIGKILL)
    row = wait_state(child_id, "DEAD")
    assert "owner" in row["death_cause"]
    # the restarted parent made a new child; killing the parent for good ends it too
    new_child_id, same_detached_id = ray.get(parent.children.remote(), timeout=30)
    assert new_child_id != child_id and same_detached_id == detached_id
    ray.kill(parent)
    wait_state(new_child_id, "DEAD")
    assert actor_state(detached_id)["state"] == "ALIVE"
    ray.kill(ray.get_actor("orphan-ok"))


def test_tasks_and_actors_run_in_the_jobs_namespace(cluster):
    """As in Ray, code in tasks and actors runs in the driver's namespace: it finds the
    driver's named actors, and named actors it creates are found by the driver."""
    namespace = ray.get_runtime_context().namespace
    target = Counter.options(name="ns-target").remote(40)

    @ray.remote
    def find_in_task():
        return ray.get_runtime_context().namespace, ray.get(ray.get_actor("ns-target").incr.remote())

    @ray.remote
    class Maker:
        def make(self):
            made = Counter.options(name="made-by-actor", lifetime="detached").remote(7)
            return ray.get_runtime_context().namespace, ray.get(ray.get_actor("ns-target").incr.remote()), ray.get(made.incr.remote())

    assert ray.get(find_in_task.remote()) == (namespace, 41)
    assert ray.get(Maker.remote().make.remote()) == (namespace, 42, 8)
    made = ray.get_actor("made-by-actor")
    assert ray.get(made.incr.remote()) == 9
    assert actor_state(made)["namespace"] == namespace
    ray.kill(made)
    ray.kill(target)
