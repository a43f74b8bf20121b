"""What a ``Pool``'s calls return: ``AsyncResult`` (``apply_async``, ``map_async``,
``starmap_async``) and ``IMapIterator`` (``imap``, ``imap_unordered``).

Work goes to the pool's actors in chunks, one actor call per chunk; a call returns the
chunk's values, a ``TaskFailure`` in place of each value whose function raised. Each
result follows its calls' refs with ``ObjectRef.future()``: no thread waits on them. The
refs complete on microray's own threads, which only store the values; callbacks run on
the pool's callback thread (``Pool._run_callbacks``), as the standard library's pool
runs them on its result thread.
"""

from __future__ import annotations

import collections
import functools
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import TimeoutError
from multiprocessing.pool import RemoteTraceback  # type: ignore[attr-defined]  # not in typeshed
from typing import TYPE_CHECKING, Any

import cloudpickle
import structlog

if TYPE_CHECKING:
    import concurrent.futures

    from microray.core.object_ref import ObjectRef
    from microray.util.multiprocessing.pool import Pool

log = structlog.get_logger(__name__)

Batch = list[tuple[tuple, dict]]  # one chunk: (args, kwargs) of each call


class TaskFailure:
    """A value the function did not return: what it raised, and where (the traceback's
    text), or the error that failed the chunk's actor call as a whole (an
    ``ActorDiedError``: no traceback)."""

    def __init__(self, exc: BaseException, traceback_text: str = "") -> None:
        self.exc = exc
        self.traceback_text = traceback_text

    def __reduce__(self) -> tuple[Any, tuple[BaseException, str]]:
        """An exception that cannot be pickled travels as a ``RuntimeError`` that names
        it, so the chunk's other values still reach the caller."""
        exc = self.exc
        try:
            cloudpickle.dumps(exc)
        except Exception as err:  # noqa: BLE001 -- what it was still reaches the caller
            exc = RuntimeError(f"{type(exc).__name__}: {exc} (the exception could not be pickled: {err})")
        return TaskFailure, (exc, self.traceback_text)

    def error(self) -> BaseException:
        """The exception itself, of the type the function raised; as the standard
        library's pool does, its cause is a ``RemoteTraceback`` showing where it was raised."""
        if self.traceback_text and not isinstance(self.exc.__cause__, RemoteTraceback):
            self.exc.__cause__ = RemoteTraceback(f'\n"""\n{self.traceback_text}"""')
        return self.exc


def _chunk_of(fut: concurrent.futures.Future) -> list[Any]:
    """A finished call's values, or the one failure that stands for the whole chunk."""
    exc = fut.exception()
    return [TaskFailure(exc)] if exc is not None else list(fut.result())


def _first_failure(chunk: Iterable[Any]) -> TaskFailure | None:
    return next((item for item in chunk if isinstance(item, TaskFailure)), None)


class AsyncResult:
    """The result of ``apply_async``, ``map_async`` or ``starmap_async``, as in the
    standard library: ``get``, ``wait``, ``ready``, ``successful``.

    ``callback`` gets the value (``apply_async``) or the list of values once all are in,
    if none failed; otherwise ``error_callback`` gets the first exception to come back.
    Either has run when ``ready()`` turns True and ``get`` returns."""

    def __init__(self, pool: Pool, refs: list[ObjectRef], single: bool,
                 callback: Callable[[Any], object] | None = None,
                 error_callback: Callable[[BaseException], object] | None = None) -> None:
        self._pool = pool
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._refs: list[ObjectRef] = list(refs)  # held until the values are in
        self._chunks: list[list[Any] | None] = [None] * len(refs)
        self._left = len(refs)
        self._first_error: BaseException | None = None  # the first to come back
        if not refs:
            pool._run_callbacks(self)
        for index, ref in enumerate(refs):
            ref.future().add_done_callback(functools.partial(self._chunk_done, index))

    def _chunk_done(self, index: int, fut: concurrent.futures.Future) -> None:
        chunk = _chunk_of(fut)
        failure = _first_failure(chunk)
        with self._lock:
            self._chunks[index] = chunk
            if failure is not None and self._first_error is None:
                self._first_error = failure.error()
            self._left -= 1
            last = self._left == 0
        if last:
            self._pool._run_callbacks(self)

    def has_callbacks(self) -> bool:
        return self._callback is not None or self._error_callback is not None

    def _complete(self) -> None:
        """Run the callback that applies (an exception it raises is logged), then mark the
        result ready."""
        try:
            if self._first_error is None:
                if self._callback is not None:
                    self._callback(self._values())
            elif self._error_callback is not None:
                self._error_callback(self._first_error)
        except Exception:  # noqa: BLE001 -- a broken callback must not stop the pool's others
            log.error("pool_callback_failed", callback=repr(self._callback if self._first_error is None
                                                            else self._error_callback), exc_info=True)
        finally:
            self._refs = []
            self._done.set()
            self._pool._forget(self)

    def _values(self) -> Any:
        values = [item for chunk in self._chunks for item in chunk or ()]
        return values[0] if self._single else values

    # -- the standard library's AsyncResult ------------------------------------------------
    def ready(self) -> bool:
        """Whether the call has completed."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is ready, or ``timeout`` seconds have passed."""
        self._done.wait(timeout)

    def successful(self) -> bool:
        """Whether the call completed without raising; ``ValueError`` if it is not ready."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._first_error is None

    def get(self, timeout: float | None = None) -> Any:
        """The value (a list of values for the map calls) once ready, waiting up to
        ``timeout`` seconds (``multiprocessing.TimeoutError``). If the function raised,
        the exception it raised is raised here (the first, in argument order)."""
        if not self._done.wait(timeout):
            raise TimeoutError
        for chunk in self._chunks:
            failure = _first_failure(chunk or ())
            if failure is not None:
                raise failure.error()
        return self._values()


# the standard library's names for the kinds of result
ApplyResult = MapResult = AsyncResult


class IMapIterator:
    """The values of ``imap`` (in argument order) or ``imap_unordered`` (as their chunks
    finish). Chunks are sent as the values are read: one per actor at first, then one
    for each chunk that comes back; ``iterable`` is read no further ahead than that.
    ``next(timeout)`` raises ``multiprocessing.TimeoutError`` after ``timeout`` seconds,
    and raises the function's exception in the place of a value it did not return."""

    def __init__(self, pool: Pool, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int,
                 ordered: bool) -> None:
        self._pool = pool
        self._func = func
        self._source = iter(iterable)
        self._chunksize = chunksize
        self._ordered = ordered
        self._send_lock = threading.Lock()  # close() may send the rest from another thread
        self._arrived: queue.SimpleQueue[tuple[int, list[Any]]] = queue.SimpleQueue()
        self._out: dict[int, ObjectRef] = {}  # chunks sent, not yet read
        self._held: dict[int, list[Any]] = {}  # arrived before an earlier chunk (ordered)
        self._sent = 0
        self._next = 0  # the chunk to read next (ordered)
        self._exhausted = False
        self._values: collections.deque[Any] = collections.deque()
        for _ in range(pool._size()):
            self._send_next()

    def _send_next(self) -> bool:
        """Send the next chunk of the iterable; False when there is none."""
        with self._send_lock:
            if self._exhausted:
                return False
            chunk = list(itertools.islice(self._source, self._chunksize))
            if len(chunk) < self._chunksize:
                self._exhausted = True
            if not chunk:
                return False
            index = self._sent
            self._sent += 1
            ref = self._pool._submit(self._func, [((arg,), {}) for arg in chunk])
            self._out[index] = ref
        ref.future().add_done_callback(lambda fut: self._arrived.put((index, _chunk_of(fut))))
        return True

    def _send_all(self) -> None:
        """Send every chunk left (the pool is closing: its actors take no call after)."""
        while self._send_next():
            pass

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._values:
            if self._ordered and self._next in self._held:
                self._values.extend(self._held.pop(self._next))
                self._next += 1
                continue
            if not self._out:
                raise StopIteration
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                index, chunk = self._arrived.get(timeout=remaining)
            except queue.Empty:
                raise TimeoutError from None
            del self._out[index]
            self._send_next()
            if self._ordered:
                self._held[index] = chunk
            else:
                self._values.extend(chunk)
        value = self._values.popleft()
        if isinstance(value, TaskFailure):
            raise value.error()
        return value
