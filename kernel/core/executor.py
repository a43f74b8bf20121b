"""The worker's side of the task path: receive task batches, run them, stream results back.

Normal tasks and calls of a plain actor run one at a time on the worker's main
thread, in arrival order. An actor with ``max_concurrency > 1`` or concurrency
groups runs calls in a thread pool per group; an async actor (any ``async def``
method) runs them concurrently on one event loop, each group under its own
semaphore. The default group ("") has ``max_concurrency`` slots. The io loop only moves bytes. A result is sent as soon as its
task ends, several per message when they finish close together.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import inspect
import os
import pickle
import queue
import threading
import time
import types
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

import structlog

from microray import ids, serialization
from microray.config import Config
from microray.core import context, error_results, returns
from microray.core.memory_store import IN_STORE, SERIALIZED, VALUE
from microray.core.object_ref import ObjectRef
from microray.core.reference_counter import ReferenceCounter
from microray.core.task_spec import (
    ACTOR_CREATION,
    ACTOR_METHOD,
    APP_ERROR,
    ARG_SERIALIZED,
    ARG_VALUE,
    DYNAMIC,
    GEN_END,
    OK,
    STREAMING,
    SYSTEM_ERROR,
    TERMINATE_METHOD,
    TaskResult,
    TaskSpec,
)
from microray.exceptions import ActorDiedError, RayActorError, TaskCancelledError
from microray.protocol import common_pb2, core_worker_pb2, raylet_pb2

log = structlog.get_logger(__name__)

_FINAL = (OK, APP_ERROR, GEN_END, SYSTEM_ERROR)
RETIRE_GRACE_S = 30.0  # a retiring (max_calls) worker exits by then even if its owner never closes the stream
# a worker left without work shows its idle title after this long: one submitting a task
# at a time keeps the task's title (no two title writes per task, each a prctl)
IDLE_TITLE_AFTER_S = 0.05


class _Sink:
    """Thread-safe hand-off of result bytes to one stream, one loop wake per burst."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.out: asyncio.Queue = asyncio.Queue()
        self.pending: list[tuple[bytes, bool]] = []
        self.lock = threading.Lock()
        self.scheduled = False

    def __call__(self, result: TaskResult) -> None:
        item = (pickle.dumps(result, protocol=5), result.status in _FINAL)
        with self.lock:
            self.pending.append(item)
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self.lock:
            items, self.pending = self.pending, []
            self.scheduled = False
        self.out.put_nowait(items)


class ExecutorHost(Protocol):
    """What the executor needs of its core worker (``CoreWorker`` satisfies it)."""

    address: str
    node_id: str
    worker_id: str
    config: Config
    refs: ReferenceCounter
    object_sizes: dict[bytes, int]
    gcs: Any  # GcsStub
    raylet: Any  # RayletStub
    gpu_ids: list[int]  # the GPUs of the running task's lease (get_gpu_ids()); the executor sets them
    # identity of the job and actor the worker serves; the executor sets them
    job_id: str
    namespace: str | None
    actor_id: str | None
    actor_name: str | None
    output: Any  # core.task_output.OutputCapture: labels the lines tasks print, sets the title

    def call(self, method: Callable[..., Any], request: Any, timeout: float | None = None) -> Any: ...
    def call_in_loop(self, fn: Callable[..., Any], *args: Any) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...
    def load_function(self, function_id: bytes) -> Any: ...
    def get_objects(self, refs: Sequence[ObjectRef], timeout: float | None = None) -> list[Any]: ...
    def write_to_store(self, oid: bytes, ser: serialization.Serialized) -> None: ...
    def register_borrowed(self) -> None: ...
    def add_borrower_at(self, owner: str, oids: list[bytes], borrower: str) -> None: ...


class TaskExecutor:
    def __init__(self, cw: ExecutorHost) -> None:
        self.cw = cw
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled: set[bytes] = set()
        self.current: bytes | None = None
        self.main_thread_id = threading.main_thread().ident
        self._calls: dict[bytes, int] = {}  # function id -> tasks run, for max_calls
        self._retiring = False
        self._streams = 0  # open task streams (io loop only)
        self._retired = False  # max_calls reached: exit once every owner has closed its stream
        self._queued: dict[bytes, Any] = {}  # task id -> its result sink, until it starts
        self._queued_lock = threading.Lock()
        self._taken = False  # the main thread took a task off the queue and has not finished it
        self.ip = cw.address.rsplit(":", 1)[0]
        # actor state
        self.actor: Any = None
        self._plain_methods: dict[str, Any] = {}  # method name -> the class's function, or None
        self.actor_error: BaseException | None = None
        self.terminating = False  # __ray_terminate__ ran: later calls fail with ActorDiedError
        self.mode = "sync"  # sync | threaded | async
        # per concurrency group ("" is the default group): a thread pool (threaded) or a
        # semaphore (async)
        self.pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self.aloop: asyncio.AbstractEventLoop | None = None
        self.asems: dict[str, asyncio.Semaphore] = {}
        self._async_calls: dict[bytes, asyncio.Task | None] = {}  # task id -> its asyncio task (actor's loop)
        self.job: str | None = None  # the job whose tasks run here (cw.job_id, cw.namespace)

    # -- io loop side --------------------------------------------------------------
    async def push_stream(self, request_iterator):
        sink = _Sink(asyncio.get_running_loop())
        counts = {"received": 0, "sent": 0, "eof": False}

        async def read() -> None:
            try:
                async for batch in request_iterator:
                    for raw in batch.specs:
                        counts["received"] += 1
                        spec = pickle.loads(raw)
                        with self._queued_lock:
                            self._queued[spec.task_id] = sink
                        self.queue.put((spec, sink))
            finally:
                counts["eof"] = True
                sink.out.put_nowait([])

        reader = asyncio.get_running_loop().create_task(read())
        self._streams += 1
        try:
            while not (counts["eof"] and counts["sent"] >= counts["received"]):
                items = await sink.out.get()
                while not sink.out.empty():
                    items = items + sink.out.get_nowait()
                if not items:
                    continue
                counts["sent"] += sum(1 for _, final in items if final)
                yield core_worker_pb2.ResultBatch(results=[b for b, _ in items])
        finally:
            reader.cancel()
            self._streams -= 1
            if self._retired and not self._streams:
                self.cw.output.exit_soon(0)

    def _retire(self) -> None:
        """(io loop) max_calls reached. The result is on its way; the owner closes its
        stream when it has read it (the result says the worker is exiting), and the
        worker exits then. If the owner never does (it died), exit after a grace period."""
        self._retired = True
        loop = asyncio.get_running_loop()
        loop.call_later(RETIRE_GRACE_S, os._exit, 0)
        if not self._streams:
            self.cw.output.exit_soon(0)

    def cancel(self, task_id: bytes, force: bool) -> bool:
        with self._queued_lock:
            sink = self._queued.pop(task_id, None)
        if sink is not None:  # still waiting here: answer at once, never run it
            sink(error_results.error_result_for(task_id, TaskCancelledError(task_id.hex())))
            return True
        self.cancelled.add(task_id)
        if self.actor is not None or self.actor_error is not None:
            # never interrupted: a sync/threaded actor's method sees is_canceled(), an async one is cancelled
            call = self._async_calls.get(task_id)
            if call is not None and self.aloop is not None:
                self.aloop.call_soon_threadsafe(call.cancel)
            return True
        if self.current == task_id:
            if force:
                log.warning("task_force_cancelled", task_id=task_id.hex())
                os._exit(1)
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.main_thread_id or 0), ctypes.py_object(TaskCancelledError)
            )
        return True

    def busy(self) -> bool:
        """(any thread) Whether a task runs here or waits to run: asked by the raylet when
        the owner of this worker's lease died (busy: it kills the worker; idle: it leases
        the worker again)."""
        return self._taken or bool(self._queued)

    # -- main thread -----------------------------------------------------------------
    def run_forever(self) -> None:
        while True:
            self._taken = False
            try:
                spec, sink = self.queue.get(timeout=IDLE_TITLE_AFTER_S)
            except queue.Empty:
                self.cw.output.idle()
                spec, sink = self.queue.get()
            if spec is None:
                return
            self._taken = True  # before the task leaves _queued: busy() never misses it
            with self._queued_lock:
                if self._queued.pop(spec.task_id, None) is None:
                    continue  # cancelled while waiting; already answered
            if self.terminating and spec.kind == ACTOR_METHOD:  # after __ray_terminate__: the actor is exiting
                sink(error_results.error_result(spec, ActorDiedError(spec.actor_id, (
                    f"The actor {spec.actor_id} exited: __ray_terminate__() was called before {spec.method_name}()."))))
                continue
            if spec.kind == ACTOR_METHOD and (self.mode != "sync" or spec.concurrency_group):
                self._run_in_group(spec, sink)
                continue
            if spec.kind == ACTOR_CREATION:
                self._create_actor(spec, sink)
                continue
            retiring = False
            if spec.max_calls:
                n = self._calls[spec.function_id] = self._calls.get(spec.function_id, 0) + 1
                retiring = n >= spec.max_calls
            self._retiring = retiring
            self.execute(spec, sink)
            self._retiring = False
            if retiring:
                log.info("worker_retired", reason="max_calls", max_calls=spec.max_calls)
                self.cw.call_in_loop(self._retire)
                threading.Event().wait()  # returning would end the process before the result is sent

    def _target(self, spec: TaskSpec) -> Any:
        if spec.kind == ACTOR_METHOD:
            if self.actor_error is not None:
                raise RayActorError(spec.actor_id, f"The actor's constructor failed: {self.actor_error}")
            if spec.method_name == TERMINATE_METHOD:
                self.terminating = True  # no call after it runs
                self.cw.output.exit_soon(0, delay=0.05)
                return lambda: None
            return self._actor_method(spec.method_name)
        return self.cw.load_function(spec.function_id)

    def _actor_method(self, name: str) -> Any:
        """The actor's method ``name`` as its class defines it, as Ray calls it: an
        instance attribute of the same name does not hide the method."""
        plain = self._plain_methods.get(name, False)
        if plain is False:  # first call: is it a plain function of the class?
            attr = inspect.getattr_static(type(self.actor), name, None)
            plain = self._plain_methods[name] = attr if inspect.isfunction(attr) else None
        if plain is not None:
            return plain.__get__(self.actor)
        return getattr(self.actor, name)  # static and class methods, other descriptors

    def _enter_gpus(self, spec: TaskSpec) -> tuple[str | None, list[int]]:
        """For a task or actor given GPUs: set ``CUDA_VISIBLE_DEVICES`` (and what
        ``get_gpu_ids()`` answers) to the GPU ids its lease holds, as Ray does. Returns
        what ``_leave_gpus`` restores."""
        reply = self.cw.call(self.cw.raylet.GetWorkerGpus, raylet_pb2.WorkerIdRequest(worker_id=self.cw.worker_id), 30)
        previous = (os.environ.get("CUDA_VISIBLE_DEVICES"), getattr(self.cw, "gpu_ids", []))
        gpu_ids = list(reply.gpu_ids)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_ids)
        self.cw.gpu_ids = gpu_ids
        return previous

    def _leave_gpus(self, previous: tuple[str | None, list[int]]) -> None:
        env, gpu_ids = previous
        if env is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = env
        self.cw.gpu_ids = gpu_ids

    def _enter_job(self, job_id: str) -> None:
        """Run user code as part of the task's job, as Ray does: actors and tasks it
        creates belong to that job (so they end with it), and ``get_actor(name)`` and
        named actors created there use the job's namespace, not none."""
        if job_id == self.job or not job_id:
            return
        self.job = self.cw.job_id = job_id
        self.cw.namespace = None
        try:
            for job in self.cw.call(self.cw.gcs.GetAllJobs, common_pb2.Empty()).jobs:
                if job.job_id == job_id:
                    self.cw.namespace = job.namespace or None
        except Exception as exc:  # noqa: BLE001 -- the task still runs, without a namespace
            log.warning("job_namespace_lookup_failed", job_id=job_id, error=str(exc))

    def execute(self, spec: TaskSpec, sink: _Sink) -> None:
        if spec.kind != ACTOR_METHOD:
            self._enter_job(spec.job_id)
        if spec.task_id in self.cancelled:
            self.cancelled.discard(spec.task_id)
            sink(error_results.error_result(spec, TaskCancelledError(spec.task_id.hex())))
            return
        token = context.enter_task(spec)
        gpus = None
        in_main = threading.get_ident() == self.main_thread_id
        self.cw.output.enter(spec, in_main)
        if in_main:
            self.current = spec.task_id
        try:
            if spec.resources and spec.resources.get("GPU"):
                gpus = self._enter_gpus(spec)
            fn = self._target(spec)
            t0 = time.perf_counter()  # the run time the owner averages: a function's first load is not part of it
            args, kwargs = self._resolve_args(spec)
            if spec.num_returns == STREAMING:
                self._run_generator(spec, fn(*args, **kwargs), sink)
                return
            value = fn(*args, **kwargs)
            if in_main:
                self.current = None
            if spec.task_id in self.cancelled:  # an actor method cancelled while it ran: its value is dropped
                raise TaskCancelledError(spec.task_id.hex())
            result = self._result(spec, value, t0)
        except BaseException as exc:  # noqa: BLE001 -- every failure goes back to the owner
            if in_main:
                self.current = None
            if isinstance(exc, (TaskCancelledError, KeyboardInterrupt)) and spec.task_id in self.cancelled:
                self.cancelled.discard(spec.task_id)
                result = error_results.error_result(spec, TaskCancelledError(spec.task_id.hex()))
            elif isinstance(exc, SystemExit):
                raise
            else:
                result = error_results.app_error(spec, exc, self.ip)
        finally:
            if in_main:
                self.current = None
            if gpus is not None:
                self._leave_gpus(gpus)
            context.leave_task(token)
        if self._retiring:
            result.worker_exiting = True
        result.output_seq = self.cw.output.done()
        sink(result)

    def _run_in_group(self, spec: TaskSpec, sink: _Sink) -> None:
        """Hand an actor call to its concurrency group's pool or semaphore."""
        group = spec.concurrency_group
        if self.mode == "async" and group in self.asems:
            assert self.aloop is not None  # made with the async actor's semaphores
            asyncio.run_coroutine_threadsafe(self._execute_async(spec, sink, self.asems[group]), self.aloop)
        elif self.mode == "threaded" and group in self.pools:
            self.pools[group].submit(self.execute, spec, sink)
        else:
            known = sorted(g for g in (self.asems or self.pools) if g)
            try:  # raised, so the caller's error carries it as its traceback too
                raise ValueError(
                    f"actor method {spec.method_name!r} was called in concurrency group {group!r}, "
                    f"which the actor does not define (its concurrency_groups: {known})")
            except ValueError as exc:
                sink(error_results.app_error(spec, exc, self.ip))

    async def _execute_async(self, spec: TaskSpec, sink: _Sink, sem: asyncio.Semaphore) -> None:
        task_id = spec.task_id
        self._async_calls[task_id] = asyncio.current_task()  # cancel() cancels it from here on
        try:
            if task_id in self.cancelled:  # cancelled before it got here
                raise asyncio.CancelledError
            async with sem:
                await self._run_async(spec, sink)
        except asyncio.CancelledError:  # cancelled while waiting for its slot
            if task_id not in self.cancelled:
                raise
            sink(error_results.error_result(spec, TaskCancelledError(task_id.hex())))
        finally:
            del self._async_calls[task_id]
            self.cancelled.discard(task_id)

    async def _run_async(self, spec: TaskSpec, sink: _Sink) -> None:
        token = context.enter_task(spec)
        self.cw.output.enter(spec, False)
        try:
            fn = self._target(spec)
            t0 = time.perf_counter()
            args, kwargs = self._resolve_args(spec)
            value = fn(*args, **kwargs)
            if spec.num_returns == STREAMING:  # a generator method, async or not: stream it
                await returns.stream_async(spec, value, sink, self._store_value, self._task_error, _split_sizes)
                return
            if inspect.isawaitable(value):
                value = await value
            if spec.task_id in self.cancelled:  # (a plain method blocks the loop: the cancel came too late)
                raise TaskCancelledError(spec.task_id.hex())
            result = self._result(spec, value, t0)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, SystemExit):
                raise
            if isinstance(exc, (asyncio.CancelledError, TaskCancelledError)) and spec.task_id in self.cancelled:
                result = error_results.error_result(spec, TaskCancelledError(spec.task_id.hex()))
            else:
                result = error_results.app_error(spec, exc, self.ip)
        finally:
            context.leave_task(token)
        result.output_seq = self.cw.output.done()
        sink(result)

    # -- actors ----------------------------------------------------------------------
    def _create_actor(self, spec: TaskSpec, sink: _Sink) -> None:
        self._enter_job(spec.job_id)
        token = context.enter_task(spec)
        self.cw.output.enter(spec, True)
        opts = spec.actor_options or {}
        if opts.get("is_async", False):
            self._start_actor_loop()
        try:
            if spec.resources and spec.resources.get("GPU"):
                self._enter_gpus(spec)  # kept for the actor's life
            cls = self.cw.load_function(spec.function_id)
            args, kwargs = self._resolve_args(spec)
            self.cw.actor_id = spec.actor_id
            self.cw.actor_name = opts.get("name")
            if inspect.iscoroutinefunction(getattr(cls, "__init__", None)):
                # ``async def __init__`` (an async actor): run it on the actor's loop, as Ray does
                actor = cls.__new__(cls)
                loop = self.aloop or self._start_actor_loop()
                future = asyncio.run_coroutine_threadsafe(_in_task(spec, actor.__init__(*args, **kwargs)), loop)
                future.result()
                self.actor = actor
            else:
                self.actor = cls(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 -- the constructor's error marks the actor dead
            if isinstance(exc, SystemExit):
                raise
            self.actor_error = exc
            err = error_results.task_error(spec, exc, self.ip)
            sink(TaskResult(spec.task_id, APP_ERROR, [], err, os.getpid(), output_seq=self.cw.output.done()))
            return
        finally:
            context.leave_task(token)
        is_async = opts.get("is_async", False)
        concurrency = opts.get("max_concurrency")
        groups: dict[str, int] = opts.get("concurrency_groups") or {}
        if is_async:
            self.mode = "async"
            limits = {"": concurrency or 1000, **groups}

            async def make_sems() -> dict[str, asyncio.Semaphore]:
                return {group: asyncio.Semaphore(n) for group, n in limits.items()}

            self.asems = asyncio.run_coroutine_threadsafe(make_sems(), self.aloop or self._start_actor_loop()).result()
        elif groups or (concurrency and concurrency > 1):
            self.mode = "threaded"
            self.pools = {
                group: concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix=f"microray-actor-{group or 'default'}")
                for group, n in {"": concurrency or 1, **groups}.items()
            }
        self.cw.output.actor_created(self.actor)
        log.info("actor_created", actor_id=spec.actor_id, mode=self.mode)
        sink(TaskResult(spec.task_id, OK, [], None, os.getpid(), output_seq=self.cw.output.done()))

    def _start_actor_loop(self) -> asyncio.AbstractEventLoop:
        """An async actor's event loop, on a thread of its own, started before the
        constructor runs: ``asyncio.get_event_loop()`` in a plain ``__init__`` (made the
        main thread's loop here) and ``async def __init__`` both see it."""
        self.aloop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.aloop)
        threading.Thread(target=self.aloop.run_forever, name="microray-actor-async", daemon=True).start()
        return self.aloop

    # -- arguments and returns -------------------------------------------------------
    def _resolve_args(self, spec: TaskSpec) -> tuple[list, dict]:
        values = []
        refs = []
        for arg in spec.args:
            kind = arg[0]
            if kind == ARG_VALUE:
                values.append(arg[1])
            elif kind == ARG_SERIALIZED:
                value, is_error = serialization.deserialize(arg[1])
                self.cw.register_borrowed()
                if is_error:  # a failed upstream task: its error is this task's error
                    raise value
                values.append(value)
            else:
                refs.append((len(values), ObjectRef(arg[1], arg[2])))
                values.append(None)
        if refs:
            got = self.cw.get_objects([r for _, r in refs])
            for (i, _), v in zip(refs, got):
                values[i] = v
        nkw = len(spec.kwarg_names)
        if nkw:
            return values[:-nkw], dict(zip(spec.kwarg_names, values[-nkw:]))
        return values, {}

    def _store_value(self, oid: bytes, value: Any, spec: TaskSpec | None = None,
                     contained: dict | None = None) -> tuple[bytes, int, Any]:
        if serialization.is_simple(value):
            return (oid, VALUE, value)
        ser = serialization.serialize(value, what="return value")
        if ser.contained_refs and spec is not None and contained is not None:
            self._hand_over(spec, oid, ser.contained_refs, contained)
        if ser.total_size <= self.cw.config.max_inline_object_bytes:
            return (oid, SERIALIZED, ser.to_bytes())
        self.cw.write_to_store(oid, ser)
        self.cw.object_sizes.pop(oid, None)  # the caller owns it and keeps its size
        if contained is not None:
            contained.setdefault("__sizes__", {})[oid] = ser.total_size
        return (oid, IN_STORE, self.cw.node_id)

    def _hand_over(self, spec: TaskSpec, oid: bytes, refs: list, contained: dict) -> None:
        """Refs inside a return value: the caller owns the value, so register the caller
        as their borrower (with each ref's owner) before the result is sent."""
        pairs = []
        by_owner: dict[str, list[bytes]] = {}
        for ref in refs:
            rid = ref.binary()
            owner = self.cw.address if self.cw.refs.owns(rid) else ref.owner_address
            pairs.append((rid, owner))
            if owner != spec.owner:
                by_owner.setdefault(owner, []).append(rid)
        for owner, rids in by_owner.items():
            self.cw.add_borrower_at(owner, rids, spec.owner)
        contained[oid] = pairs

    def _result(self, spec: TaskSpec, value: Any, t0: float) -> TaskResult:
        """The result of a task that returned ``value``: its returns, or, for a
        generator that failed part-way (``core.returns``), the returns it made and the
        error in the rest."""
        contained: dict = {}
        error = None
        if spec.num_returns == DYNAMIC:
            stored = returns.dynamic(spec, value, contained, self._store_value, self._task_error)
        elif spec.num_returns > 0 and isinstance(value, types.GeneratorType):  # inspect.isgenerator, inlined
            stored, error, err = returns.static_generator(spec, value, contained, self._store_value, self._task_error)
        else:
            stored = self._store_returns(spec, value, contained)
        if error is None:
            result = TaskResult(spec.task_id, OK, stored, time.perf_counter() - t0, os.getpid())
        else:
            result = TaskResult(spec.task_id, APP_ERROR, stored, err, os.getpid(), error_results.retryable(spec, error))
        _split_sizes(result, contained)
        return result

    def _store_returns(self, spec: TaskSpec, value: Any, contained: dict | None = None) -> list:
        n = spec.num_returns
        if n == 1:
            return [self._store_value(ids.object_id(spec.task_id, 1), value, spec, contained)]
        if n == 0:
            return []
        values = list(value) if not isinstance(value, (str, bytes)) and hasattr(value, "__iter__") else None
        if values is None or len(values) != n:  # Ray's words, then what came back
            got = f"a {type(value).__name__} of length {len(values)}" if values is not None else type(value).__name__
            count = len(values) if values is not None else 1
            raise ValueError(f"Task returned {count} objects, but num_returns={n}. ({spec.function_name} returned {got})")
        return [self._store_value(ids.object_id(spec.task_id, i + 1), v, spec, contained) for i, v in enumerate(values)]

    def _run_generator(self, spec: TaskSpec, gen: Any, sink: _Sink) -> None:
        returns.stream_sync(spec, gen, sink, self._store_value, self._task_error, _split_sizes, self.cancelled)
        self.cancelled.discard(spec.task_id)

    def _task_error(self, spec: TaskSpec, exc: BaseException) -> bytes:
        return error_results.task_error(spec, exc, self.ip)


def _split_sizes(result: TaskResult, contained: dict) -> None:
    sizes = contained.pop("__sizes__", None)
    result.sizes = sizes
    result.contained = contained or None


async def _in_task(spec: TaskSpec, coro: Any) -> Any:
    """Await ``coro`` with ``spec`` as the current task (the runtime context inside it)."""
    token = context.enter_task(spec)
    try:
        return await coro
    finally:
        context.leave_task(token)
