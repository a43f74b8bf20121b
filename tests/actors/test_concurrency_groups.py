"""Concurrency groups (Ray's ``concurrency_groups={"io": 2}``): each group runs its
calls with its own limit, independently of the others, in threaded and async actors.

Overlap is proven with events and barriers (a call that needs another call of a
group to run at the same time), never with wall-clock bounds; every wait has a
generous deadline so a broken build fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import microray as ray
from microray.exceptions import RayTaskError

WAIT_S = 30.0


@ray.remote(concurrency_groups={"io": 2, "signal": 1})
class Threaded:
    def __init__(self):
        self.lock = threading.Lock()
        self.event = threading.Event()
        self.barrier = threading.Barrier(2, timeout=WAIT_S)
        self.running = {"io": 0, "default": 0}
        self.peak = {"io": 0, "default": 0}

    def _enter(self, group):
        with self.lock:
            self.running[group] += 1
            self.peak[group] = max(self.peak[group], self.running[group])

    def _leave(self, group):
        with self.lock:
            self.running[group] -= 1

    @ray.method(concurrency_group="io")
    def pair_up(self):
        """Returns only when a second io call runs at the same time."""
        self._enter("io")
        try:
            self.barrier.wait()
        finally:
            self._leave("io")
        return threading.current_thread().name

    def wait_for_signal(self):  # default group: one call at a time
        self._enter("default")
        try:
            return self.event.wait(WAIT_S)
        finally:
            self._leave("default")

    @ray.method(concurrency_group="signal")
    def signal(self):
        self.event.set()
        return threading.current_thread().name

    def peaks(self):
        return self.peak


@ray.remote(concurrency_groups={"io": 1})
class AsyncActor:
    def __init__(self):
        self.event = asyncio.Event()
        self.running = 0
        self.peak = 0

    async def wait_for_signal(self):
        await asyncio.wait_for(self.event.wait(), WAIT_S)
        return True

    @ray.method(concurrency_group="io")
    async def guarded(self):
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1

    async def signal(self):
        self.event.set()

    async def peak_seen(self):
        return self.peak


def test_threaded_groups_run_independently_with_their_own_limits(cluster):
    a = Threaded.remote()
    # the default group (max_concurrency 1) waits for a call of another group: it would
    # wait out its deadline (and return False) if groups shared one thread
    waiting = a.wait_for_signal.remote()
    names = ray.get([a.pair_up.remote() for _ in range(4)], timeout=WAIT_S * 2)
    assert all(n.startswith("microray-actor-io") for n in names), names
    assert ray.get(a.signal.remote()).startswith("microray-actor-signal")
    assert ray.get(waiting, timeout=WAIT_S * 2) is True
    assert ray.get(a.peaks.remote()) == {"io": 2, "default": 1}


def test_call_options_choose_the_group(cluster):
    a = Threaded.remote()
    waiting = a.wait_for_signal.remote()
    # peaks is in the default group, which the waiting call occupies: in "io" it runs now
    assert ray.get(a.peaks.options(concurrency_group="io").remote(), timeout=WAIT_S)["default"] == 1
    ray.get(a.signal.remote())
    assert ray.get(waiting, timeout=WAIT_S * 2) is True


def test_unknown_group_at_call_time_fails_that_call(cluster):
    a = Threaded.remote()
    with pytest.raises(RayTaskError, match="'nope'") as info:
        ray.get(a.peaks.options(concurrency_group="nope").remote(), timeout=WAIT_S)
    assert isinstance(info.value, ValueError)
    assert ray.get(a.peaks.remote(), timeout=WAIT_S) == {"io": 0, "default": 0}  # the actor lives on


def test_async_groups_have_their_own_semaphores(cluster):
    a = AsyncActor.remote()
    waiting = a.wait_for_signal.remote()
    ray.get([a.guarded.remote() for _ in range(6)], timeout=WAIT_S)
    assert ray.get(a.peak_seen.remote()) == 1  # the io group's limit
    ray.get(a.signal.remote())
    assert ray.get(waiting, timeout=WAIT_S) is True


def test_group_options_are_checked_when_the_class_is_made():
    with pytest.raises(ValueError, match="concurrency group 'io'"):

        @ray.remote
        class Undeclared:
            @ray.method(concurrency_group="io")
            def f(self):
                pass

    with pytest.raises(ValueError, match="expected an int >= 1"):
        ray.remote(concurrency_groups={"io": 0})(type("Zero", (), {}))
    with pytest.raises(ValueError, match="concurrency_groups"):
        ray.remote(concurrency_groups=["io"])(type("NotADict", (), {}))
    with pytest.raises(TypeError, match="unsupported option 'tensor_transport'"):
        ray.method(tensor_transport="nccl")
