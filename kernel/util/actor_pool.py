"""``ActorPool``: spread work over a fixed set of actors (Ray's ``ray.util.ActorPool``).

Written only against microray's public API, so it doubles as an example of it. It
behaves as Ray's does: ``map``/``map_unordered`` submit every value when called (not
when iterated) and first drop what earlier ``submit`` calls left unread; ``fn`` may
return one ref or a list of refs (a method with ``num_returns > 1``); a timed-out
``get_next(..., ignore_if_timedout=True)`` drops that task and raises ``TimeoutError``;
an actor that died is not used again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import microray
from microray.exceptions import ActorDiedError

_TIMED_OUT = "Timed out waiting for result"


def _key(future: Any) -> Any:
    """A hashable key for what ``fn`` returned: a ref, or the tuple of a list of refs."""
    return tuple(future) if isinstance(future, list) else future


def _refs(future: Any) -> list:
    return list(future) if isinstance(future, (list, tuple)) else [future]


class ActorPool:
    """Run ``fn(actor, value)`` calls on whichever actor of the pool is free.

    >>> pool = ActorPool([Worker.remote(), Worker.remote()])
    >>> list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3]))
    [2, 4, 6]
    """

    def __init__(self, actors: Iterable[Any]) -> None:
        self._idle_actors = list(actors)
        self._future_to_actor: dict[Any, tuple[int, Any]] = {}  # _key(future) -> (index, actor)
        self._index_to_future: dict[int, Any] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits: list[tuple[Callable, Any]] = []

    # -- mapping ---------------------------------------------------------------------
    def map(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]) -> Iterator[Any]:
        """Results of ``fn`` over ``values``, in order. Every value is submitted now;
        results that earlier ``submit`` calls left unread are dropped first (ones still
        running are ignored, as in Ray)."""
        while self.has_next():
            try:
                self.get_next(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass
        for v in values:
            self.submit(fn, v)
        return self._in_order()

    def map_unordered(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]) -> Iterator[Any]:
        """Results of ``fn`` over ``values``, as they finish. Every value is submitted
        now, after the results earlier ``submit`` calls left unread have finished (and
        are dropped)."""
        while self.has_next():
            self.get_next_unordered()
        for v in values:
            self.submit(fn, v)
        return self._as_finished()

    def _in_order(self) -> Iterator[Any]:
        while self.has_next():
            yield self.get_next()

    def _as_finished(self) -> Iterator[Any]:
        while self.has_next():
            yield self.get_next_unordered()

    # -- submitting --------------------------------------------------------------------
    def submit(self, fn: Callable[[Any, Any], Any], value: Any) -> None:
        """Schedule ``fn(actor, value)`` on a free actor, or queue it until one is free.
        ``fn`` returns the call's ref (or its list of refs)."""
        if self._idle_actors:
            actor = self._idle_actors.pop()
            future = fn(actor, value)
            self._future_to_actor[_key(future)] = (self._next_task_index, actor)
            self._index_to_future[self._next_task_index] = future
            self._next_task_index += 1
        else:
            self._pending_submits.append((fn, value))

    def has_next(self) -> bool:
        """Whether any submitted result has not been returned yet."""
        return bool(self._future_to_actor)

    def has_free(self) -> bool:
        """Whether an actor is idle and nothing waits for one."""
        return bool(self._idle_actors) and not self._pending_submits

    # -- results ---------------------------------------------------------------------------
    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order, waiting up to ``timeout`` seconds
        (``TimeoutError``; with ``ignore_if_timedout`` the task is dropped too)."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        future = self._index_to_future[self._next_return_index]
        timed_out = False
        if timeout is not None:
            refs = _refs(future)
            ready, _ = microray.wait(refs, num_returns=len(refs), timeout=timeout)
            if len(ready) < len(refs):
                if not ignore_if_timedout:
                    raise TimeoutError(_TIMED_OUT)
                timed_out = True
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(_key(future))
        if timed_out:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMED_OUT}. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def get_next_unordered(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result to finish, whatever its submission order, waiting up to
        ``timeout`` seconds (``TimeoutError``; with ``ignore_if_timedout`` the oldest
        task is dropped too)."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        by_ref = {_refs(key)[0]: key for key in self._future_to_actor}  # one ref per call is enough
        ready, _ = microray.wait(list(by_ref), num_returns=1, timeout=timeout)
        if ready:
            key = by_ref[ready[0]]
        elif not ignore_if_timedout:
            raise TimeoutError(_TIMED_OUT)
        else:
            key = next(iter(self._future_to_actor))
        index, actor = self._future_to_actor.pop(key)
        future = self._index_to_future.pop(index)
        self._next_return_index = max(self._next_return_index, index + 1)
        if not ready:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMED_OUT}. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def _get_result(self, future: Any, actor: Any) -> Any:
        alive = True
        try:
            return microray.get(future)
        except ActorDiedError:
            alive = False
            raise
        finally:
            self._return_actor(actor, alive)

    # -- the pool ------------------------------------------------------------------------
    def _return_actor(self, actor: Any, alive: bool = True) -> None:
        if alive:  # a dead actor would take every later submit and never answer
            self._idle_actors.append(actor)
        if self._pending_submits and self._idle_actors:
            self.submit(*self._pending_submits.pop(0))

    def push(self, actor: Any) -> None:
        """Add an idle actor to the pool."""
        busy = {a for _, a in self._future_to_actor.values()}
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)

    def pop_idle(self) -> Any | None:
        """Remove and return an idle actor, or None."""
        if self.has_free():
            return self._idle_actors.pop()
        return None
