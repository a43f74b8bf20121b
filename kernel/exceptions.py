"""Exceptions with Ray's names, plus microray's own configuration errors."""

from __future__ import annotations

from typing import Any

__all__ = [
    "RayError",
    "RayTaskError",
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "GetTimeoutError",
    "TaskCancelledError",
    "TaskUnschedulableError",
    "WorkerCrashedError",
    "ObjectLostError",
    "OwnerDiedError",
    "ObjectStoreFullError",
    "RaySystemError",
    "ConfigError",
    "PluginError",
    "GcsUnavailableError",
    "SerializationError",
]


class RayError(Exception):
    """Base of every error microray raises for a remote failure."""


class ConfigError(RayError, ValueError):
    """A config key or value is wrong; the message names key, value and what was expected."""


class PluginError(RayError, LookupError):
    """A backend name could not be resolved, or two plugins registered the same name."""


class RaySystemError(RayError):
    """The runtime itself failed (a lost connection to the cluster, a broken process)."""

    def __init__(self, message: str, traceback_str: str | None = None) -> None:
        super().__init__(message)
        self.traceback_str = traceback_str

    def __reduce__(self):
        return (type(self), (str(self), self.traceback_str))


class GcsUnavailableError(RaySystemError):
    """The GCS (or its store) could not be reached after a bounded retry."""


class SerializationError(RayError, TypeError):
    """A value could not be serialized; the message names the argument."""


class GetTimeoutError(RayError, TimeoutError):
    """``get`` did not finish within ``timeout``."""


class TaskCancelledError(RayError):
    """The task was cancelled with ``microray.cancel``."""

    def __init__(self, task_id: Any = None, message: str | None = None) -> None:
        self.task_id = task_id
        super().__init__(message or f"Task {task_id} was cancelled")

    def __reduce__(self):
        return (type(self), (self.task_id, str(self)))


class TaskUnschedulableError(RayError):
    """The task can never be scheduled: e.g. a hard node affinity (``soft=False``) to
    a node that is not alive in the cluster."""


class WorkerCrashedError(RayError):
    """The worker running the task died before the task finished."""

    def __init__(self, message: str = "The worker died unexpectedly while executing this task.") -> None:
        super().__init__(message)


class ObjectLostError(RayError):
    """The object's value is gone from every store and cannot be rebuilt."""

    def __init__(self, object_ref_hex: str = "", message: str | None = None) -> None:
        self.object_ref_hex = object_ref_hex
        super().__init__(message or f"Object {object_ref_hex} is lost")

    def __reduce__(self):
        return (type(self), (self.object_ref_hex, str(self)))


class OwnerDiedError(ObjectLostError):
    """The process that owned the object died, so its value can no longer be found."""


class ObjectStoreFullError(RayError, MemoryError):
    """The object store has no room and nothing could be spilled or freed."""


# -- the rest of Ray's exception family ----------------------------------------------
# Every class Ray's ``ray.exceptions`` defines exists here with Ray's base classes, so
# programs and tests that import, catch or raise them work unchanged, including the
# ones microray itself never raises (their docstrings say so).


class _MessageError(RayError):
    """A Ray error built from one message; pickles with it."""

    def __init__(self, message: str = "") -> None:
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class CrossLanguageError(_MessageError):
    """An error raised by code in another language (microray runs only Python, so it
    never raises this)."""


class LocalRayletDiedError(RayError):
    """The raylet of the node the task ran on died."""

    def __str__(self) -> str:
        return "The task's local raylet died."


class UserCodeException(RayError):
    """Wraps an exception raised by user code."""


class OutOfDiskError(RayError):
    """The object store is full and spilling to disk failed because the disk is full too."""


class OutOfMemoryError(_MessageError):
    """The node ran low on memory and killed the task or actor to free some."""


class NodeDiedError(_MessageError):
    """The node that ran the task or held the object is dead or unreachable."""


class RpcError(_MessageError):
    """A call between microray processes failed."""

    def __init__(self, message: str = "", rpc_code: Any = None) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code

    def __reduce__(self):
        return (type(self), (self.message, self.rpc_code))


class ObjectFetchTimedOutError(ObjectLostError):
    """Fetching the object timed out because no node was found that holds it."""


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """The object was freed while a reference to it was still alive."""


class ObjectFreedError(ObjectLostError):
    """The object was freed explicitly by the application before this read."""


class ObjectReconstructionFailedError(ObjectLostError):
    """The object is lost and cannot be rebuilt: it was made by ``put``, an actor, or
    a process other than its owner."""


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectLostError):
    """The object is lost and its task already used up ``max_retries`` rebuilding it."""


class ObjectReconstructionFailedLineageEvictedError(ObjectLostError):
    """The object is lost and the record of the task that made it was dropped."""


class PlasmaObjectNotAvailable(RayError):
    """An object was not available within the time given."""


class AsyncioActorExit(RayError):
    """Raised inside an async actor that ends itself with ``exit_actor()``."""


class RuntimeEnvSetupError(RayError):
    """The task's or actor's runtime environment could not be set up."""

    def __init__(self, error_message: str | None = None) -> None:
        self.error_message = error_message
        super().__init__(error_message)

    def __str__(self) -> str:
        head = "Failed to set up runtime environment."
        return f"{head}\n{self.error_message}" if self.error_message else head


class TaskPlacementGroupRemoved(RayError):
    """The placement group the task was to run in was removed (microray does not
    support placement groups, so it never raises this)."""

    def __str__(self) -> str:
        return "The placement group corresponding to this task has been removed."


class ActorPlacementGroupRemoved(RayError):
    """The placement group the actor was to run in was removed (microray does not
    support placement groups, so it never raises this)."""

    def __str__(self) -> str:
        return "The placement group corresponding to this Actor has been removed."


class PendingCallsLimitExceeded(RayError):
    """An actor handle has more calls waiting than its ``max_pending_calls`` option allows."""


class ActorUnschedulableError(RayError):
    """The actor can never be scheduled (for example, its node affinity names a dead node)."""

    def __init__(self, error_message: str = "") -> None:
        self.error_message = error_message
        super().__init__(error_message)

    def __str__(self) -> str:
        return f"The actor is not schedulable: {self.error_message}"


class ObjectRefStreamEndOfStreamError(RayError):
    """A streaming generator has no more ObjectRefs to give."""


class OufOfBandObjectRefSerializationException(RayError):
    """An ObjectRef was serialized outside the task system (Ray's own spelling of the
    name is kept, so code that imports it works)."""


class RayChannelError(RaySystemError):
    """An error of a compiled-graph channel (microray has no compiled graphs, so it never
    raises this)."""


class RayChannelTimeoutError(RayChannelError, TimeoutError):
    """A compiled-graph channel operation timed out (never raised by microray)."""


class RayCgraphCapacityExceeded(RaySystemError):
    """A compiled graph has too many executions in flight (never raised by microray)."""


class UnserializableException(RayError):
    """A task's exception could not be deserialized where it was read; carries the
    original stack trace as text."""

    def __init__(self, original_stack_trace: str = "") -> None:
        self.original_stack_trace = original_stack_trace
        super().__init__(original_stack_trace)

    def __str__(self) -> str:
        return (
            "Failed to deserialize the exception raised by a task; its original stack trace is:\n"
            + self.original_stack_trace
        )


_RAY_FAMILY = [
    "CrossLanguageError", "LocalRayletDiedError", "UserCodeException", "OutOfDiskError",
    "OutOfMemoryError", "NodeDiedError", "RpcError", "ObjectFetchTimedOutError",
    "ReferenceCountingAssertionError", "ObjectFreedError", "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectReconstructionFailedLineageEvictedError", "PlasmaObjectNotAvailable",
    "AsyncioActorExit", "RuntimeEnvSetupError", "TaskPlacementGroupRemoved",
    "ActorPlacementGroupRemoved", "PendingCallsLimitExceeded", "ActorUnschedulableError", "ObjectRefStreamEndOfStreamError",
    "OufOfBandObjectRefSerializationException", "RayChannelError", "RayChannelTimeoutError",
    "RayCgraphCapacityExceeded", "UnserializableException",
]
__all__ += _RAY_FAMILY


class RayActorError(RayError):
    """The actor died or could not be created; the message says why."""

    def __init__(self, actor_id: Any = None, message: str | None = None) -> None:
        self.actor_id = actor_id
        super().__init__(message or f"The actor {actor_id} died unexpectedly")

    def __reduce__(self):
        return (type(self), (self.actor_id, str(self)))


class ActorDiedError(RayActorError):
    """The actor is dead (killed, crashed past its restarts, or its owner died)."""


class ActorUnavailableError(RayActorError):
    """The actor is temporarily unreachable (for example, restarting)."""


class RayTaskError(RayError):
    """A task or actor method raised. ``get`` raises an instance that is also an
    instance of the user's exception class (see ``as_instanceof_cause``).

    The error always reaches the caller with the task's traceback text, even when the
    user's exception cannot travel: one whose ``__init__`` does not take its own
    ``args`` is rebuilt without calling ``__init__``; one that cannot be pickled at all,
    or whose class cannot be loaded by the caller, arrives as ``cause=None`` with its
    class name in ``cause_name``."""

    def __init__(
        self,
        function_name: str,
        traceback_str: str,
        cause: BaseException | None,
        pid: int | None = None,
        ip: str | None = None,
        cause_name: str | None = None,
    ) -> None:
        # Exception.__init__, not super(): in RayTaskError(SomeCause) the next class may be
        # a cause with its own __init__ (RaySystemError would reset traceback_str)
        Exception.__init__(self)
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.cause_name = cause_name or (type(cause).__name__ if cause is not None else "Error")
        self.pid = pid
        self.ip = ip
        self.args = (self._message(),)

    def _message(self) -> str:
        return (
            f"{self.cause_name} in {self.function_name}() (pid={self.pid}, ip={self.ip})\n"
            f"{self.traceback_str.rstrip()}"
        )

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):  # keep subclasses picklable; the cause travels on its own
        return (
            _rebuild_task_error,
            (self.function_name, self.traceback_str, _pickled_cause(self.cause), self.pid, self.ip,
             self.cause_name),
        )

    def as_instanceof_cause(self) -> "RayTaskError":
        """Return an error that is both a ``RayTaskError`` and an instance of the cause's
        class, or this error itself when no such class can be made."""
        cause_cls = type(self.cause) if self.cause is not None else None
        if cause_cls is None or isinstance(self, cause_cls) or issubclass(RayTaskError, cause_cls):
            return self
        try:
            cls = _derived_classes.get(cause_cls)
            if cls is None:
                cls = type(
                    f"RayTaskError({cause_cls.__name__})",
                    (RayTaskError, cause_cls),
                    {"__init__": _derived_init, "__str__": RayTaskError.__str__,
                     "__getattr__": _cause_attribute},
                )
                cls.__module__ = __name__
                _derived_classes[cause_cls] = cls
            return cls(self.function_name, self.traceback_str, self.cause, self.pid, self.ip, self.cause_name)
        except Exception:  # noqa: BLE001 -- a class that cannot be subclassed or built (final builtins, odd __new__)
            return self


_derived_classes: dict[type, type] = {}


def _derived_init(self, function_name, traceback_str, cause, pid=None, ip=None, cause_name=None):
    RayTaskError.__init__(self, function_name, traceback_str, cause, pid, ip, cause_name)


def _cause_attribute(self, name: str) -> Any:
    """Attributes the cause's ``__init__`` set (``err.code``) read through to the cause."""
    cause = self.__dict__.get("cause")
    if cause is None or name.startswith("__"):
        raise AttributeError(name)
    return getattr(cause, name)


def _pickled_cause(cause: BaseException | None) -> bytes | None:
    """The cause as bytes that unpickle back into an instance of its class, or None.

    Exceptions pickle as ``cls(*args)``, which fails for a class whose ``__init__``
    takes other arguments than it passes on; such a cause is pickled by its state
    instead (``cls.__new__`` plus ``args`` and ``__dict__``, no ``__init__``)."""
    if cause is None:
        return None
    import pickle

    import cloudpickle

    for reduced in (cause, _ByState(cause)):
        try:
            data = cloudpickle.dumps(reduced, protocol=5)
            pickle.loads(data)  # the caller loads it the same way; prove it here
            return data
        except Exception:  # noqa: BLE001 -- try the next form, then travel without the cause
            continue
    return None


class _ByState:
    """Pickles an exception as its class, args and attributes, bypassing ``__init__``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self):
        exc = self.exc
        return (_exception_from_state, (type(exc), exc.args, dict(getattr(exc, "__dict__", {}))))


def _exception_from_state(cls: type, args: tuple, state: dict) -> BaseException:
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


def _rebuild_task_error(function_name, traceback_str, cause, pid, ip, cause_name=None):
    if isinstance(cause, bytes):
        import pickle

        try:
            cause = pickle.loads(cause)
        except Exception:  # noqa: BLE001 -- e.g. the class is not importable here: keep the text
            cause = None
    return RayTaskError(function_name, traceback_str, cause, pid, ip, cause_name)


# Ray's list of the error types a task's result may hold.
RAY_EXCEPTION_TYPES = [
    PlasmaObjectNotAvailable, RayError, RayTaskError, WorkerCrashedError, RayActorError,
    ObjectStoreFullError, ObjectLostError, ObjectFetchTimedOutError,
    ReferenceCountingAssertionError, ObjectReconstructionFailedError,
    ObjectReconstructionFailedMaxAttemptsExceededError, ObjectReconstructionFailedLineageEvictedError,
    OwnerDiedError, GetTimeoutError, AsyncioActorExit, RuntimeEnvSetupError,
    TaskPlacementGroupRemoved, ActorPlacementGroupRemoved, PendingCallsLimitExceeded,
    LocalRayletDiedError, TaskUnschedulableError, ActorDiedError, ActorUnschedulableError,
    ActorUnavailableError, RayChannelError, RayChannelTimeoutError,
]
