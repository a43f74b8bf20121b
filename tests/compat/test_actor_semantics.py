"""Actors as Ray documents them: ``async def __init__``, methods an instance attribute
shadows, ``get_if_exists``, async actors with many concurrent calls, mixed sync and
async methods, parameter names that look like internal ones, and killing an actor
with calls queued. Every ``get`` has a deadline, so a hang fails instead of stalling."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

import microray as ray
from microray.exceptions import ActorDiedError, RayActorError

DEADLINE = 60


@ray.remote
class AsyncInit:
    async def __init__(self, value):
        await asyncio.sleep(0)
        self.value = value
        self.loop = asyncio.get_running_loop()

    async def read(self):
        # the constructor ran on the loop that runs the methods
        return self.value, asyncio.get_running_loop() is self.loop


def test_async_init_runs_on_the_actors_loop(cluster):
    actor = AsyncInit.remote(7)
    assert ray.get(actor.read.remote(), timeout=DEADLINE) == (7, True)


def test_async_init_that_raises_kills_the_actor_with_its_error(cluster):
    @ray.remote
    class Broken:
        async def __init__(self):
            raise KeyError("no config")

        async def ping(self):
            return 1

    actor = Broken.remote()
    with pytest.raises(RayActorError, match="no config"):
        ray.get(actor.ping.remote(), timeout=DEADLINE)


@ray.remote
class Shadowed:
    def __init__(self):
        self.report = "an attribute"  # shadows the method below on the instance

    def report(self):
        return "the method"

    def shadow_later(self):
        self.later = 5
        return self.later

    def later(self):
        return "the later method"


def test_a_method_shadowed_by_an_instance_attribute_still_runs(cluster):
    # Ray calls the class's function with the instance, so the attribute does not matter
    actor = Shadowed.remote()
    assert ray.get(actor.report.remote(), timeout=DEADLINE) == "the method"
    assert ray.get(actor.shadow_later.remote(), timeout=DEADLINE) == 5
    assert ray.get(actor.later.remote(), timeout=DEADLINE) == "the later method"


@ray.remote
class Box:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def test_get_if_exists_needs_a_name(cluster):
    with pytest.raises(ValueError, match="The actor name must be specified to use `get_if_exists`"):
        Box.options(get_if_exists=True)
    with pytest.raises(ValueError, match="Actor name cannot be an empty string"):
        Box.options(name="")


def test_get_if_exists_returns_the_live_actor(cluster):
    first = Box.options(name="the-box", get_if_exists=True).remote(1)
    second = Box.options(name="the-box", get_if_exists=True).remote(2)  # arguments unused: it exists
    assert first == second
    assert ray.get(second.get.remote(), timeout=DEADLINE) == 1
    with pytest.raises(ValueError):  # without get_if_exists the name is taken
        Box.options(name="the-box").remote(3)
    ray.kill(first)
    # once it is dead, get_if_exists creates a new one
    third = Box.options(name="the-box", get_if_exists=True).remote(3)
    assert ray.get(third.get.remote(), timeout=DEADLINE) == 3
    ray.kill(third)


@ray.remote
class Gate:
    """Every call waits until ``size`` calls have arrived (an event made in __init__)."""

    def __init__(self, size):
        self.size = size
        self.arrived = 0
        self.event = asyncio.Event()

    async def enter(self, i):
        self.arrived += 1
        if self.arrived >= self.size:
            self.event.set()
        else:
            await self.event.wait()
        return i


def test_async_actor_with_large_max_concurrency_runs_every_call_at_once(cluster):
    n = 1500  # all must be in the method at once for any to return
    gate = Gate.options(max_concurrency=2 * n).remote(n)
    assert ray.get([gate.enter.remote(i) for i in range(n)], timeout=DEADLINE) == list(range(n))


@ray.remote
class Mixed:
    def __init__(self):
        self.event = asyncio.Event()
        self.count = 0

    def sync_thread(self):
        return threading.get_ident()

    async def async_thread(self):
        return threading.get_ident()

    async def wait_for_sync_calls(self):
        await self.event.wait()
        return self.count

    def bump(self, until):
        self.count += 1
        if self.count == until:
            self.event.set()
        return self.count


def test_sync_and_async_methods_of_an_async_actor_share_its_loop(cluster):
    actor = Mixed.options(max_concurrency=100_000).remote()  # no thread per slot
    sync_id, async_id = ray.get([actor.sync_thread.remote(), actor.async_thread.remote()], timeout=DEADLINE)
    assert sync_id == async_id
    waiting = actor.wait_for_sync_calls.remote()
    bumps = [actor.bump.remote(200) for _ in range(200)]
    assert ray.get(waiting, timeout=DEADLINE) == 200
    assert sorted(ray.get(bumps, timeout=DEADLINE)) == list(range(1, 201))


@ray.remote
class Collisions:
    """Parameters named like things the call path itself uses."""

    async def async_names(self, task_id, specified_cgname, name=None, options=None, num_returns=None):
        return [task_id, specified_cgname, name, options, num_returns]

    def sync_names(self, actor, method, args, kwargs, *, self_=None, function_descriptor=None, spec=None):
        return [actor, method, args, kwargs, self_, function_descriptor, spec]


def test_parameter_names_that_look_internal_are_plain_arguments(cluster):
    actor = Collisions.remote()
    got = ray.get(actor.async_names.remote(task_id="t", specified_cgname="g", name="n", options={"o": 1},
                                           num_returns=3), timeout=DEADLINE)
    assert got == ["t", "g", "n", {"o": 1}, 3]
    got = ray.get(actor.sync_names.remote(actor="a", method="m", args=(1,), kwargs={"k": 2}, self_="s",
                                          function_descriptor="fd", spec="sp"), timeout=DEADLINE)
    assert got == ["a", "m", (1,), {"k": 2}, "s", "fd", "sp"]

    @ray.remote
    def task(name, num_returns, options, max_retries):
        return [name, num_returns, options, max_retries]

    assert ray.get(task.remote(name="n", num_returns=2, options=None, max_retries=-1),
                   timeout=DEADLINE) == ["n", 2, None, -1]

    @ray.remote
    def takes_self(self):
        return self

    assert ray.get(takes_self.remote(self="me"), timeout=DEADLINE) == "me"
    assert ray.get(takes_self.options(num_cpus=0).remote(self="me"), timeout=DEADLINE) == "me"


@ray.remote(num_cpus=0)
class Stuck:
    def __init__(self):
        self.release = threading.Event()

    def pid(self):
        return os.getpid()

    def block(self):
        self.release.wait()


@ray.remote(num_cpus=0)
class AsyncStuck:
    async def pid(self):
        return os.getpid()

    async def block(self):
        await asyncio.Event().wait()


@pytest.mark.parametrize("cls, concurrency", [(Stuck, 1), (Stuck, 3), (AsyncStuck, 2)])
def test_killing_an_actor_fails_its_queued_calls(cluster, cls, concurrency):
    actor = cls.options(max_concurrency=concurrency).remote()
    ray.get(actor.pid.remote(), timeout=DEADLINE)
    calls = [actor.block.remote() for _ in range(20)]  # a few run, the rest wait in line
    ray.kill(actor)
    for ref in calls:
        with pytest.raises(ActorDiedError):
            ray.get(ref, timeout=DEADLINE)


def test_exit_actor_with_sync_calls_interleaved(cluster):
    @ray.remote
    class ExitAfter:
        def __init__(self, n):
            self.remaining = n
            self.event = asyncio.Event()

        async def wait_then_exit(self):
            await self.event.wait()
            ray.actor.exit_actor()

        def ping(self):
            self.remaining -= 1
            if self.remaining == 0:
                self.event.set()

    actor = ExitAfter.remote(50)
    exiting = actor.wait_then_exit.remote()
    pings = [actor.ping.remote() for _ in range(100)]
    with pytest.raises(RayActorError):
        ray.get([exiting, *pings], timeout=DEADLINE)
    with pytest.raises(RayActorError):
        ray.get(actor.ping.remote(), timeout=DEADLINE)
