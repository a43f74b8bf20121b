"""What a failed task sends back: the error value its returns hold, and whether it is retried.

Pure functions of the task's spec and its exception (no process state beyond the pid),
shared by the executor (a task's exception, a cancellation) and by the owner's side
(the return ids a failed task's error fills).
"""

from __future__ import annotations

import os

from microray import serialization
from microray.core.memory_store import SERIALIZED
from microray.core.task_spec import ACTOR_METHOD, APP_ERROR, TaskResult, TaskSpec, return_ids
from microray.core.user_traceback import format_user_traceback
from microray.exceptions import RayActorError, RayTaskError


def task_error(spec: TaskSpec, exc: BaseException, ip: str) -> bytes:
    """``exc`` raised by the task's code, as the serialized ``RayTaskError`` the caller gets."""
    if isinstance(exc, (RayTaskError, RayActorError)):
        cause: BaseException = exc
    else:
        name = spec.function_name if spec.kind != ACTOR_METHOD else f"{spec.function_name}.{spec.method_name}"
        cause = RayTaskError(name, format_user_traceback(exc), exc, os.getpid(), ip)
    return serialization.serialize_error(cause).to_bytes()


def retryable(spec: TaskSpec, exc: BaseException) -> bool:
    """Whether the task's ``retry_exceptions`` asks for a retry after ``exc``."""
    retry = spec.retry_exceptions
    if isinstance(retry, bytes):
        retry = serialization.loads_function(retry)
    return retry is True or (isinstance(retry, (list, tuple)) and isinstance(exc, tuple(retry)))


def app_error(spec: TaskSpec, exc: BaseException, ip: str) -> TaskResult:
    """The result of a task whose code raised ``exc``: every return holds the task's error."""
    err = task_error(spec, exc, ip)
    returns = [(oid, SERIALIZED, err) for oid in return_ids(spec)]
    return TaskResult(spec.task_id, APP_ERROR, returns, None, os.getpid(), retryable(spec, exc))


def error_result_for(task_id: bytes, exc: BaseException) -> TaskResult:
    """A cancelled task that never started: its owner knows its return ids by task id;
    the result carries no returns and the owner fills them in (status APP_ERROR)."""
    return TaskResult(task_id, APP_ERROR, [], serialization.serialize_error(exc).to_bytes(), os.getpid(), False)


def error_result(spec: TaskSpec, exc: BaseException) -> TaskResult:
    """The result of a task that failed with ``exc`` outside its code (not retried)."""
    err = serialization.serialize_error(exc).to_bytes()
    returns = [(oid, SERIALIZED, err) for oid in return_ids(spec)]
    return TaskResult(spec.task_id, APP_ERROR, returns, None, os.getpid(), False)
