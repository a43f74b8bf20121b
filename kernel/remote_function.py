"""``@remote`` functions: options, argument packing and submission."""

from __future__ import annotations

import hashlib
import inspect
import pickle
import sys
from typing import Any

from dataclasses import dataclass

from microray import ids, serialization
from microray.core import context as _context
from microray.core.object_ref import ObjectRef, ObjectRefGenerator
from microray.core.task_spec import ARG_REF, ARG_SERIALIZED, ARG_VALUE, DYNAMIC, STREAMING, TaskSpec, runtime_env_key, strategy_to_wire
from microray.runtime_env import merge as merge_runtime_env
from microray.task_options import TASK_OPTIONS, validate_options


def resource_shape(options: dict[str, Any], default_cpus: float) -> dict[str, float]:
    cpus = options.get("num_cpus")
    shape = {"CPU": float(default_cpus if cpus is None else cpus)}
    if options.get("num_gpus"):
        shape["GPU"] = float(options["num_gpus"])
    for k, v in (options.get("resources") or {}).items():
        shape[k] = float(v)
    return {k: v for k, v in shape.items() if v > 0}


def merged_runtime_env(worker: Any, options: dict[str, Any]) -> dict | None:
    """The runtime env a task or actor runs in: its own (``options['runtime_env']``, local
    paths packed and stored in the GCS) over the job's, or over its parent task's."""
    job_env = getattr(worker, "job_runtime_env", None) or {}
    env = options.get("runtime_env") or {}
    if not job_env and not env:
        return None
    if env:
        env = worker.resolve_runtime_env(env)
    return merge_runtime_env(job_env, env)


_P = inspect.Parameter
_KINDS = (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD, _P.VAR_POSITIONAL, _P.KEYWORD_ONLY, _P.VAR_KEYWORD)
_POSITIONAL = _KINDS[:2]


class CallShape:
    """The parameters a remote function, actor constructor or actor method takes, to
    check a call's arguments at ``.remote()`` as Python would check a direct call
    (``TypeError``, as in Ray). Built from plain data (``params()``), so actor handles
    carry it through the GCS; the common call (only positional arguments, in range)
    is checked without ``Signature.bind``."""

    __slots__ = ("signature", "min_pos", "max_pos", "plain")

    def __init__(self, params: tuple[tuple[str, int, bool], ...]) -> None:
        empty = inspect.Parameter.empty
        parameters = [_P(name, _KINDS[kind], default=None if has_default else empty)
                      for name, kind, has_default in params]
        self.signature = inspect.Signature(parameters)
        positional = [p for p in parameters if p.kind in _POSITIONAL]
        self.min_pos = sum(1 for p in positional if p.default is empty)
        var_positional = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
        self.max_pos = sys.maxsize if var_positional else len(positional)
        self.plain = not any(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is empty for p in parameters)

    @staticmethod
    def params(fn: Any, drop_first: bool = False) -> tuple[tuple[str, int, bool], ...] | None:
        """``fn``'s parameters as ``(name, kind, has_default)``; None when Python cannot
        tell them (some builtins). ``drop_first`` leaves out ``self``."""
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            return None
        parameters = list(signature.parameters.values())
        if drop_first and parameters and parameters[0].kind in _POSITIONAL:
            parameters = parameters[1:]
        return tuple((p.name, int(p.kind), p.default is not p.empty) for p in parameters)

    def check(self, args: tuple, kwargs: dict, label: str) -> None:
        """Raise ``TypeError`` naming ``label`` when ``args``/``kwargs`` do not fit."""
        if not kwargs and self.plain and self.min_pos <= len(args) <= self.max_pos:
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{label}: {exc}") from None


def pack_args(worker: Any, args: tuple, kwargs: dict, fn_name: str) -> tuple[list, tuple, list[bytes]]:
    """Turn call arguments into task-spec entries; large values go to the object store."""
    entries: list = []
    arg_refs: list[bytes] = []
    items = [(i, a) for i, a in enumerate(args)] + list(kwargs.items())
    inline_limit = worker.config.max_inline_object_bytes
    for name, value in items:
        if isinstance(value, ObjectRef):
            entries.append((ARG_REF, value.binary(), value.owner_address))
            arg_refs.append(value.binary())
            continue
        if serialization.is_simple(value):
            entries.append((ARG_VALUE, value))
            continue
        label = f"argument {name!r}" if isinstance(name, str) else f"argument {name}"
        ser = serialization.serialize(value, what=f"{label} of {fn_name}()")
        # refs nested in an argument are held by the task until it ends; the worker
        # registers as their borrower before the task runs
        arg_refs.extend(r.binary() for r in ser.contained_refs)
        if ser.total_size <= inline_limit:
            entries.append((ARG_SERIALIZED, ser.to_bytes()))
        else:
            oid = ids.object_id(ids.new_task_id(), 0)
            worker.refs.add_owned(oid)
            worker.store_serialized(oid, ser)
            entries.append((ARG_REF, oid, worker.address))
            arg_refs.append(oid)
    return entries, tuple(kwargs), arg_refs


class RemoteFunction:
    """What ``@remote`` makes of a function."""

    def __init__(self, function: Any, options: dict[str, Any]) -> None:
        self._function = function
        self._name = getattr(function, "__qualname__", getattr(function, "__name__", "function"))
        if inspect.iscoroutinefunction(function):  # as Ray: only actors run coroutines
            raise ValueError(
                f"'async def' should not be used for remote tasks ({self._name}). Run the coroutine "
                "inside a plain function (`asyncio.run(f())`), or make it a method of an async actor.")
        self._options = validate_options(dict(options), TASK_OPTIONS, f"remote function {self._name}")
        self._is_generator = inspect.isgeneratorfunction(function)
        params = CallShape.params(function)
        self._shape = CallShape(params) if params is not None else None
        self._pickled = b""  # the cloudpickled function, made on first use
        self._function_id = b""  # its content hash
        self._prepared: _Prepared | None = None
        self.__doc__ = getattr(function, "__doc__", None)
        self.__name__ = getattr(function, "__name__", "function")
        self.__wrapped__ = function

    def __getstate__(self) -> dict[str, Any]:
        # shipped inside another function: the per-session cache holds this process's worker
        return {**self.__dict__, "_prepared": None}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Remote functions cannot be called directly. Instead of running '{self.__name__}()', "
            f"try '{self.__name__}.remote()'."
        )

    def options(self, **options: Any) -> "_OptionsWrapper":
        validate_options(options, TASK_OPTIONS, f"remote function {self._name}")
        if "max_calls" in options:  # as Ray: a worker's call limit belongs to the function
            raise ValueError("Setting 'max_calls' is not supported in '.options()'. "
                             "Give it to @remote(max_calls=...) on the function.")
        return _OptionsWrapper(self, {**self._options, **options})

    def remote(self, /, *args: Any, **kwargs: Any) -> Any:
        return self._remote(args, kwargs, self._options)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A graph node that calls this function when the graph is executed (``microray.dag``)."""
        from microray.dag import FunctionNode

        return FunctionNode(self, args, kwargs)

    def _ensure_pickled(self) -> None:
        if not self._function_id:
            self._pickled = serialization.dumps_function(self._function)
            self._function_id = hashlib.sha1(self._pickled).digest()

    def _prepare(self, worker: Any, options: dict[str, Any]) -> "_Prepared":
        """What a call's options fix for every call (computed once per options and session)."""
        num_returns = options.get("num_returns")
        if num_returns is None:
            num_returns = STREAMING if self._is_generator else 1
        elif num_returns == "streaming":
            num_returns = STREAMING
        elif num_returns == "dynamic":  # one ref, whose value is a DynamicObjectRefGenerator
            num_returns = DYNAMIC
        elif not isinstance(num_returns, int) or num_returns < 0:
            raise ValueError(f"num_returns={num_returns!r} for {self._name}: expected an int >= 0 or 'streaming'")
        resources = resource_shape(options, 1)
        runtime_env = merged_runtime_env(worker, options)
        strategy = strategy_to_wire(options.get("scheduling_strategy"))
        retry = options.get("retry_exceptions", False)
        if isinstance(retry, (list, tuple)):
            retry = serialization.dumps_function(tuple(retry))
        max_retries = options.get("max_retries")
        if max_retries is None:
            max_retries = 3
        elif max_retries == -1:
            max_retries = 1 << 30
        key: tuple[Any, ...] = (tuple(sorted(resources.items())), runtime_env_key(runtime_env), pickle.dumps(strategy))
        max_calls = options.get("max_calls") or 0
        if max_calls:
            key = key + (("max_calls", max_calls),)  # such workers are not shared with other tasks
        return _Prepared(worker, num_returns, resources, runtime_env, strategy, retry, max_retries,
                         key, options.get("name") or self._name, options.get("name") or "", max_calls)

    def _remote(self, args: tuple, kwargs: dict, options: dict[str, Any], cache: Any = None) -> Any:
        worker = _context.current_worker()
        holder = cache if cache is not None else self
        prep = holder._prepared
        if prep is None or prep.worker is not worker:
            self._ensure_pickled()
            worker.export_function(self._function_id, self._pickled)
            prep = holder._prepared = self._prepare(worker, options)
        if self._shape is not None:  # as Ray: a call that cannot bind fails at .remote()
            self._shape.check(args, kwargs, f"{self._name}.remote()")
        entries, kwarg_names, arg_refs = pack_args(worker, args, kwargs, self._name)
        task_id = ids.new_task_id()
        parent = _context.current_task()
        num_returns = prep.num_returns
        spec = TaskSpec(
            task_id=task_id,
            function_id=self._function_id,
            function_name=prep.function_name,
            args=entries,
            kwarg_names=kwarg_names,
            num_returns=num_returns,
            owner=worker.address,
            job_id=worker.job_id,
            max_retries=prep.max_retries,
            retry_exceptions=prep.retry,
            runtime_env=prep.runtime_env,
            resources=prep.resources,
            strategy=prep.strategy,
            name=prep.name,
            parent_task_id=parent.task_id if parent is not None else b"",
            max_calls=prep.max_calls,
        )
        if num_returns == STREAMING:
            worker.refs.add_owned(ids.object_id(task_id, 0xFFFFFFFF))
            worker.submitter.submit(spec, prep.key, arg_refs)
            return ObjectRefGenerator(task_id, worker.address, worker)
        counter, owner = worker.refs, worker.address  # worker is the current one: its counter
        refs = [ObjectRef.new_owned(ids.object_id(task_id, i + 1), owner, counter)
                for i in range(1 if num_returns == DYNAMIC else num_returns)]
        worker.submitter.submit(spec, prep.key, arg_refs)
        if num_returns == 1 or num_returns == DYNAMIC:
            return refs[0]
        return refs


@dataclass(slots=True)
class _Prepared:
    worker: Any
    num_returns: int
    resources: dict
    runtime_env: dict | None
    strategy: Any
    retry: Any
    max_retries: int
    key: tuple
    function_name: str
    name: str
    max_calls: int = 0


class _OptionsWrapper:
    def __init__(self, fn: RemoteFunction, options: dict[str, Any]) -> None:
        self._fn = fn
        self._options = options
        self._prepared: _Prepared | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_prepared": None}

    def remote(self, /, *args: Any, **kwargs: Any) -> Any:
        return self._fn._remote(args, kwargs, self._options, self)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        from microray.dag import FunctionNode

        return FunctionNode(self, args, kwargs)
