"""Observer hooks: a plugin module named in config sees every actor state change
(``microray_actor_state_changed``, called in the GCS process)."""

from __future__ import annotations

import os
import signal

import pytest

import microray as ray
from microray.plugin_manager import reset_plugin_manager

from .helpers import REPO_ROOT, assert_no_leaks, pid_alive, read_events, wait_for, wait_state

PLUGIN = "tests.actors.actor_event_plugin"


@ray.remote
class Tracked:
    def pid(self):
        return os.getpid()


@pytest.fixture
def hooked_cluster(make_cluster, monkeypatch):
    # node processes are forks (sys.path carries over) or, without a fork launcher,
    # fresh interpreters that need the repository root on PYTHONPATH to import the plugin
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    worker = make_cluster(num_cpus=2, plugins=[PLUGIN])
    yield worker
    ray.shutdown()
    assert_no_leaks()
    reset_plugin_manager()  # forget the test plugin in this process's manager


def _states(actor_id):
    return [e["state"] for e in read_events() if e["actor_id"] == actor_id]


def test_actor_lifecycle_events_reach_a_plugin(hooked_cluster):
    a = Tracked.options(name="tracked", max_restarts=1).remote()
    pid = ray.get(a.pid.remote())
    wait_for(lambda: {"PENDING_CREATION", "ALIVE"} <= set(_states(a._actor_id)), what="creation events")

    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid))
    wait_for(lambda: "RESTARTING" in _states(a._actor_id), what="a RESTARTING event")
    wait_state(a, "ALIVE")
    ray.kill(a)
    wait_for(lambda: "DEAD" in _states(a._actor_id), what="a DEAD event")

    events = [e for e in read_events() if e["actor_id"] == a._actor_id]
    states = [e["state"] for e in events]
    assert states.count("ALIVE") == 2  # created, then restarted
    dead = [e for e in events if e["state"] == "DEAD"][0]
    assert dead["num_restarts"] == 1 and dead["name"] == "tracked" and dead["class_name"] == "Tracked"
    restarted_alive = [e for e in events if e["state"] == "ALIVE" and e["num_restarts"] == 1]
    assert restarted_alive and restarted_alive[0]["pid"] != pid
    # the hook ran in the GCS, not in this driver or a worker
    recorders = {e["recorder_pid"] for e in events}
    assert len(recorders) == 1 and os.getpid() not in recorders and pid not in recorders
    assert recorders == {ray.api._head.pids["gcs"]}


def test_constructor_failure_is_reported_as_dead(hooked_cluster):
    @ray.remote
    class Broken:
        def __init__(self):
            raise RuntimeError("no")

        def ping(self):
            return 1

    b = Broken.remote()
    wait_for(lambda: "DEAD" in _states(b._actor_id), what="a DEAD event for a failed constructor")
    assert "ALIVE" not in _states(b._actor_id)
