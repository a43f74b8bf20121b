"""Fault tolerance with real process deaths: the test SIGKILLs the pid the actor
reports, or a method calls ``os._exit``. Restarts re-run the constructor with the
original arguments (state reset, new pid) up to ``max_restarts``; calls in flight
are retried up to ``max_task_retries``; after that, calls raise ``RayActorError``."""

from __future__ import annotations

import os
import signal
import time

import pytest

import microray as ray
from microray.exceptions import ActorDiedError, RayActorError

from .helpers import actor_state, pid_alive, wait_for, wait_state


@ray.remote
class Phoenix:
    def __init__(self, start, marker_dir=None):
        self.n = start
        self.marker_dir = marker_dir
        if marker_dir:  # one file per constructor run
            with open(os.path.join(marker_dir, f"init-{os.getpid()}"), "w") as f:
                f.write(str(start))

    def incr(self):
        self.n += 1
        return self.n

    def pid(self):
        return os.getpid()

    def state(self):
        return self.n, os.getpid()

    def exit_now(self):
        os._exit(1)

    def exit_once(self, flag):
        """Exit the process the first time (ever) this is called; return the pid after."""
        if not os.path.exists(flag):
            open(flag, "w").close()
            os._exit(1)
        return os.getpid()

    def slow(self, started, seconds):
        open(started, "w").close()
        time.sleep(seconds)
        return os.getpid()


def sigkill(pid):
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what=f"pid {pid} to die")


def test_restarts_up_to_max_restarts_then_dead(cluster, tmp_path):
    a = Phoenix.options(max_restarts=2).remote(10, str(tmp_path))
    assert ray.get(a.incr.remote()) == 11
    seen_pids = []
    for restart in (1, 2):
        n, pid = ray.get(a.state.remote())
        seen_pids.append(pid)
        sigkill(pid)
        row = wait_for(lambda: (lambda r: r if r["num_restarts"] == restart and r["state"] == "ALIVE" else None)(
            actor_state(a)), what=f"restart #{restart}")
        assert row["pid"] not in seen_pids
        # the constructor ran again with the original arguments: state is reset
        n, pid = ray.get(a.state.remote())
        assert n == 10 and pid == row["pid"]
        assert ray.get(a.incr.remote()) == 11
    assert len(list(tmp_path.glob("init-*"))) == 3  # one construction + two restarts
    # the third death uses up the restarts
    sigkill(ray.get(a.pid.remote()))
    row = wait_state(a, "DEAD")
    assert row["num_restarts"] == 2
    assert "max_restarts=2" in row["death_cause"]
    with pytest.raises(RayActorError) as info:
        ray.get(a.incr.remote(), timeout=30)
    assert isinstance(info.value, ActorDiedError)
    assert "max_restarts" in str(info.value)


def test_restarting_state_is_observable(cluster):
    """A slow constructor keeps the restarted actor in RESTARTING long enough to see."""

    @ray.remote(max_restarts=1)
    class SlowStart:
        def __init__(self):
            time.sleep(1.0)

        def pid(self):
            return os.getpid()

    a = SlowStart.remote()
    pid = ray.get(a.pid.remote())
    sigkill(pid)
    row = wait_state(a, "RESTARTING")
    assert row["num_restarts"] == 1
    row = wait_state(a, "ALIVE")
    assert row["num_restarts"] == 1 and row["pid"] != pid
    assert ray.get(a.pid.remote()) == row["pid"]


def test_os_exit_in_a_method_without_task_retries(cluster):
    a = Phoenix.options(max_restarts=1, max_task_retries=0).remote(0)
    pid = ray.get(a.pid.remote())
    with pytest.raises(RayActorError, match="exit_now"):
        ray.get(a.exit_now.remote(), timeout=30)
    row = wait_for(lambda: (lambda r: r if r["state"] == "ALIVE" and r["num_restarts"] == 1 else None)(
        actor_state(a)), what="the restart")
    assert row["pid"] != pid
    assert ray.get(a.incr.remote()) == 1  # fresh state on the new process


def test_os_exit_in_a_method_is_retried_on_the_restarted_actor(cluster, tmp_path):
    a = Phoenix.options(max_restarts=1, max_task_retries=1).remote(0)
    pid = ray.get(a.pid.remote())
    new_pid = ray.get(a.exit_once.remote(str(tmp_path / "flag")), timeout=60)
    assert new_pid != pid
    assert actor_state(a)["num_restarts"] == 1


@pytest.mark.parametrize("max_task_retries", [1, 0])
def test_inflight_call_when_process_is_sigkilled(cluster, tmp_path, max_task_retries):
    a = Phoenix.options(max_restarts=1, max_task_retries=max_task_retries).remote(0)
    pid = ray.get(a.pid.remote())
    started = tmp_path / "started"
    ref = a.slow.remote(str(started), 2.0)
    wait_for(started.exists, what="the slow call to start")
    started.unlink()
    sigkill(pid)
    if max_task_retries >= 1:
        # re-run from the start on the restarted process
        assert ray.get(ref, timeout=60) != pid
        assert started.exists()
    else:
        with pytest.raises(RayActorError, match="slow"):
            ray.get(ref, timeout=60)
    # the actor itself was restarted either way
    wait_state(a, "ALIVE")
    assert ray.get(a.pid.remote()) not in (pid,)
    assert actor_state(a)["num_restarts"] == 1


def test_calls_during_a_restart_wait_and_keep_their_order(cluster):
    """Calls submitted while the actor is restarting are not in flight: they wait for
    the new instance (even with max_task_retries=0) and run in submission order."""

    @ray.remote(max_restarts=1)
    class SlowInit:
        def __init__(self):
            time.sleep(0.5)
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n

        def pid(self):
            return os.getpid()

    a = SlowInit.remote()
    pid = ray.get(a.pid.remote())
    sigkill(pid)
    wait_state(a, "RESTARTING")
    refs = [a.incr.remote() for _ in range(50)]
    assert ray.get(refs, timeout=60) == list(range(1, 51))


def test_kill_with_no_restart_false_restarts(cluster):
    a = Phoenix.options(max_restarts=1).remote(5)
    assert ray.get(a.incr.remote()) == 6
    pid = ray.get(a.pid.remote())
    ray.kill(a, no_restart=False)
    row = wait_for(lambda: (lambda r: r if r["state"] == "ALIVE" and r["num_restarts"] == 1 else None)(
        actor_state(a)), what="the restart after kill(no_restart=False)")
    assert row["pid"] != pid
    assert not pid_alive(pid)
    assert ray.get(a.state.remote(), timeout=30) == (5, row["pid"])
    # the restart budget is spent: the next kill(no_restart=False) leaves it DEAD
    ray.kill(a, no_restart=False)
    row = wait_state(a, "DEAD")
    with pytest.raises(RayActorError):
        ray.get(a.incr.remote(), timeout=30)


def test_kill_with_no_restart_true_ignores_max_restarts(cluster):
    a = Phoenix.options(max_restarts=-1).remote(0)
    pid = ray.get(a.pid.remote())
    ray.kill(a)
    row = wait_state(a, "DEAD")
    assert row["num_restarts"] == 0
    wait_for(lambda: not pid_alive(pid), what="the killed process to exit")


def test_infinite_restarts(cluster):
    a = Phoenix.options(max_restarts=-1, max_task_retries=-1).remote(0)
    for i in range(1, 4):
        sigkill(ray.get(a.pid.remote(), timeout=60))
        wait_for(lambda: actor_state(a)["num_restarts"] == i, what=f"restart {i}")
    assert ray.get(a.incr.remote(), timeout=60) == 1
    ray.kill(a)


def test_kill_during_construction_stops_the_process_and_frees_its_cpu(cluster, tmp_path):
    """Killing an actor whose constructor is still running ends that process too (it
    does not linger holding its CPU) and the actor is DEAD."""

    @ray.remote(num_cpus=1)
    class SlowConstructor:
        def __init__(self, pid_file):
            with open(pid_file, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(30)

        def ping(self):
            return "pong"

    pid_file = tmp_path / "pid"
    a = SlowConstructor.remote(str(pid_file))
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the constructor to start")
    pid = int(pid_file.read_text())
    assert actor_state(a)["state"] == "PENDING_CREATION"
    ray.kill(a)
    row = wait_state(a, "DEAD")
    assert "kill" in row["death_cause"]
    wait_for(lambda: not pid_alive(pid), timeout=15, what=f"the constructing process {pid} to exit")
    wait_for(lambda: ray.available_resources().get("CPU") == 2.0, what="its CPU to be free again")
    with pytest.raises(RayActorError):
        ray.get(a.ping.remote(), timeout=30)


def test_restart_reruns_constructor_with_original_object_ref_args(cluster):
    """Constructor arguments passed as ObjectRefs (one large, in the object store) are
    kept for restarts, even after the driver dropped its own refs."""

    @ray.remote(max_restarts=1, max_task_retries=1)  # retries: the call below may race the death
    class Holder:
        def __init__(self, blob, label, plain):
            self.info = (len(blob), blob[:3], label, plain)

        def get(self):
            return self.info, os.getpid()

    blob = ray.put(b"abc" * (2 << 20))
    label = ray.put("label")
    a = Holder.remote(blob, label, {"k": [1, 2]})
    del blob, label
    expected = (3 * (2 << 20), b"abc", "label", {"k": [1, 2]})
    info, pid = ray.get(a.get.remote())
    assert info == expected
    sigkill(pid)
    info, new_pid = ray.get(a.get.remote(), timeout=60)
    assert info == expected and new_pid != pid


def test_order_across_a_restart_and_at_least_once(cluster, tmp_path):
    """All 30 calls are sent at once (in flight). The process is SIGKILLed part way:
    the unfinished calls are re-sent, in their original order, to the restarted
    actor. A call may run twice (at-least-once), but each incarnation runs calls in
    submission order and every call gets its result."""

    @ray.remote(max_restarts=1, max_task_retries=-1)
    class Journal:
        def __init__(self, path):
            self.path = path

        def write(self, i, started):
            with open(self.path, "a") as f:
                f.write(f"{os.getpid()} {i}\n")
            if i == 5:
                open(started, "w").close()
            time.sleep(0.05)
            return i

    journal = tmp_path / "journal"
    started = tmp_path / "started"
    a = Journal.remote(str(journal))
    refs = [a.write.remote(i, str(started)) for i in range(30)]
    wait_for(started.exists, what="call 5 to run")
    first_pid = int(journal.read_text().split()[0])
    sigkill(first_pid)
    assert ray.get(refs, timeout=60) == list(range(30))
    by_pid: dict[int, list[int]] = {}
    for line in journal.read_text().splitlines():
        pid, i = map(int, line.split())
        by_pid.setdefault(pid, []).append(i)
    assert len(by_pid) == 2 and first_pid in by_pid
    before = by_pid.pop(first_pid)
    (after,) = by_pid.values()
    assert before == list(range(len(before)))  # in order up to the crash
    assert after == list(range(after[0], 30))  # the rest, in order, from the first unfinished
    assert after[0] <= len(before)  # nothing skipped (a call may have run on both)
