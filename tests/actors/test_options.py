"""``@remote`` classes and ``.options(...)``: resources, names, runtime_env,
scheduling strategies, ``@microray.method(num_returns=...)``, option validation."""

from __future__ import annotations

import os
import time

import pytest

import microray as ray
from microray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .helpers import actor_state, wait_for, wait_state


@ray.remote
class Probe:
    def __init__(self, value=0):
        self.value = value

    def get(self):
        return self.value

    def pid(self):
        return os.getpid()

    def env(self, key):
        return os.environ.get(key)

    def node_id(self):
        return ray.get_runtime_context().get_node_id()

    @ray.method(num_returns=2)
    def pair(self, a, b):
        return a + b, a * b

    @ray.method(num_returns=3)
    def triple(self):
        return [1, 2, 3]


def cpu_available() -> float:
    return ray.available_resources().get("CPU", 0.0)


def test_remote_class_cannot_be_called_directly(cluster):
    with pytest.raises(TypeError, match=r"Probe.remote\(\)"):
        Probe()
    a = Probe.remote(5)
    with pytest.raises(TypeError, match=r"get.remote\(\)"):
        a.get()
    with pytest.raises(AttributeError, match="no method 'missing'"):
        a.missing
    assert ray.get(a.get.remote()) == 5


def test_actor_num_cpus_1_to_schedule_0_while_running(make_cluster):
    """Ray's default: an actor needs 1 CPU to be placed but holds 0 once running, so
    four default actors fit on a 2-CPU node and leave both CPUs free; an explicit
    ``num_cpus=1`` holds its CPU for the actor's lifetime."""
    make_cluster(num_cpus=2)
    actors = [Probe.remote(i) for i in range(4)]
    assert ray.get([a.get.remote() for a in actors]) == [0, 1, 2, 3]
    for a in actors:
        assert actor_state(a)["state"] == "ALIVE"
    wait_for(lambda: cpu_available() == 2.0, what="both CPUs free with 4 default actors alive")

    holder = Probe.options(num_cpus=1).remote()
    ray.get(holder.get.remote())
    wait_for(lambda: cpu_available() == 1.0, what="an explicit num_cpus=1 actor to hold one CPU")
    # Two explicit 1-CPU actors fill the node: a third stays pending until one goes.
    second = Probe.options(num_cpus=1).remote()
    ray.get(second.get.remote())
    third = Probe.options(num_cpus=1).remote()
    time.sleep(0.5)
    assert actor_state(third)["state"] == "PENDING_CREATION"
    ray.kill(holder)
    wait_state(third, "ALIVE")
    assert ray.get(third.get.remote()) == 0
    ray.kill(second)
    ray.kill(third)
    wait_for(lambda: cpu_available() == 2.0, what="CPUs back after killing the holders")


def test_unsatisfiable_resources_stay_pending(cluster):
    """An actor that needs a resource no node has is PENDING_CREATION until killed."""
    want_foo = Probe.options(resources={"foo": 1}).remote()
    want_gpu = Probe.options(num_gpus=1).remote()
    ref = want_foo.get.remote()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert actor_state(want_foo)["state"] == "PENDING_CREATION"
        assert actor_state(want_gpu)["state"] == "PENDING_CREATION"
        time.sleep(0.1)
    ready, _ = ray.wait([ref], timeout=0)
    assert not ready
    ray.kill(want_foo)
    ray.kill(want_gpu)
    row = wait_state(want_foo, "DEAD")
    assert "kill" in row["death_cause"]
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(ref, timeout=15)


def test_custom_resource_available(make_cluster):
    make_cluster(num_cpus=2, resources={"foo": 1})
    a = Probe.options(resources={"foo": 1}).remote(7)
    assert ray.get(a.get.remote()) == 7
    assert actor_state(a)["required_resources"].get("foo") == 1
    # a custom resource is held while the actor runs
    wait_for(lambda: ray.available_resources().get("foo", 0) == 0, what="'foo' held by the actor")
    b = Probe.options(resources={"foo": 1}).remote()
    time.sleep(0.5)
    assert actor_state(b)["state"] == "PENDING_CREATION"
    ray.kill(a)
    wait_state(b, "ALIVE")


def test_runtime_env_env_vars_visible_in_actor(cluster):
    a = Probe.options(runtime_env={"env_vars": {"ACTOR_TEST_VAR": "hello"}}).remote()
    plain = Probe.remote()
    assert ray.get(a.env.remote("ACTOR_TEST_VAR")) == "hello"
    assert ray.get(plain.env.remote("ACTOR_TEST_VAR")) is None
    assert ray.get(a.pid.remote()) != ray.get(plain.pid.remote())


def test_scheduling_strategies(cluster):
    node_id = ray.get_runtime_context().get_node_id()
    spread = Probe.options(scheduling_strategy="SPREAD").remote()
    pinned = Probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
    assert ray.get(spread.node_id.remote()) == node_id
    assert ray.get(pinned.node_id.remote()) == node_id
    assert actor_state(pinned)["node_id"] == node_id
    with pytest.raises(ValueError, match="scheduling_strategy"):
        Probe.options(scheduling_strategy="NOWHERE").remote()


def test_method_num_returns(cluster):
    a = Probe.remote()
    s, p = a.pair.remote(3, 4)
    assert ray.get([s, p]) == [7, 12]
    refs = a.triple.remote()
    assert len(refs) == 3 and ray.get(refs) == [1, 2, 3]
    # per-call override
    one = a.pair.options(num_returns=1).remote(2, 5)
    assert tuple(ray.get(one)) == (7, 10)


def test_options_validation(cluster):
    with pytest.raises(ValueError, match="lifetime"):
        Probe.options(lifetime="forever")
    with pytest.raises(ValueError, match="get_if_exists"):
        Probe.options(get_if_exists=True)
    with pytest.raises(ValueError, match="max_concurrency"):
        Probe.options(max_concurrency=0)
    with pytest.raises(ValueError, match="max_restarts"):
        Probe.options(max_restarts=-2)
    with pytest.raises((ValueError, TypeError)):
        Probe.options(not_an_option=1)
