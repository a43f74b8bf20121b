"""A task stream to a worker: lost at once when its node is declared dead
(``TaskStream.abandon``), not when its connection finally fails; and what it reports of
its tasks' states (RUNNING for the one the worker runs now)."""

from __future__ import annotations

import asyncio
from typing import Any

from microray.core.task_stream import StreamLost, TaskStream


class Owner:
    events = None

    def __init__(self) -> None:
        self.lost: list[tuple[TaskStream, BaseException | None]] = []

    def channel(self, address: str) -> Any:
        raise AssertionError("not used: the test hands the stream its call")

    def on_results(self, stream: TaskStream, results: list) -> None:
        raise AssertionError("no result comes from a silent worker")

    def on_stream_lost(self, stream: TaskStream, error: BaseException | None) -> None:
        self.lost.append((stream, error))


class SilentCall:
    """A ``PushTasks`` call to a machine that answers nothing: it never yields."""

    def __init__(self) -> None:
        self.cancelled = False

    def __aiter__(self) -> SilentCall:
        return self

    async def __anext__(self) -> Any:
        await asyncio.Event().wait()

    def cancel(self) -> bool:
        self.cancelled = True
        return True


def _reading(owner: Owner, node_id: str) -> tuple[TaskStream, SilentCall]:
    stream = TaskStream(owner, ("key",), "10.0.0.9:7000")
    stream.node_id = node_id
    call = SilentCall()
    stream.reader = asyncio.get_running_loop().create_task(stream._read(call))
    return stream, call


def test_an_abandoned_stream_is_lost_at_once_with_the_reason() -> None:
    async def scenario() -> None:
        owner = Owner()
        stream, call = _reading(owner, "dead-node")
        other, other_call = _reading(owner, "live-node")
        await asyncio.sleep(0)
        stream.abandon("its node dead-node was declared dead")
        stream.abandon("twice")  # a second notice changes nothing
        await asyncio.wait_for(asyncio.shield(stream.reader), 5)
        assert [s for s, _ in owner.lost] == [stream]
        error = owner.lost[0][1]
        assert isinstance(error, StreamLost) and str(error) == "its node dead-node was declared dead"
        assert stream.dead and stream.closing and call.cancelled
        assert stream.lost_reason == "its node dead-node was declared dead"
        assert not other.dead and not other_call.cancelled and not other.reader.done()
        other.reader.cancel()  # a plain cancel (the owner shutting down) is no loss
        await asyncio.gather(other.reader, return_exceptions=True)
        assert len(owner.lost) == 1 and other.closing and not other.dead

    asyncio.run(scenario())


def test_a_stream_already_ended_is_not_abandoned() -> None:
    async def scenario() -> None:
        owner = Owner()
        stream, _ = _reading(owner, "n")
        stream.reader.cancel()
        await asyncio.gather(stream.reader, return_exceptions=True)
        stream.abandon("its node n was declared dead")
        assert stream.lost_reason == "" and owner.lost == []

    asyncio.run(scenario())


class Events:
    def __init__(self) -> None:
        self.states: list[tuple[bytes, str]] = []

    def state(self, task_id: bytes, state: str, **_fields: Any) -> None:
        self.states.append((task_id, state))


def test_the_owner_reports_running_the_task_its_worker_runs_now() -> None:
    """A task sent to a worker with nothing in flight runs at once; one queued behind
    others runs once those before it are done (the worker takes them in order)."""
    from types import SimpleNamespace

    from microray.core.task_stream import TaskEntry

    owner = Owner()
    owner.events = Events()  # type: ignore[assignment]
    stream = TaskStream(owner, ("key",), "10.0.0.9:7000")  # its outbox is only filled here

    def entry(name: bytes) -> TaskEntry:
        return TaskEntry(SimpleNamespace(task_id=name, attempt=0), ("key",), [])  # type: ignore[arg-type]

    a, b, c = entry(b"a"), entry(b"b"), entry(b"c")
    stream.send([a, b])
    stream.send([c])
    assert owner.events.states == [(b"a", "RUNNING"), (b"b", "SUBMITTED_TO_WORKER"), (b"c", "SUBMITTED_TO_WORKER")]
    del stream.inflight[b"a"]  # a's result came in
    stream._head_running()
    stream._head_running()  # said once
    assert owner.events.states[3:] == [(b"b", "RUNNING")]
    del stream.inflight[b"b"], stream.inflight[b"c"]  # both done in one batch: c never reported
    stream._head_running()
    assert len(owner.events.states) == 4
    d = entry(b"d")
    stream.send([d])  # the worker is idle again
    assert owner.events.states[-1] == (b"d", "RUNNING") and d.running
