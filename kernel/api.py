"""The public API with Ray's names, signatures and semantics."""

from __future__ import annotations

import atexit
import inspect
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from microray import config as config_mod
from microray.cluster_info import available_resources, cluster_resources, nodes, timeline  # noqa: F401
from microray.core import context
from microray.core.object_ref import ObjectRef, ObjectRefGenerator
from microray.core.task_spec import ACTOR_METHOD
from microray.exceptions import RaySystemError

log = structlog.get_logger(__name__)

_lock = threading.RLock()
_head: Any = None  # the NodeHandle of an embedded head this driver started


@dataclass
class RayContext:
    """What ``init`` returns (Ray's ``RayContext``)."""

    address_info: dict[str, Any] = field(default_factory=dict)
    dashboard_url: str | None = None  # host:port, without a scheme, as in Ray

    def __post_init__(self) -> None:
        if self.dashboard_url:
            self.dashboard_url = self.dashboard_url.removeprefix("http://")

    def __getitem__(self, key: str) -> Any:
        return self.address_info[key]

    def __enter__(self) -> "RayContext":
        return self

    def __exit__(self, *exc: Any) -> None:
        shutdown()

    def disconnect(self) -> None:
        shutdown()


def __getattr__(name: str) -> Any:
    # ``api._worker``: the current core worker (owned by ``microray.core.context``), read
    # by tests and tools that reach into a connected driver.
    if name == "_worker":
        return context.worker
    raise AttributeError(f"module 'microray.api' has no attribute {name!r}")


def _global_worker() -> Any:
    return context.current_worker()


def is_initialized() -> bool:
    return context.worker is not None


_CONFIG_ALIASES = {"include_dashboard": None, "log_to_driver": "log_to_driver"}


def init(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    namespace: str | None = None,
    runtime_env: dict[str, Any] | None = None,
    ignore_reinit_error: bool = False,
    include_dashboard: bool | None = None,
    dashboard_host: str | None = None,
    dashboard_port: int | None = None,
    logging_level: str | int | None = None,
    log_to_driver: bool | None = None,
    configure_logging: bool = True,
    job_config: Any = None,
    _system_config: dict[str, Any] | None = None,
    **config_overrides: Any,
) -> RayContext:
    """Connect this process to a cluster, starting an embedded one-node cluster when
    no ``address`` is given (and ``MICRORAY_ADDRESS`` is unset).

    Extra keyword arguments are config keys (``gcs_store="redis"``,
    ``object_store="lmdb"``, ``scheduling_policy="spread"``, ...). ``job_config`` (a
    ``microray.job_config.JobConfig``) gives the job's runtime_env, namespace and
    metadata. ``_system_config`` (Ray's internal tuning flags) is accepted and ignored,
    with a warning naming its keys."""
    global _head
    if _system_config:
        _warn_system_config(_system_config)
    if job_config is not None:
        runtime_env, namespace = _apply_job_config(job_config, runtime_env, namespace)
    with _lock:
        if context.worker is not None:
            if ignore_reinit_error:
                return RayContext(_address_info())
            raise RuntimeError(
                "Maybe you called microray.init twice by accident? This error can be suppressed by "
                "passing in 'ignore_reinit_error=True' or by calling 'microray.shutdown()' prior to "
                "'microray.init()'."
            )
        from microray import log as log_setup
        from microray.remote_function import validate_options

        if runtime_env is not None:
            validate_options({"runtime_env": runtime_env}, {"runtime_env"}, "init()")
        overrides = dict(config_overrides)
        overrides.update(
            num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
            object_store_memory=object_store_memory, namespace=namespace,
            dashboard_host=dashboard_host, dashboard_port=dashboard_port, log_to_driver=log_to_driver,
        )
        if include_dashboard is False:
            overrides["dashboard"] = "none"
        elif include_dashboard is True and config_overrides.get("dashboard") in (None, "none"):
            overrides["dashboard"] = "web"
        if logging_level is not None:
            overrides["log_level"] = logging_level if isinstance(logging_level, str) else _level_name(logging_level)
        cfg = config_mod.resolve(overrides)
        if configure_logging:
            log_setup.configure_for_console("warning")
        _check_backends(cfg)
        address = address or os.environ.get("MICRORAY_ADDRESS") or None
        from microray import node, rpc, session

        t0 = time.perf_counter()
        dashboard_url = None
        if address is None:
            from microray import fork_safety, process

            if fork_safety.choose_start_method(cfg.start_method) == "fork":
                # the node processes are forks of a clean launcher that imported their
                # modules (they then start in milliseconds): a fork of this process when
                # nothing but its main thread runs, else a fresh interpreter. Their modules
                # include what the zygote imports for its workers: each node's zygote (a
                # fork of its raylet) finds them loaded instead of importing them again
                from microray.raylet.zygote import WORKER_MODULES

                preload = [*node.NODE_PROCESS_MODULES, *WORKER_MODULES,
                           *(["uvloop"] if rpc.uvloop_wanted(cfg.io_loop) else [])]
                process.launcher(cfg.launcher_idle_s, preload)
                # atexit runs the last registered hook first: stop this driver's node
                # gracefully before stop_launcher ends the launcher (whose death
                # SIGKILLs the node processes, leaving their shm store behind)
                atexit.unregister(shutdown)
                atexit.register(shutdown)
            handle = node.start_head(cfg, embedded=True)
            _head = handle
            raylet_address = handle.raylet_address
            credentials = rpc.Credentials(session.read_token(handle.session_dir), cfg.tls)
            dashboard_url = handle.dashboard_url or None
            if dashboard_url:
                print(f"Dashboard: {dashboard_url} ({node.DASHBOARD_TOKEN_HINT})", file=sys.stderr)
        else:
            if address == "auto":
                running = node.current_cluster(cfg.session_root)
                if running is not None:
                    gcs_address = running.gcs_address
                    dashboard_url = running.dashboard_url or None
                else:  # no head here: a worker node started here names its cluster
                    from microray.worker_node import local_gcs_address

                    joined = local_gcs_address(cfg.session_root)
                    if joined is None:
                        raise ConnectionError(
                            "init(address='auto') found no running microray cluster on this machine; "
                            "start one with 'microray start --head'"
                        )
                    gcs_address = joined
            else:
                gcs_address = address.removeprefix("microray://").removeprefix("ray://")
            for key, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus), ("resources", resources)):
                if value is not None:
                    raise ValueError(
                        f"When connecting to an existing cluster, {key} must not be provided; "
                        "set it with 'microray start' instead."
                    )
            credentials = rpc.Credentials(node.cluster_token(gcs_address, cfg.session_root), cfg.tls)
            raylet_address, _ = node.find_raylet(gcs_address, cfg.node_ip, credentials)
        from microray.core.worker import DRIVER, CoreWorker

        try:
            worker = CoreWorker(
                DRIVER, raylet_address, namespace=namespace or cfg.namespace or _random_namespace(),
                entrypoint=" ".join(sys.argv), io_loop=cfg.io_loop, credentials=credentials,
            )
        except BaseException:
            if _head is not None:
                node.stop_node(_head)
                _head = None
            raise
        try:
            # the worker made itself current (core.context); local working_dir / py_modules
            # paths are packed and stored in the GCS now, once for the job
            worker.job_runtime_env = _job_runtime_env(worker, runtime_env)
        except BaseException:
            worker.shutdown()
            if _head is not None:
                node.stop_node(_head)
                _head = None
            raise
        _DriverExceptHook.install()
        if job_config is not None:
            # read by actor creation (the lifetime of actors created without one)
            setattr(worker, "default_actor_lifetime", job_config.default_actor_lifetime)
        if configure_logging:
            log_setup.configure(
                level=cfg.log_level,
                log_file=os.path.join(worker.session_dir, "logs", f"driver-{os.getpid()}.log"),
                console=sys.stderr,
                console_level="warning",
            )
            structlog.contextvars.bind_contextvars(job_id=worker.job_id, worker_id=worker.worker_id, node_id=worker.node_id)
        if cfg.log_to_driver:
            from microray.core.log_stream import LogStream

            setattr(worker, "log_stream", LogStream(worker, cfg.dedup_logs).start())
        log.info("microray_started", seconds=round(time.perf_counter() - t0, 3), session=worker.session_dir)
        return RayContext(_address_info(), dashboard_url=dashboard_url)


class _DriverExceptHook:
    """The driver's ``sys.excepthook``: an uncaught exception that ends the script marks
    its job FAILED (``KeyboardInterrupt``, as from Ctrl-C: STOPPED) with the exception
    as the reason, when the driver disconnects at exit; the hook it replaced then prints
    the traceback as before. At an interactive prompt an uncaught exception ends nothing
    and changes nothing."""

    MAX_MESSAGE = 1000

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    @classmethod
    def install(cls) -> None:
        if not isinstance(sys.excepthook, cls):
            sys.excepthook = cls(sys.excepthook)

    def __call__(self, exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        try:
            worker = context.worker
            if worker is not None and not (hasattr(sys, "ps1") or sys.flags.interactive):
                if issubclass(exc_type, KeyboardInterrupt):
                    worker.job_end = ("STOPPED", "the driver was interrupted (KeyboardInterrupt)")
                else:
                    text = f"{exc_type.__name__}: {exc}" if str(exc) else exc_type.__name__
                    worker.job_end = ("FAILED", f"the driver raised {text}"[: self.MAX_MESSAGE])
        finally:
            self.previous(exc_type, exc, tb)


def _job_runtime_env(worker: Any, runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """The job's runtime env: ``init``'s over the one a submitted job's driver is given
    (``MICRORAY_JOB_RUNTIME_ENV``), its local paths replaced by stored packages."""
    from microray import runtime_env as renv

    given = os.environ.get(renv.JOB_RUNTIME_ENV_VAR)
    submitted = json.loads(given) if given else None
    return renv.merge(submitted, worker.resolve_runtime_env(runtime_env)) or {}


def _warn_system_config(system_config: dict[str, Any]) -> None:
    import warnings

    if not isinstance(system_config, dict):
        raise TypeError(f"_system_config must be a dict, got {type(system_config).__name__}")
    keys = ", ".join(sorted(map(str, system_config)))
    warnings.warn(
        f"microray ignores _system_config (Ray's internal tuning flags); ignored keys: {keys}. "
        "microray's own settings are config keys (see docs/config.md and docs/compatibility.md).",
        UserWarning,
        stacklevel=3,
    )


def _apply_job_config(job_config: Any, runtime_env: dict[str, Any] | None,
                      namespace: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The runtime_env and namespace of ``init`` after ``job_config``'s (an explicit
    ``init`` argument wins, as in Ray)."""
    from microray.job_config import JobConfig

    if not isinstance(job_config, JobConfig):
        raise TypeError(f"job_config must be a microray.job_config.JobConfig, got {type(job_config).__name__}")
    if job_config._system_config:
        _warn_system_config(job_config._system_config)
    if runtime_env is None and job_config.runtime_env:
        runtime_env = dict(job_config.runtime_env)
    if namespace is None and job_config.ray_namespace:
        namespace = job_config.ray_namespace
    return runtime_env, namespace


def _level_name(level: int) -> str:
    import logging

    return logging.getLevelName(level).lower()


def _random_namespace() -> str:
    import uuid

    return str(uuid.uuid4())


def _check_backends(cfg: config_mod.Config) -> None:
    """Fail in the driver, before any process starts, on a wrong backend name or option."""
    from microray.plugin_manager import get_plugin_manager

    pm = get_plugin_manager(cfg.plugins)
    for family in ("gcs_store", "object_store", "scheduling_policy", "dashboard"):
        reg = pm.select(family, getattr(cfg, family))
        reg.validate_options(family, getattr(cfg, f"{family}_options"))


def _address_info() -> dict[str, Any]:
    w = context.current_worker()
    return {
        "address": w.gcs_address,
        "gcs_address": w.gcs_address,
        "raylet_address": w.raylet_address,
        "node_id": w.node_id,
        "session_dir": w.session_dir,
        "object_store_namespace": w.store_namespace,
    }


def shutdown() -> None:
    """Disconnect; stop the embedded cluster if this driver started it."""
    global _head
    with _lock:
        worker = context.worker
        context.set_worker(None)
        if worker is not None:
            stream = getattr(worker, "log_stream", None)
            if stream is not None:
                stream.stop()
            worker.shutdown()
        head, _head = _head, None
        if head is not None:
            from microray import node

            node.stop_node(head)


atexit.register(shutdown)
context.set_auto_init(init)


# -- remote -------------------------------------------------------------------
def remote(*args: Any, **options: Any) -> Any:
    """``@remote`` / ``@remote(num_cpus=...)`` on a function or a class."""
    if len(args) == 1 and not options and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("The @remote decorator takes either no arguments or only keyword arguments")

    def decorator(obj: Any) -> Any:
        return _make_remote(obj, options)

    return decorator


def _make_remote(obj: Any, options: dict[str, Any]) -> Any:
    if inspect.isclass(obj):
        from microray.actor import ActorClass

        return ActorClass(obj, options)
    if not callable(obj):
        raise TypeError(f"@remote expects a function or a class, got {obj!r}")
    from microray.remote_function import RemoteFunction

    return RemoteFunction(obj, options)


def method(*args: Any, **options: Any) -> Any:
    """Annotate an actor method with its default call options: ``num_returns``,
    ``concurrency_group``, ``max_task_retries``, ``retry_exceptions``,
    ``enable_task_events`` (``@microray.method(num_returns=2)``). Other options raise
    ``TypeError``. Used bare (``@microray.method``) it sets none: the method is returned
    as it is, as in Ray (where it marks methods for type checkers)."""
    if len(args) == 1 and not options and callable(args[0]):
        return args[0]
    if args:
        raise TypeError("@microray.method takes either no arguments (@microray.method) or only keyword "
                        "arguments (@microray.method(num_returns=2))")
    from microray.actor import method as _method

    return _method(options)


# -- objects --------------------------------------------------------------------
def put(value: Any, *, _owner: Any = None) -> ObjectRef:
    """Store ``value`` in the cluster and return a reference to it, owned by this process.

    ``_owner`` (Ray: hand the object's ownership to an actor) is not supported: an
    object lives as long as the process that put it holds references to it."""
    if _owner is not None:
        raise ValueError(
            "put(_owner=...) is not supported: an object is owned by the process that puts it. "
            "To have an object outlive this process, put it from inside the actor that should "
            "own it (call an actor method that does microray.put and returns the ref)."
        )
    worker = context.worker or context.current_worker()  # the attribute first: put is a hot path
    return worker.put_object(value)


def get(object_refs: Any, *, timeout: float | None = None) -> Any:
    """The value(s) of ``object_refs`` (an ObjectRef or a list of them), waiting for them
    (at most ``timeout`` seconds when given: None or a number >= 0)."""
    if timeout is not None:
        _check_timeout(timeout, "get")
    worker = context.worker or context.current_worker()  # the attribute first: get is a hot path
    if isinstance(object_refs, ObjectRef):
        return worker.get_objects([object_refs], timeout)[0]
    if isinstance(object_refs, ObjectRefGenerator):
        raise TypeError("get() of an ObjectRefGenerator: iterate it and get() each ref instead")
    if isinstance(object_refs, (list, tuple)):
        for r in object_refs:
            if not isinstance(r, ObjectRef):
                raise TypeError(f"get() expects an ObjectRef or a list of ObjectRefs, got an element {type(r).__name__}")
        return worker.get_objects(list(object_refs), timeout)
    import reprlib  # as Ray: a ValueError, whose sentence programs may match

    raise ValueError(f"'object_refs' must either be an ObjectRef or a list of ObjectRefs. get() was given "
                     f"an object of type {type(object_refs).__name__}: {reprlib.repr(object_refs)}")


def wait(
    object_refs: Sequence[ObjectRef],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Return ``(ready, not_ready)`` once ``num_returns`` refs are ready or ``timeout`` passed."""
    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, (list, tuple)):
        raise TypeError("wait() expects a list of ObjectRefs")
    if timeout is not None:
        _check_timeout(timeout, "wait")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int):
        raise TypeError(f"wait(): 'num_returns' must be an integer >= 1, got {num_returns!r} "
                        f"(a {type(num_returns).__name__})")
    generators = False  # one pass over the refs (wait of many refs is a hot path)
    for r in object_refs:
        if not isinstance(r, ObjectRef):
            if not isinstance(r, ObjectRefGenerator):
                raise TypeError(f"wait() expects a list of ObjectRefs or ObjectRefGenerators, got an element "
                                f"{type(r).__name__}")
            generators = True
    if not object_refs:
        return [], []
    if generators:
        distinct = len({r.binary() if isinstance(r, ObjectRef) else id(r) for r in object_refs})
    else:
        distinct = len({r.binary() for r in object_refs})
    if distinct != len(object_refs):
        raise ValueError("Wait requires a list of unique object refs.")
    if num_returns <= 0:
        raise ValueError("Invalid number of objects to return %d." % num_returns)
    if num_returns > len(object_refs):
        raise ValueError("num_returns cannot be greater than the number of objects provided to wait()")
    if generators:
        return _wait_with_generators(list(object_refs), num_returns, timeout)
    worker = context.worker or context.current_worker()
    return worker.wait_objects(list(object_refs), num_returns, timeout)


def _wait_with_generators(
    waitables: list[Any], num_returns: int, timeout: float | None
) -> tuple[list[Any], list[Any]]:
    """``wait`` over refs and streaming generators: a generator is ready when its next
    ``next()`` does not block (an item is there, or the task has ended)."""
    worker = _global_worker()
    probes: list[ObjectRef] = []
    owner_of: dict[bytes, int] = {}
    done: set[int] = set()
    for i, w in enumerate(waitables):
        if isinstance(w, ObjectRef):
            probes.append(w)
            owner_of[w.binary()] = i
        elif w._exhausted:
            done.add(i)
        else:
            for p in w._probe_refs():
                probes.append(p)
                owner_of[p.binary()] = i
    deadline = None if timeout is None else time.monotonic() + timeout
    want = max(1, num_returns - len(done))
    while len(done) < num_returns and probes:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready_probes, _ = worker.wait_objects(probes, min(want, len(probes)), remaining)
        done |= {owner_of[p.binary()] for p in ready_probes}
        if len(done) >= num_returns or remaining == 0 or want >= len(probes):
            break
        want = len(ready_probes) + (num_returns - len(done))
    ready = [w for i, w in enumerate(waitables) if i in done][:num_returns]
    ready_ids = {id(w) for w in ready}
    return ready, [w for w in waitables if id(w) not in ready_ids]


def _check_timeout(timeout: Any, what: str) -> None:
    """As Ray: a timeout that is not a number is a TypeError, a negative one a ValueError."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what}(): 'timeout' must be None or a number of seconds >= 0, got {timeout!r} "
                        f"(a {type(timeout).__name__})")
    if not timeout >= 0:  # negative, or NaN
        raise ValueError(f"{what}(): the 'timeout' argument must be nonnegative (seconds, or None to wait "
                         f"without limit). Received {timeout}")


def cancel(ref: ObjectRef | ObjectRefGenerator, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that makes ``ref`` (a generator task's: its ``ObjectRefGenerator``);
    ``get`` on it then raises TaskCancelledError (a generator's stream ends with it).

    As in Ray: a task or actor call that has not started never runs. A running task is
    interrupted (``force=True``: its worker is killed, and ``get`` raises
    WorkerCrashedError). A running actor call is never interrupted: a sync or threaded
    actor's method sees ``get_runtime_context().is_canceled()`` turn True, an async
    actor's call has its asyncio task cancelled; ``force=True`` is refused for actor calls."""
    if isinstance(ref, ObjectRefGenerator):
        task_id = ref._task_id
    elif isinstance(ref, ObjectRef):
        task_id = ref.task_id()
    else:
        raise TypeError(f"cancel() expects an ObjectRef or an ObjectRefGenerator, got {type(ref).__name__}")
    worker = _global_worker()
    if force:
        entry = worker.submitter.tasks.get(task_id)
        if entry is not None and entry.spec.kind == ACTOR_METHOD:
            raise ValueError("force=True is not supported for actor tasks: an actor's call is never killed "
                             "(cancel() without force stops it if it has not started yet)")
    worker.call_in_loop(worker.submitter.cancel, task_id, force)


# -- actors (see microray.actor) --------------------------------------------------
def get_actor(name: str, namespace: str | None = None) -> Any:
    from microray.actor import get_actor as _get_actor

    return _get_actor(name, namespace)


def kill(actor: Any, *, no_restart: bool = True) -> None:
    from microray.actor import kill as _kill

    _kill(actor, no_restart=no_restart)


def get_runtime_context() -> Any:
    import microray.actor  # noqa: F401 -- registers how ``current_actor`` makes a handle
    from microray.runtime_context import RuntimeContext

    return RuntimeContext(_global_worker())


def get_gpu_ids() -> list[int]:
    """The GPU ids the current task or actor was given (as in ``CUDA_VISIBLE_DEVICES``);
    empty in a driver and in tasks that asked for no GPU."""
    return list(getattr(_global_worker(), "gpu_ids", None) or [])


def _require_worker() -> Any:
    if context.worker is None:
        raise RaySystemError("microray is not initialized; call microray.init() first")
    return context.worker
