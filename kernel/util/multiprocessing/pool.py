"""``Pool``: Python's ``multiprocessing.Pool`` over microray actors (Ray's
``ray.util.multiprocessing.Pool``). Written only against microray's public API.

Each of the pool's processes is an actor (``num_cpus=0`` unless ``ray_remote_args`` say
otherwise, as in Ray) that runs the pool's initializer once, then chunks of calls: a
chunk is one actor call that runs the function over several arguments and returns their
values, or what each call raised. Chunks go to the actors in turn. As in Ray, the pool
connects this process to a cluster when it is not connected yet: the one at
``ray_address`` or ``MICRORAY_ADDRESS``, else a new one-node cluster of ``processes``
CPUs (all of the machine's by default).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

import microray
from microray.util.multiprocessing.results import (
    AsyncResult,
    Batch,
    IMapIterator,
    TaskFailure,
)

__all__ = ["AsyncResult", "IMapIterator", "Pool"]


class _PoolActor:
    """One process of the pool."""

    def __init__(self, initializer: Callable[..., Any] | None, initargs: Iterable[Any] | None) -> None:
        if initializer is not None:
            initializer(*(initargs or ()))

    def ping(self) -> None:
        """Answers once the initializer has run."""

    def run_batch(self, func: Callable[..., Any], batch: Batch) -> list[Any]:
        results: list[Any] = []
        for args, kwargs in batch:
            try:
                results.append(func(*args, **kwargs))
            except Exception as exc:  # noqa: BLE001 -- the caller's get() raises it
                results.append(TaskFailure(exc, traceback.format_exc()))
        return results


class _Process:
    """A pool actor and how many chunks it was sent."""

    __slots__ = ("actor", "chunks")

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.chunks = 0


def _check_positive(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{what}' must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"'{what}' must be at least 1, got {value}")


class Pool:
    """A pool of actors with the API of ``multiprocessing.Pool``.

    ``processes``: how many actors (default: one per CPU of the cluster; no more than
    the cluster's CPUs). ``initializer(*initargs)`` runs in each actor when it starts.
    ``maxtasksperchild``: an actor that was sent that many chunks is replaced by a new
    one, after it has run them. ``context`` is ignored (with a warning), as in Ray.
    ``ray_address``: the cluster to connect to when this process is not connected yet.
    ``ray_remote_args``: options of the actors (``num_cpus``, ``resources``,
    ``scheduling_strategy``, ``runtime_env``, ...).

    >>> with Pool(2) as pool:
    ...     pool.map(abs, [-1, -2, 3])
    [1, 2, 3]
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] | None = None,
        maxtasksperchild: int | None = None,
        context: Any = None,
        ray_address: str | None = None,
        ray_remote_args: dict[str, Any] | None = None,
    ) -> None:
        if processes is not None:
            _check_positive(processes, "processes")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and maxtasksperchild != 0:
            _check_positive(maxtasksperchild, "maxtasksperchild")
        if context is not None:
            warnings.warn("Pool(context=...) is ignored: the pool's processes are microray actors, "
                          "started by the cluster", stacklevel=2)
        self._initializer = initializer
        self._initargs = tuple(initargs) if initargs is not None else None
        self._maxtasks = maxtasksperchild or 0  # 0: no limit (None and 0 alike, as in Ray)
        self._closed = False
        # _lock: sending work (user threads only: it is held across actor calls, which may
        # wait on microray's io thread); _results_lock: what the io thread touches when a
        # result is in, never held across a microray call
        self._lock = threading.RLock()
        self._results_lock = threading.Lock()
        self._turn = itertools.count()
        self._retired: list[tuple[Any, Any]] = []  # (actor, ref of its __ray_terminate__ call)
        self._pending: set[AsyncResult] = set()
        self._iterators: weakref.WeakSet[IMapIterator] = weakref.WeakSet()
        self._callbacks: concurrent.futures.ThreadPoolExecutor | None = None
        processes = self._connect(processes, ray_address)
        self._actor_class = microray.remote(num_cpus=0)(_PoolActor).options(**(ray_remote_args or {}))
        self._processes = processes  # the standard library's attribute
        self._workers = [_Process(self._new_actor()) for _ in range(processes)]
        microray.get([p.actor.ping.remote() for p in self._workers])

    # -- starting ----------------------------------------------------------------------------
    @staticmethod
    def _connect(processes: int | None, ray_address: str | None) -> int:
        """Connect to a cluster unless connected; how many actors the pool gets."""
        if not microray.is_initialized():
            if ray_address is not None and ray_address != "local":
                microray.init(address=ray_address)
            elif ray_address is None and os.environ.get("MICRORAY_ADDRESS"):
                microray.init()
            else:
                microray.init(num_cpus=processes)
        cpus = int(microray.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = cpus
        if processes <= 0:
            raise ValueError("Processes in the pool must be >0 (the cluster has no CPU).")
        if cpus < processes:
            raise ValueError(f"Tried to start a pool with {processes} processes on an existing cluster, "
                             f"but there are only {cpus} CPUs in the cluster.")
        return processes

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self._initializer, self._initargs)

    def _size(self) -> int:
        return len(self._workers)

    # -- sending work -----------------------------------------------------------------------
    def _submit(self, func: Callable[..., Any], batch: Batch) -> Any:
        """Send one chunk to the next actor in turn; the ref of its values."""
        with self._lock:
            index = next(self._turn) % len(self._workers)
            process = self._workers[index]
            ref = process.actor.run_batch.remote(func, batch)
            process.chunks += 1
            if self._maxtasks and process.chunks >= self._maxtasks:
                self._retire(process.actor)
                self._workers[index] = _Process(self._new_actor())
        return ref

    def _retire(self, actor: Any) -> None:
        """Let ``actor`` exit once it has run the calls it was sent (and forget the
        retired actors that have exited)."""
        if self._retired:
            refs = [ref for _, ref in self._retired]
            _, not_done = microray.wait(refs, num_returns=len(refs), timeout=0)
            exiting = set(not_done)
            self._retired = [(a, ref) for a, ref in self._retired if ref in exiting]
        self._retired.append((actor, actor.__ray_terminate__.remote()))

    def _chunks(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None,
                star: bool) -> list[Any]:
        """Send ``iterable``'s arguments in chunks; the refs of the chunks, in order."""
        args = list(iterable)
        if chunksize is None:
            # as in Ray and the standard library: about four chunks per process
            chunksize, extra = divmod(len(args), len(self._workers) * 4)
            chunksize += 1 if extra else 0
        else:
            _check_positive(chunksize, "chunksize")
        refs = []
        for start in range(0, len(args), chunksize or 1):
            chunk = args[start:start + chunksize]
            refs.append(self._submit(func, [(tuple(a) if star else (a,), {}) for a in chunk]))
        return refs

    def _map_async(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None, star: bool,
                   callback: Callable[[Any], object] | None,
                   error_callback: Callable[[BaseException], object] | None) -> AsyncResult:
        self._check_running()
        return self._track(AsyncResult(self, self._chunks(func, iterable, chunksize, star), False,
                                       callback, error_callback))

    def _track(self, result: AsyncResult) -> AsyncResult:
        with self._results_lock:
            if not result.ready():
                self._pending.add(result)
        return result

    def _forget(self, result: AsyncResult) -> None:
        with self._results_lock:
            self._pending.discard(result)

    def _run_callbacks(self, result: AsyncResult) -> None:
        """A result is in: complete it on the pool's callback thread when it has a
        callback to run (never on the thread that delivered the value), else at once."""
        if result.has_callbacks():
            with self._results_lock:
                if self._callbacks is None:
                    self._callbacks = concurrent.futures.ThreadPoolExecutor(
                        1, thread_name_prefix="microray-pool-callbacks")
                executor = self._callbacks
            try:
                executor.submit(result._complete)
                return
            except RuntimeError:  # the interpreter is exiting: no thread can start now
                pass
        result._complete()

    def _check_running(self) -> None:
        if self._closed:
            raise ValueError("Pool not running")

    # -- the standard library's API --------------------------------------------------------
    def apply(self, func: Callable[..., Any], args: Iterable[Any] | None = None,
              kwargs: dict[str, Any] | None = None, *, kwds: dict[str, Any] | None = None) -> Any:
        """``func(*args, **kwargs)`` on one of the actors; waits for its value."""
        return self.apply_async(func, args, kwargs, kwds=kwds).get()

    def apply_async(self, func: Callable[..., Any], args: Iterable[Any] | None = None,
                    kwargs: dict[str, Any] | None = None, callback: Callable[[Any], object] | None = None,
                    error_callback: Callable[[BaseException], object] | None = None, *,
                    kwds: dict[str, Any] | None = None) -> AsyncResult:
        """``func(*args, **kwargs)`` on one of the actors; an ``AsyncResult`` of its value.
        ``kwds`` is the standard library's name for ``kwargs`` (Ray's); either works."""
        if kwargs is not None and kwds is not None:
            raise TypeError("apply_async() takes 'kwargs' or 'kwds', not both")
        self._check_running()
        call = (tuple(args or ()), dict(kwargs if kwargs is not None else kwds or {}))
        return self._track(AsyncResult(self, [self._submit(func, [call])], True, callback, error_callback))

    def map(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int | None = None) -> list[Any]:
        """``[func(x) for x in iterable]``, run on the actors in chunks of ``chunksize``
        arguments (default: about four chunks per actor)."""
        return self._map_async(func, iterable, chunksize, False, None, None).get()

    def map_async(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int | None = None,
                  callback: Callable[[list[Any]], object] | None = None,
                  error_callback: Callable[[BaseException], object] | None = None) -> AsyncResult:
        """``map`` without waiting: an ``AsyncResult`` of the list of values."""
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                chunksize: int | None = None) -> list[Any]:
        """``[func(*args) for args in iterable]``, in chunks as ``map``."""
        return self._map_async(func, iterable, chunksize, True, None, None).get()

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                      chunksize: Any = None, callback: Callable[[list[Any]], object] | None = None,
                      error_callback: Callable[[BaseException], object] | None = None) -> AsyncResult:
        """``starmap`` without waiting. Takes the standard library's arguments
        (``chunksize, callback, error_callback``) and Ray's (``callback, error_callback``):
        a callable third argument is the callback."""
        if callable(chunksize):  # Ray's order
            ray_callback: Any = chunksize
            ray_error_callback: Any = callback
            return self._map_async(func, iterable, None, True, ray_callback, ray_error_callback)
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int | None = 1) -> Iterator[Any]:
        """``map`` as an iterator, in argument order; sends one chunk per actor at a
        time (so ``iterable`` may be long, or endless)."""
        return self._imap(func, iterable, chunksize, ordered=True)

    def imap_unordered(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                       chunksize: int | None = 1) -> Iterator[Any]:
        """``imap``, in the order the values come back."""
        return self._imap(func, iterable, chunksize, ordered=False)

    def _imap(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int | None,
              ordered: bool) -> IMapIterator:
        self._check_running()
        if chunksize is None:  # as in Ray: about four chunks per actor when the length is known
            chunksize = 1
            if isinstance(iterable, Sized) and not isinstance(iterable, Iterator):
                chunksize = max(1, -(-len(iterable) // (len(self._workers) * 4)))
        _check_positive(chunksize, "chunksize")
        iterator = IMapIterator(self, func, iterable, chunksize, ordered)
        self._iterators.add(iterator)
        return iterator

    # -- ending -----------------------------------------------------------------------------
    def close(self) -> None:
        """Take no more work; the actors exit once they have run the work sent so far
        (the chunks of running ``imap`` iterators not sent yet are sent first)."""
        if self._closed:
            return
        self._closed = True
        for iterator in list(self._iterators):
            iterator._send_all()
        with self._lock:
            for process in self._workers:
                self._retire(process.actor)

    def terminate(self) -> None:
        """Stop every actor now, without finishing the work sent (its results raise
        ``ActorDiedError``). Leaving a ``with Pool() as pool:`` block calls it."""
        self._closed = True
        with self._lock:
            actors = [p.actor for p in self._workers] + [actor for actor, _ in self._retired]
        for actor in actors:
            microray.kill(actor)

    def join(self) -> None:
        """Wait for the actors of a closed (or terminated) pool to exit, and for every
        result's callbacks to have run."""
        if not self._closed:
            raise ValueError("Pool is still running")
        with self._lock:
            stopping = [ref for _, ref in self._retired]
        if stopping:
            microray.wait(stopping, num_returns=len(stopping))
        with self._results_lock:
            pending = list(self._pending)
        for result in pending:
            result.wait()
        with self._results_lock:
            executor, self._callbacks = self._callbacks, None
        if executor is not None:
            executor.shutdown(wait=True)

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()
