"""Actors: ``@remote`` classes, handles, method calls, names, ``kill``.

Creating an actor registers it with the GCS, which leases a worker for it and
runs the constructor there; method calls then go from each caller straight to
the actor's worker over one stream per caller (see ``core.actor_connection``).
"""

from __future__ import annotations

import hashlib
import inspect
import pickle
from typing import Any, Generic, TypeVar, Union

from microray import ids, runtime_context, serialization
from microray.core import context
from microray.core.object_ref import ObjectRef, ObjectRefGenerator
from microray.core.task_spec import ACTOR_CREATION, ACTOR_METHOD, DYNAMIC, STREAMING, TERMINATE_METHOD, TaskSpec, runtime_env_key, strategy_to_wire
from microray.exceptions import ActorDiedError
from microray.protocol import gcs_pb2
from microray.remote_function import CallShape, merged_runtime_env, pack_args, resource_shape
from microray.task_options import ACTOR_OPTIONS, METHOD_OPTIONS, TASK_OPTIONS, validate_options

# what @microray.method(...) sets: the method's default call options
METHOD_DECORATOR_OPTIONS = ("num_returns", "concurrency_group", "max_task_retries", "retry_exceptions",
                            "enable_task_events")


T = TypeVar("T")


def method(options: dict[str, Any]) -> Any:
    """The decorator ``@microray.method(**options)`` returns: records the method's
    default call options (``num_returns``, ``concurrency_group``, ``max_task_retries``,
    ``retry_exceptions``, ``enable_task_events``); ``.options()`` on a call overrides them.
    Types and ranges are the options' own (``task_options``)."""
    for key in options:
        if key not in METHOD_DECORATOR_OPTIONS:
            raise TypeError(
                f"microray.method() got an unsupported option {key!r}; supported: "
                f"{', '.join(METHOD_DECORATOR_OPTIONS)} (other call options go in .options() per call)"
            )
    validate_options(options, METHOD_OPTIONS, "@microray.method")
    if "concurrency_group" in options and not options["concurrency_group"]:
        raise ValueError(f"microray.method(concurrency_group={options['concurrency_group']!r}): expected a group name")
    if "retry_exceptions" in options and not isinstance(options["retry_exceptions"], bool):
        raise ValueError(
            f"microray.method(retry_exceptions={options['retry_exceptions']!r}): expected True or False (a list of "
            "exception classes goes in .options(retry_exceptions=[...]) per call)"
        )

    def decorator(fn: Any) -> Any:
        fn.__microray_method_options__ = dict(options)
        return fn

    return decorator


def _method_table(cls: type) -> dict[str, dict[str, Any]]:
    """Per method: its default call options (``num_returns`` and what ``@method`` set)
    and whether it is ``async``."""
    table = {}
    for name, member in inspect.getmembers(cls, predicate=callable):
        if name.startswith("__") and name != "__call__":
            continue
        fn = inspect.unwrap(member)
        options = dict(getattr(member, "__microray_method_options__", {}))
        num_returns = options.pop("num_returns", None)
        if num_returns is None and (inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)):
            num_returns = STREAMING
        # a static method takes no self; a class method is already bound to the class
        raw = inspect.getattr_static(cls, name, None)
        params = CallShape.params(member, drop_first=not isinstance(raw, (staticmethod, classmethod)))
        table[name] = {
            "num_returns": 1 if num_returns is None else num_returns,
            "is_async": inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn),
            "params": params,
            **options,
        }
    return table


# what a method's table entry holds besides its default call options
_METHOD_FACTS = ("is_async", "params")


def _check_concurrency_groups(options: dict[str, Any], methods: dict[str, dict[str, Any]], name: str) -> None:
    """``concurrency_groups`` maps group names to their limits (ints >= 1), and every
    method's ``@method(concurrency_group=...)`` names one of them."""
    groups = options.get("concurrency_groups")
    if groups is not None:
        if not isinstance(groups, dict):
            raise ValueError(f"actor {name}: concurrency_groups={groups!r}; expected a dict of name -> int >= 1")
        for group, limit in groups.items():
            if not isinstance(group, str) or not group:
                raise ValueError(f"actor {name}: concurrency group name {group!r} must be a non-empty string")
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(f"actor {name}: concurrency group {group!r} has limit {limit!r}; expected an int >= 1")
    for method_name, info in methods.items():
        group = info.get("concurrency_group")
        if group is not None and group not in (groups or {}):
            raise ValueError(
                f"actor {name}: method {method_name!r} is in concurrency group {group!r}, which the actor "
                f"does not define (concurrency_groups: {sorted(groups or {})})"
            )


class ActorClass(Generic[T]):
    """What ``@remote`` makes of a class. Generic in the class, for type hints, as in Ray:
    ``Counter: ActorClass[CounterImpl] = microray.remote(CounterImpl)``."""

    def __init__(self, cls: type, options: dict[str, Any]) -> None:
        self._cls = cls
        self._name = cls.__qualname__
        self._options = validate_options(dict(options), ACTOR_OPTIONS, f"actor class {self._name}")
        _check_actor_options(self._options, self._name)
        self._methods = _method_table(cls)
        _check_concurrency_groups(self._options, self._methods, self._name)
        params = CallShape.params(cls)  # the constructor's parameters, without self
        self._init_shape = CallShape(params) if params is not None else None
        # as in Ray, any coroutine function (an ``async def __init__`` too) makes an async actor
        self._is_async = (any(m["is_async"] for m in self._methods.values())
                          or inspect.iscoroutinefunction(getattr(cls, "__init__", None)))
        self._pickled = b""  # the cloudpickled class, made on first use
        self._class_id = b""  # its content hash
        self.__doc__ = cls.__doc__
        self.__name__ = cls.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', "
            f"use '{self.__name__}.remote()'."
        )

    def options(self, **options: Any) -> "_ActorOptions":
        validate_options(options, ACTOR_OPTIONS, f"actor class {self._name}")
        if "concurrency_groups" in options:  # as Ray: groups belong to the class
            raise ValueError("Setting 'concurrency_groups' is not supported in '.options()'. "
                             "Give them to @remote(concurrency_groups=...) on the class.")
        merged = {**self._options, **options}
        _check_actor_options(merged, self._name)
        _check_concurrency_groups(merged, self._methods, self._name)
        return _ActorOptions(self, merged)

    def remote(self, /, *args: Any, **kwargs: Any) -> "ActorHandle":
        return self._remote(args, kwargs, self._options)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A graph node that creates this actor when the graph is executed (``microray.dag``)."""
        from microray.dag import ClassNode

        return ClassNode(self, args, kwargs)

    def _remote(self, args: tuple, kwargs: dict, options: dict[str, Any]) -> "ActorHandle":
        worker = context.current_worker()
        if not self._class_id:
            self._pickled = serialization.dumps_function(self._cls)
            self._class_id = hashlib.sha1(self._pickled).digest()
        worker.export_function(self._class_id, self._pickled)
        if self._init_shape is not None:  # as Ray: a constructor call that cannot bind fails here
            self._init_shape.check(args, kwargs, f"{self._name}.remote()")
        namespace = options.get("namespace") or worker.namespace
        name = options.get("name")
        if options.get("get_if_exists") and name:
            existing = _lookup(worker, name, namespace)
            if existing is not None and existing.get("state") != "DEAD":
                return ActorHandle._from_record(existing)
        entries, kwarg_names, arg_refs = pack_args(worker, args, kwargs, f"{self._name}.__init__")
        if arg_refs:
            worker.refs.pin(arg_refs)  # the GCS-driven constructor (and restarts) may read them
        actor_id = ids.new_hex_id(16)
        explicit_cpus = options.get("num_cpus")
        schedule = resource_shape(options, 1)
        hold = resource_shape(options, 0) if explicit_cpus is None else dict(schedule)
        runtime_env = merged_runtime_env(worker, options)
        is_async = self._is_async
        spec = TaskSpec(
            task_id=ids.new_task_id(),
            function_id=self._class_id,
            function_name=self._name,
            args=entries,
            kwarg_names=kwarg_names,
            num_returns=0,
            owner=worker.address,
            job_id=worker.job_id,
            kind=ACTOR_CREATION,
            max_retries=0,
            runtime_env=runtime_env,
            resources=schedule,
            strategy=strategy_to_wire(options.get("scheduling_strategy")),
            actor_id=actor_id,
            actor_options={"max_concurrency": options.get("max_concurrency"), "is_async": is_async, "name": name,
                           "concurrency_groups": dict(options.get("concurrency_groups") or {})},
        )
        record = {
            "actor_id": actor_id,
            "class_name": self._name,
            "name": name or "",
            "namespace": namespace,
            "lifetime": options.get("lifetime") or getattr(worker, "default_actor_lifetime", None) or "non_detached",
            "max_restarts": options.get("max_restarts", 0) or 0,
            "max_task_retries": options.get("max_task_retries", 0) or 0,
            "job_id": worker.job_id,
            "owner": worker.address,
            "resources": spec.resources,
            "hold": hold,
            "strategy": spec.strategy,
            "env_key": runtime_env_key(spec.runtime_env),
            "methods": self._methods,
            "creation_spec": pickle.dumps(spec, protocol=5),
            "state": "PENDING_CREATION",
            "num_restarts": 0,
        }
        reply = worker.call(worker.gcs.RegisterActor, gcs_pb2.ActorRecordRequest(record=pickle.dumps(record)))
        if not reply.ok:
            if options.get("get_if_exists") and reply.existing:
                return ActorHandle._from_record(pickle.loads(reply.existing))
            raise ValueError(reply.error)
        handle: ActorHandle[Any] = ActorHandle(actor_id, self._name, self._methods, record["max_task_retries"],
                                               original=True)
        handle._detached = record["lifetime"] == "detached"
        return handle


class _ActorOptions:
    def __init__(self, cls: ActorClass, options: dict[str, Any]) -> None:
        self._cls = cls
        self._options = options

    def remote(self, /, *args: Any, **kwargs: Any) -> "ActorHandle":
        return self._cls._remote(args, kwargs, self._options)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        from microray.dag import ClassNode

        return ClassNode(self, args, kwargs)


def _check_actor_options(options: dict[str, Any], name: str) -> None:
    """Options that depend on each other (each one alone is checked by validate_options)."""
    if options.get("name") == "":
        raise ValueError(f"Actor name cannot be an empty string (actor class {name}).")
    if options.get("get_if_exists") and not options.get("name"):
        raise ValueError(f"The actor name must be specified to use `get_if_exists` (actor class {name}).")


class ActorHandle(Generic[T]):
    """A handle to an actor; pass it to tasks and other actors freely. Generic in the
    actor's class, for type hints (``ActorHandle[Counter]``), as in Ray."""

    def __init__(self, actor_id: str, class_name: str, methods: dict, max_task_retries: int,
                 original: bool = False) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._max_task_retries = max_task_retries
        self._original = original
        self._escaped = False
        self._detached = False
        self._shapes: dict[str, CallShape | None] = {}  # per method, built at its first call
        self._defaults: dict[str, dict] = {}  # per method, its default call options (read-only)

    @classmethod
    def _from_record(cls, record: dict) -> "ActorHandle":
        return cls(record["actor_id"], record.get("class_name", ""), record.get("methods", {}),
                   record.get("max_task_retries", 0))

    def __getattr__(self, name: str) -> "ActorMethod":
        if name.startswith("_"):
            raise AttributeError(name)
        info = self._methods.get(name)
        if info is None:
            raise AttributeError(f"'{self._class_name}' actor has no method {name!r}")
        options = self._defaults.get(name)
        if options is None:  # made once: ``handle.method.remote()`` is the actor call's hot path
            options = self._defaults[name] = ActorMethod.default_options(info)
        return ActorMethod(self, name, info, options)

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __reduce__(self):
        self._escaped = True
        return (_rebuild_handle, (self._actor_id, self._class_name, self._methods, self._max_task_retries))

    def __del__(self) -> None:
        # Ray: a non-detached actor dies when its original handle goes away and no
        # copy was passed anywhere. (Escaped handles keep it until its job ends.)
        if not self._original or self._escaped or self._detached:
            return
        try:
            worker = context.worker
            if worker is None or not worker.connected:
                return
            request = gcs_pb2.KillActorRequest(
                actor_id=self._actor_id, no_restart=True, reason="all references to the actor handle went out of scope")
            conn = worker.actor_connections.get(self._actor_id)
            if conn is not None:  # calls made through the handle still run first, as in Ray
                conn.kill_when_idle(request)
            else:
                worker.call_nowait(worker.gcs.KillActor, request)
        except Exception:  # noqa: BLE001 -- interpreter shutdown
            pass

    @property
    def _ray_actor_id(self) -> str:
        return self._actor_id

    @property
    def __ray_terminate__(self) -> "ActorMethod":
        """``handle.__ray_terminate__.remote()``: the actor exits, for good (no restart),
        once it has run the calls this caller made before; later calls fail with
        ``ActorDiedError``. Unlike ``kill()``, calls already sent run first (an async or
        threaded actor's calls still running when it runs end with the process, as in Ray)."""
        return ActorMethod(self, TERMINATE_METHOD, {}, {"num_returns": 1})

    def _submit(self, method: str, args: tuple, kwargs: dict, options: dict[str, Any]) -> Any:
        from microray.core.actor_connection import ActorConnection

        if method in self._shapes:
            shape = self._shapes[method]
        else:
            params = self._methods.get(method, {}).get("params")
            shape = self._shapes[method] = CallShape(params) if params is not None else None
        if shape is not None:  # as Ray: a call that cannot bind fails at .remote()
            shape.check(args, kwargs, f"{self._class_name}.{method}.remote()")
        worker = context.current_worker()
        entries, kwarg_names, arg_refs = pack_args(worker, args, kwargs, f"{self._class_name}.{method}")
        num_returns = options.get("num_returns", 1)
        if num_returns == "streaming":
            num_returns = STREAMING
        elif num_returns == "dynamic":  # one ref, whose value is a DynamicObjectRefGenerator
            num_returns = DYNAMIC
        task_id = ids.new_task_id()
        retry = options.get("retry_exceptions", False)
        if isinstance(retry, (list, tuple)):
            retry = serialization.dumps_function(tuple(retry))
        spec = TaskSpec(
            task_id=task_id,
            function_id=b"",
            function_name=self._class_name,
            args=entries,
            kwarg_names=kwarg_names,
            num_returns=num_returns,
            owner=worker.address,
            job_id=worker.job_id,
            kind=ACTOR_METHOD,
            max_retries=_retries(options.get("max_task_retries", self._max_task_retries)),
            retry_exceptions=retry,
            actor_id=self._actor_id,
            method_name=method,
            caller_id=worker.worker_id,
            concurrency_group=options.get("concurrency_group") or "",
            name=options.get("name") or "",
        )
        conn = worker.actor_connections.get(self._actor_id)
        if conn is None:
            conn = worker.actor_connections.setdefault(
                self._actor_id,
                ActorConnection(worker.submitter, worker, self._actor_id, options.get("max_task_retries", self._max_task_retries)),
            )
        if num_returns == STREAMING:
            worker.refs.add_owned(ids.object_id(task_id, 0xFFFFFFFF))
            worker.submitter.submit_actor_call(spec, conn, arg_refs)
            return ObjectRefGenerator(task_id, worker.address, worker)
        counter, owner = worker.refs, worker.address  # worker is the current one: its counter
        refs = [ObjectRef.new_owned(ids.object_id(task_id, i + 1), owner, counter)
                for i in range(1 if num_returns == DYNAMIC else num_returns)]
        worker.submitter.submit_actor_call(spec, conn, arg_refs)
        if method == TERMINATE_METHOD and refs:
            _exit_for_good_after(worker, refs[0], self._actor_id)
        if num_returns == 1 or num_returns == DYNAMIC:
            return refs[0]
        if num_returns == 0:
            return None
        return refs


# Ray's name for what ``ActorClass[T].remote()`` returns, for type hints: a handle whose
# methods a type checker reads from the class ``T`` (``ActorProxy[Counter]``)
ActorProxy = Union[ActorHandle[T], type[T]]


def _exit_for_good_after(worker: Any, ref: ObjectRef, actor_id: str) -> None:
    """The actor exits once it has run the terminate call ``ref`` is the result of: the
    moment that result arrives, mark the actor killed in the GCS, so that its exit ends it
    for good instead of counting as a crash to restart from (``max_restarts``)."""
    request = gcs_pb2.KillActorRequest(
        actor_id=actor_id, no_restart=True, reason="the actor exited: __ray_terminate__() was called")

    def done(result: Any) -> None:
        if result.exception() is None and worker.connected:  # failed: the actor died first
            worker.call_nowait(worker.gcs.KillActor, request)

    ref.future().add_done_callback(done)


def _retries(value: int) -> int:
    return 1 << 30 if value == -1 else value


def _rebuild_handle(actor_id: str, class_name: str, methods: dict, max_task_retries: int) -> ActorHandle:
    return ActorHandle(actor_id, class_name, methods, max_task_retries)


class ActorMethod:
    def __init__(self, handle: ActorHandle, name: str, info: dict, options: dict | None = None) -> None:
        self._handle = handle
        self._name = name
        self._options = self.default_options(info) if options is None else options  # never changed

    @staticmethod
    def default_options(info: dict) -> dict:
        """A method's default call options (see _method_table)."""
        options = {k: v for k, v in info.items() if k not in _METHOD_FACTS}
        options.setdefault("num_returns", 1)
        return options

    def remote(self, /, *args: Any, **kwargs: Any) -> Any:
        return self._handle._submit(self._name, args, kwargs, self._options)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A graph node that calls this method when the graph is executed (``microray.dag``)."""
        from microray.dag import ClassMethodNode

        return ClassMethodNode(self._handle, self._name, args, kwargs, self._options)

    def options(self, **options: Any) -> "ActorMethod":
        validate_options(options, METHOD_OPTIONS | TASK_OPTIONS, f"actor method {self._name}")
        return ActorMethod(self._handle, self._name, {}, {**self._options, **options})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actor methods cannot be called directly. Instead of running 'object.{self._name}()', "
            f"try 'object.{self._name}.remote()'."
        )


def _lookup(worker: Any, name: str, namespace: str | None) -> dict | None:
    reply = worker.call(worker.gcs.GetActor, gcs_pb2.ActorLookupRequest(name=name, namespace=namespace or ""))
    return pickle.loads(reply.record) if reply.found else None


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """The handle of the live actor called ``name`` in ``namespace`` (default: this job's)."""
    if not isinstance(name, str) or not name:
        raise ValueError("get_actor() needs a non-empty actor name")
    worker = context.current_worker()
    ns = namespace if namespace is not None else worker.namespace
    record = _lookup(worker, name, ns)
    if record is None or record.get("state") == "DEAD":
        raise ValueError(f"Failed to look up actor with name {name!r} in namespace {ns!r}.")
    return ActorHandle._from_record(record)


def list_named_actors(all_namespaces: bool = False) -> list[str] | list[dict[str, str]]:
    """The names of the named actors that are not dead (Ray's
    ``ray.util.list_named_actors``): in this job's namespace, or with
    ``all_namespaces=True`` in every namespace, as ``{"name": ..., "namespace": ...}``."""
    worker = context.current_worker()
    reply = worker.call(worker.gcs.ListActors, gcs_pb2.ListActorsRequest(
        all_namespaces=bool(all_namespaces), namespace=worker.namespace or ""))
    named = [(r["namespace"], r["name"]) for r in map(pickle.loads, reply.records)
             if r.get("name") and r.get("state") != "DEAD"]
    if all_namespaces:
        return [{"name": name, "namespace": namespace} for namespace, name in named]
    return [name for namespace, name in named if namespace == (worker.namespace or "")]


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Kill an actor's process at once; with ``no_restart=False`` it may restart."""
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"kill() expects an actor handle, got {type(actor).__name__}")
    worker = context.current_worker()
    worker.call(worker.gcs.KillActor, gcs_pb2.KillActorRequest(
        actor_id=actor._actor_id, no_restart=no_restart, reason="killed by microray.kill()"))


__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "ActorProxy", "get_actor", "kill", "exit_actor",
           "list_named_actors", "ActorDiedError"]

# the runtime context (a layer below) makes ``current_actor`` handles with this
runtime_context.set_actor_handle_factory(ActorHandle._from_record)


def exit_actor() -> None:
    """End the current actor from inside one of its methods, without a restart
    (Ray's ``ray.actor.exit_actor``). Calls still queued fail with ActorDiedError."""
    worker = context.current_worker()
    if not worker.actor_id:
        raise TypeError("exit_actor() called outside an actor")
    worker.call(worker.gcs.KillActor, gcs_pb2.KillActorRequest(
        actor_id=worker.actor_id, no_restart=True, reason="the actor called exit_actor()"))
    import os

    os._exit(0)
