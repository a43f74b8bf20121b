"""What a generator task's values become, as Ray defines it (the worker's side).

- A static ``num_returns=N`` with a generator: the values fill the N returns one by one.
  An error after ``k`` values fails only returns ``k+1..N`` (with the task's error); too
  few values fail the rest with ``ValueError("Task returned k objects, but
  num_returns=N.")``; a value beyond N is an error with no return left to hold it, so it
  is logged and the N returns keep their values (Ray documents this as a known gap).
- ``num_returns="dynamic"``: return 1 holds a ``DynamicObjectRefGenerator`` of refs to
  returns 2, 3, ... (owned by the caller); an error becomes one more, final ref.
- Streaming (``"streaming"``, or a generator with no ``num_returns``) from an async
  actor: an ``async def`` generator method streams its values as a plain one does.

Each value goes through the executor's ``store_value`` (inline or into the node's
store); each error through its ``task_error`` (the pickled ``RayTaskError``), which
reads the exception being handled, so it is called inside ``except``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Container
from typing import Any

import structlog

from microray import ids
from microray.core.memory_store import SERIALIZED
from microray.core.object_ref import DynamicObjectRefGenerator, ObjectRef
from microray.core.task_spec import GEN_END, GEN_ITEM, TaskResult, TaskSpec
from microray.exceptions import TaskCancelledError

log = structlog.get_logger(__name__)

# (object id, value, spec, contained) -> a return entry (object id, kind, payload)
StoreValue = Callable[[bytes, Any, TaskSpec, dict], tuple]
TaskError = Callable[[TaskSpec, BaseException], bytes]


def static_generator(spec: TaskSpec, gen: Any, contained: dict, store_value: StoreValue,
                     task_error: TaskError) -> tuple[list, BaseException | None, bytes | None]:
    """The N returns of a generator task called with ``num_returns=N``: ``(returns,
    error, error_bytes)``; ``error`` is None when all N values came."""
    n = spec.num_returns
    returns: list = []
    try:
        for value in gen:
            if len(returns) == n:
                gen.close()
                log.error("generator_yielded_too_many", task=spec.function_name, num_returns=n,
                          detail=f"Task returned more than num_returns={n} objects; the extra values are dropped")
                break
            returns.append(store_value(ids.object_id(spec.task_id, len(returns) + 1), value, spec, contained))
        if len(returns) < n:
            raise ValueError(f"Task returned {len(returns)} objects, but num_returns={n}.")
    except Exception as exc:  # noqa: BLE001 -- the error fills the returns not yet made
        if len(returns) == n:  # all N made: as Ray, the error has nowhere to go but the log
            log.error("generator_failed_after_its_returns", task=spec.function_name, num_returns=n, error=repr(exc))
            return returns, None, None
        err = task_error(spec, exc)
        returns.extend((ids.object_id(spec.task_id, i + 1), SERIALIZED, err) for i in range(len(returns), n))
        return returns, exc, err
    return returns, None, None


def dynamic(spec: TaskSpec, value: Any, contained: dict, store_value: StoreValue,
            task_error: TaskError) -> list:
    """The returns of a ``num_returns="dynamic"`` task: the generator's refs in
    return 1, its values (and a final error, if it raised) in returns 2, 3, ..."""
    if not inspect.isgenerator(value):
        raise ValueError(f'Functions with @ray.remote(num_returns="dynamic") must return a generator; '
                         f"{spec.function_name} returned {type(value).__name__}")
    items: list = []
    try:
        for item in value:
            items.append(store_value(ids.object_id(spec.task_id, len(items) + 2), item, spec, contained))
    except Exception as exc:  # noqa: BLE001 -- as Ray: the error is one more, final ref
        items.append((ids.object_id(spec.task_id, len(items) + 2), SERIALIZED, task_error(spec, exc)))
    refs = [ObjectRef(entry[0], spec.owner, _count=False) for entry in items]
    outer = store_value(ids.object_id(spec.task_id, 1), DynamicObjectRefGenerator(refs), spec, contained)
    return [outer, *items]


async def stream_async(spec: TaskSpec, values: Any, sink: Callable[[TaskResult], None], store_value: StoreValue,
                       task_error: TaskError, split_sizes: Callable[[TaskResult, dict], None]) -> None:
    """Stream what an async actor's generator method yields (``async def`` with
    ``yield``, or a plain generator), one result per value, then the end marker."""
    index = 0
    try:
        if inspect.isasyncgen(values):
            async for value in values:
                index += 1
                _send(spec, index, value, sink, store_value, split_sizes)
        else:
            for value in values if inspect.isgenerator(values) else [values]:
                index += 1
                _send(spec, index, value, sink, store_value, split_sizes)
    except Exception as exc:  # noqa: BLE001 -- the error becomes the next item
        index += 1
        sink(TaskResult(spec.task_id, GEN_ITEM, [(ids.object_id(spec.task_id, index), SERIALIZED,
                                                   task_error(spec, exc))]))
    sink(TaskResult(spec.task_id, GEN_END, [], index))


def stream_sync(spec: TaskSpec, values: Any, sink: Callable[[TaskResult], None], store_value: StoreValue,
                task_error: TaskError, split_sizes: Callable[[TaskResult, dict], None],
                cancelled: Container[bytes]) -> None:
    """Stream what a generator task or a plain actor's generator method yields, one result
    per value, then the end marker. A cancel (``spec.task_id`` in ``cancelled``) stops it
    after the item being sent (an actor's method is not interrupted, as in Ray); the
    cancellation, or what the generator raised, becomes the last item."""
    index = 0
    try:
        for value in values if inspect.isgenerator(values) else iter([values]):
            index += 1
            _send(spec, index, value, sink, store_value, split_sizes)
            if spec.task_id in cancelled:
                values.close()
                raise TaskCancelledError(spec.task_id.hex())
    except BaseException as exc:  # noqa: BLE001 -- the error becomes the next item (a cancel, Ctrl-C too)
        if isinstance(exc, SystemExit):
            raise
        index += 1
        sink(TaskResult(spec.task_id, GEN_ITEM, [(ids.object_id(spec.task_id, index), SERIALIZED,
                                                   task_error(spec, exc))]))
    sink(TaskResult(spec.task_id, GEN_END, [], index))


def _send(spec: TaskSpec, index: int, value: Any, sink: Callable[[TaskResult], None], store_value: StoreValue,
          split_sizes: Callable[[TaskResult, dict], None]) -> None:
    contained: dict = {}
    result = TaskResult(spec.task_id, GEN_ITEM, [store_value(ids.object_id(spec.task_id, index), value, spec,
                                                             contained)])
    split_sizes(result, contained)
    sink(result)
