"""Method calls: submission order, ObjectRef arguments, handles passed around,
errors (method, constructor, dead actor) and states through the state API."""

from __future__ import annotations

import time

import pytest

import microray as ray
from microray.exceptions import ActorDiedError, RayActorError, RayTaskError
from microray.util.state import list_actors

from .helpers import actor_state, pid_alive, wait_for, wait_state


@ray.remote
class Counter:
    def __init__(self, start=0):
        self.n = start
        self.log = []

    def incr(self, by=1):
        self.n += by
        return self.n

    def record(self, item):
        self.log.append(item)
        return len(self.log)

    def get_log(self):
        return self.log

    def value(self):
        return self.n

    def fail(self, msg):
        self.n += 100  # state changes made before the error are kept, as in Ray
        raise KeyError(msg)


@ray.remote
def slow_value(value, delay):
    time.sleep(delay)
    return value


@ray.remote
def call_from_task(counter, times):
    return ray.get([counter.incr.remote() for _ in range(times)])


@ray.remote
class Caller:
    def __init__(self, target):
        self.target = target

    def bump(self, times):
        return ray.get([self.target.incr.remote() for _ in range(times)])

    def bump_given(self, other, times):
        return ray.get([other.incr.remote() for _ in range(times)])


def test_alive_then_dead_after_kill_with_cause(cluster):
    c = Counter.remote()
    assert ray.get(c.incr.remote()) == 1
    row = wait_state(c, "ALIVE")
    assert row["class_name"] == "Counter" and row["pid"] and row["node_id"]
    assert row["death_cause"] is None
    assert any(a["actor_id"] == c._actor_id for a in list_actors())
    ray.kill(c)
    row = wait_state(c, "DEAD")
    assert "kill" in row["death_cause"]
    assert row["end_time"] is not None


def test_1000_calls_run_in_submission_order(cluster):
    c = Counter.remote()
    assert ray.get([c.incr.remote() for _ in range(1000)]) == list(range(1, 1001))


def test_order_holds_with_object_ref_args_resolved_out_of_order(cluster):
    """The first call's argument is ready last; the calls still start in submission order."""
    c = Counter.remote()
    slow = slow_value.remote("first", 1.0)
    refs = [c.record.remote(slow), c.record.remote("second"), c.record.remote(ray.put("third"))]
    fast = slow_value.remote("fourth", 0.0)
    refs.append(c.record.remote(fast))
    refs += [c.record.remote(i) for i in range(5, 50)]
    assert ray.get(refs) == list(range(1, 50))
    assert ray.get(c.get_log.remote()) == ["first", "second", "third", "fourth", *range(5, 50)]


def test_handle_passed_to_task(cluster):
    c = Counter.remote()
    assert ray.get(call_from_task.remote(c, 10)) == list(range(1, 11))
    # the driver sees the increments the task made
    assert ray.get(c.incr.remote()) == 11


def test_handle_passed_to_actor(cluster):
    target = Counter.remote()
    caller = Caller.remote(target)
    assert ray.get(caller.bump.remote(5)) == [1, 2, 3, 4, 5]
    other = Counter.remote(100)
    assert ray.get(caller.bump_given.remote(other, 3)) == [101, 102, 103]
    assert ray.get([target.value.remote(), other.value.remote()]) == [5, 103]


def test_handle_inside_a_container_argument(cluster):
    c = Counter.remote()
    assert ray.get(call_from_task.remote(c, 2)) == [1, 2]

    @ray.remote
    def use_nested(holder):
        return ray.get(holder["actor"].incr.remote(10))

    assert ray.get(use_nested.remote({"actor": c})) == 12


def test_method_exception_fails_only_that_call(cluster):
    c = Counter.remote()
    assert ray.get(c.incr.remote()) == 1
    ref = c.fail.remote("bad key")
    with pytest.raises(KeyError) as info:
        ray.get(ref)
    err = info.value
    assert isinstance(err, RayTaskError) and isinstance(err, KeyError)
    assert "bad key" in str(err)
    # the actor lives on with its state (including what fail() changed before raising)
    assert ray.get(c.incr.remote()) == 102
    assert actor_state(c)["state"] == "ALIVE"


def test_retry_exceptions_retries_a_method_on_the_same_actor(cluster):
    @ray.remote(max_task_retries=2)
    class Flaky:
        def __init__(self):
            self.attempts = 0

        def succeed_third_time(self):
            self.attempts += 1
            if self.attempts < 3:
                raise ValueError(f"attempt {self.attempts}")
            return self.attempts

    assert ray.get(Flaky.remote().succeed_third_time.options(retry_exceptions=True).remote()) == 3
    # without retry_exceptions an application error is not retried
    with pytest.raises(ValueError, match="attempt 1"):
        ray.get(Flaky.remote().succeed_third_time.remote())
    only_value_errors = Flaky.remote().succeed_third_time.options(retry_exceptions=[KeyError]).remote()
    with pytest.raises(ValueError, match="attempt 1"):
        ray.get(only_value_errors)


def test_constructor_exception_surfaces_on_every_call(cluster):
    @ray.remote
    class Broken:
        def __init__(self):
            raise ValueError("constructor exploded: code 42")

        def ping(self):
            return "pong"

    b = Broken.remote()
    refs = [b.ping.remote() for _ in range(3)]
    for ref in refs:
        with pytest.raises(RayActorError, match="constructor exploded: code 42"):
            ray.get(ref, timeout=30)
    row = wait_state(b, "DEAD")
    assert "constructor" in row["death_cause"]
    # calls made after the death is known fail the same way
    with pytest.raises(ActorDiedError, match="constructor exploded: code 42"):
        ray.get(b.ping.remote(), timeout=30)


def test_kill_no_restart_then_calls_raise_with_cause(cluster):
    c = Counter.options(max_restarts=3).remote()
    assert ray.get(c.incr.remote()) == 1
    pid = actor_state(c)["pid"]
    ray.kill(c, no_restart=True)
    for _ in range(2):
        with pytest.raises(RayActorError) as info:
            ray.get(c.incr.remote(), timeout=30)
        assert isinstance(info.value, ActorDiedError)
        assert "killed by microray.kill()" in str(info.value)
    row = wait_state(c, "DEAD")
    assert row["num_restarts"] == 0  # no_restart=True: max_restarts is not used
    assert "kill" in row["death_cause"]
    wait_for(lambda: not pid_alive(pid), what=f"the killed actor's process {pid} to exit")


def test_kill_rejects_non_handles(cluster):
    with pytest.raises(ValueError):
        ray.kill("not an actor")


def test_many_actors_created_at_once_all_become_alive(cluster):
    """20 actors created together (20 worker processes started and connected to under
    load) all come up ALIVE, none is declared dead on the way."""
    actors = [Counter.remote(i) for i in range(20)]
    assert ray.get([a.incr.remote() for a in actors], timeout=120) == list(range(1, 21))
    rows = [actor_state(a) for a in actors]
    assert {r["state"] for r in rows} == {"ALIVE"}
    assert {r["num_restarts"] for r in rows} == {0}
    assert len({r["pid"] for r in rows}) == 20
    for a in actors:
        ray.kill(a)
