"""cancel() on actor calls, as in Ray: a call still waiting never runs; a running call of a
sync or threaded actor is not interrupted (the actor has state) but sees is_canceled(), and
its caller gets TaskCancelledError; a running or waiting call of an async actor has its
asyncio task cancelled (asyncio.CancelledError in the method)."""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest

import microray as ray
from microray.exceptions import TaskCancelledError
from microray.testing.processes import wait_for

pytestmark = pytest.mark.timeout(120)


@ray.remote
class SyncActor:
    def __init__(self) -> None:
        self.running = False
        self.saw_cancel = False
        self.calls: list[str] = []

    def loop(self, deadline_s: float, started: str) -> str:
        self.running = True
        pathlib.Path(started).touch()
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if ray.get_runtime_context().is_canceled():
                self.saw_cancel = True
                return "stopped"
            time.sleep(0.01)
        return "deadline"

    def record(self, name: str) -> str:
        self.calls.append(name)
        return name

    def state(self) -> tuple[bool, bool, list[str]]:
        return self.running, self.saw_cancel, self.calls


def test_a_running_sync_actor_call_is_not_interrupted_and_its_caller_gets_task_cancelled(cluster, tmp_path):
    actor = SyncActor.remote()
    started = tmp_path / "started"
    ref = actor.loop.remote(60, str(started))
    waiting = actor.record.remote("queued behind the loop")
    wait_for(started.exists, timeout=60, what="the loop to start")
    ray.cancel(waiting)  # still waiting: it never runs
    with pytest.raises(TaskCancelledError):
        ray.get(waiting, timeout=30)
    with pytest.raises(ValueError, match="force=True is not supported for actor tasks"):
        ray.cancel(ref, force=True)
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=60)
    running, saw_cancel, calls = ray.get(actor.state.remote(), timeout=30)
    assert running and saw_cancel, "the method ran on and saw is_canceled() turn True"
    assert calls == []
    assert ray.get(actor.record.remote("after"), timeout=30) == "after"  # the actor lives on


@ray.remote
class AsyncActor:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.started = asyncio.Event()

    async def slow(self, name: str) -> str:
        self.events.append(f"{name} started")
        self.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.events.append(f"{name} cancelled")
            raise
        return name

    async def wait_started(self) -> bool:
        await asyncio.wait_for(self.started.wait(), 30)
        return True

    async def seen(self) -> list[str]:
        return list(self.events)


def test_a_running_async_actor_call_has_its_asyncio_task_cancelled(cluster):
    actor = AsyncActor.remote()
    ref = actor.slow.remote("a")
    assert ray.get(actor.wait_started.remote(), timeout=30)
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=30)
    assert ray.get(actor.seen.remote(), timeout=30) == ["a started", "a cancelled"]


@ray.remote(concurrency_groups={"work": 1})
class OneAtATime:
    """Its ``slow`` calls run one at a time (group "work"); ``seen`` runs beside them."""

    def __init__(self) -> None:
        self.events: list[str] = []

    @ray.method(concurrency_group="work")
    async def slow(self, name: str, seconds: float) -> str:
        self.events.append(f"{name} started")
        await asyncio.sleep(seconds)
        return name

    async def seen(self) -> list[str]:
        return list(self.events)


def test_an_async_actor_call_waiting_for_its_slot_is_cancelled_and_never_runs(cluster):
    actor = OneAtATime.remote()
    first = actor.slow.remote("first", 1.0)
    second = actor.slow.remote("second", 0)
    wait_for(lambda: ray.get(actor.seen.remote(), timeout=30) == ["first started"], timeout=30,
             what="the first call to hold the actor's only slot")
    ray.cancel(second)
    with pytest.raises(TaskCancelledError):
        ray.get(second, timeout=30)
    assert ray.get(first, timeout=30) == "first"
    assert ray.get(actor.seen.remote(), timeout=30) == ["first started"]


def test_is_canceled_in_an_async_actor_is_an_error(cluster):
    @ray.remote
    class Asks:
        async def ask(self):
            try:
                return ray.get_runtime_context().is_canceled()
            except RuntimeError as exc:
                return str(exc)

    answer = ray.get(Asks.remote().ask.remote(), timeout=30)
    assert isinstance(answer, str) and "async actor" in answer, answer


# -- generators -------------------------------------------------------------------------
def _drain(gen, timeout: float = 30) -> tuple[list, BaseException | None]:
    """The values a streaming generator's refs hold, and the error that ended it (if any)."""
    values: list = []
    for ref in gen:
        try:
            values.append(ray.get(ref, timeout=timeout))
        except TaskCancelledError as exc:
            return values, exc
    return values, None


@ray.remote
def counting(n: int, started: str):
    for i in range(n):
        if i == 1:
            pathlib.Path(started).touch()
        yield i
        time.sleep(0.05)


def test_a_cancelled_generator_task_ends_its_stream_with_task_cancelled(cluster, tmp_path):
    started = tmp_path / "started"
    gen = counting.options(num_returns="streaming").remote(400, str(started))
    wait_for(started.exists, timeout=60, what="the generator to yield")
    ray.cancel(gen)
    values, error = _drain(gen)
    assert isinstance(error, TaskCancelledError), (values, error)
    assert values == list(range(len(values))) and len(values) < 400


@ray.remote
class Streams:
    def __init__(self) -> None:
        self.sent = 0

    def numbers(self, n: int, started: str):
        for i in range(n):
            self.sent = i + 1
            if i == 1:
                pathlib.Path(started).touch()
            yield i
            time.sleep(0.05)

    def how_many_sent(self) -> int:
        return self.sent


def test_a_cancelled_sync_actor_generator_stops_at_its_next_item(cluster, tmp_path):
    actor = Streams.remote()
    started = tmp_path / "started"
    gen = actor.numbers.options(num_returns="streaming").remote(400, str(started))
    wait_for(started.exists, timeout=60, what="the generator to yield")
    ray.cancel(gen)
    values, error = _drain(gen)
    assert isinstance(error, TaskCancelledError), (values, error)
    sent = ray.get(actor.how_many_sent.remote(), timeout=30)
    assert sent < 400 and values == list(range(len(values))) and len(values) <= sent


@ray.remote
class AsyncStreams:
    async def numbers(self, n: int):
        for i in range(n):
            yield i
            await asyncio.sleep(0.05)

    def blocking(self, seconds: float) -> str:  # a plain method of an async actor: it blocks the loop
        time.sleep(seconds)
        return "value kept"


def test_a_cancelled_async_actor_generator_ends_with_task_cancelled(cluster):
    gen = AsyncStreams.remote().numbers.options(num_returns="streaming").remote(400)
    first = next(gen)
    assert ray.get(first, timeout=30) == 0
    ray.cancel(gen)
    values, error = _drain(gen)
    assert isinstance(error, TaskCancelledError), (values, error)
    assert len(values) < 399


def test_a_plain_method_of_an_async_actor_cancelled_while_it_runs_drops_its_value(cluster):
    actor = AsyncStreams.remote()
    ref = actor.blocking.remote(1.5)
    time.sleep(0.5)  # (while it runs: a cancel before it starts would also end TaskCancelledError)
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=30)
