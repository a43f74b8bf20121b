"""``get_runtime_context()``: ids of the current job, node, worker, task and actor.

As in Ray, the ``get_*_id()`` methods return hex strings and the ``job_id``,
``node_id``, ``task_id`` and ``actor_id`` properties return id objects
(``microray.ids.JobID`` ...) with ``hex()``, ``binary()`` and ``is_nil()``.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

from microray import ids
from microray.core import context
from microray.core.context import current_task
from microray.core.task_spec import ACTOR_CREATION, ACTOR_METHOD
from microray.protocol import gcs_pb2
from microray.runtime_env import RuntimeEnv

# Makes an actor handle from the GCS's record of an actor (``current_actor``): registered
# by ``microray.actor``, the layer above this one, when it is imported.
_actor_handle_factory: Callable[[dict], Any] | None = None

# per actor: the resources it holds for its lifetime (they never change), read once
_actor_resources: dict[str, dict[str, float]] = {}


def set_actor_handle_factory(factory: Callable[[dict], Any]) -> None:
    """Register what turns an actor's record into a handle (``microray.actor`` does)."""
    global _actor_handle_factory
    _actor_handle_factory = factory


class RuntimeContext:
    """What the current process and task run as (Ray's ``RuntimeContext``)."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    @property
    def _worker(self) -> Any:
        return self.worker

    def get_job_id(self) -> str:
        """The current job's id, hex."""
        task = current_task()
        return task.job_id if task is not None and task.job_id else self.worker.job_id

    @property
    def job_id(self) -> ids.JobID:
        return ids.JobID.from_hex(self.get_job_id())

    def get_node_id(self) -> str:
        """This node's id, hex."""
        return self.worker.node_id

    @property
    def node_id(self) -> ids.NodeID:
        return ids.NodeID.from_hex(self.get_node_id())

    def get_worker_id(self) -> str:
        """This process's worker id, hex."""
        return self.worker.worker_id

    @property
    def worker_id(self) -> ids.WorkerID:
        return ids.WorkerID.from_hex(self.get_worker_id())

    def get_task_id(self) -> str | None:
        """The running task's id, hex; None outside a task (in a driver)."""
        task = current_task()
        return task.task_id.hex() if task is not None else None

    @property
    def task_id(self) -> ids.TaskID | None:
        task = current_task()
        return ids.TaskID(task.task_id) if task is not None else None

    def get_task_name(self) -> str | None:
        """The running task's name, as Ray names it: the name given with
        ``.options(name=...)``, else ``f`` for a task, ``Counter.incr`` for an actor method
        and ``Counter.__init__`` for an actor's constructor; None outside a task."""
        task = current_task()
        if task is None:
            return None
        if task.name:
            return task.name
        if task.kind == ACTOR_METHOD:
            return f"{task.function_name}.{task.method_name}"
        if task.kind == ACTOR_CREATION:
            return f"{task.function_name}.__init__"
        return task.function_name

    def get_task_function_name(self) -> str | None:
        """The running task's function, fully qualified: ``module.f`` for a task
        (``__main__.f`` for one defined in the driver's script), ``module.Counter.incr``
        for an actor method (``module.Counter.__init__`` in the constructor); None outside
        a task. A name given with ``.options(name=...)`` does not change it."""
        task = current_task()
        if task is None:
            return None
        target = self._task_target(task)
        module = getattr(target, "__module__", None)
        if task.kind == ACTOR_METHOD:
            parts = [module, task.function_name, task.method_name]
        elif task.kind == ACTOR_CREATION:
            parts = [module, task.function_name, "__init__"]
        else:
            parts = [module, getattr(target, "__qualname__", None) or task.function_name]
        return ".".join(p for p in parts if p)

    def _task_target(self, task: Any) -> Any:
        """The function (or, for an actor's calls, the class) the task runs, as loaded here."""
        functions = getattr(self.worker, "functions", None) or {}
        target = functions.get(task.function_id) if task.function_id else None
        if target is None and task.kind == ACTOR_METHOD:
            actor = getattr(getattr(self.worker, "executor", None), "actor", None)
            target = type(actor) if actor is not None else None
        return target

    def get_actor_id(self) -> str | None:
        """The current actor's id, hex; None outside an actor."""
        task = current_task()
        actor_id = getattr(self.worker, "actor_id", None)
        if actor_id:
            return actor_id
        return task.actor_id or None if task is not None else None

    @property
    def actor_id(self) -> ids.ActorID | None:
        actor_id = self.get_actor_id()
        return ids.ActorID.from_hex(actor_id) if actor_id else None

    def get_actor_name(self) -> str | None:
        return getattr(self.worker, "actor_name", None)

    def _actor_record(self, what: str, error: type[Exception] = RuntimeError) -> dict:
        """The GCS's record of the actor this process runs (``what`` names the caller in
        the error raised outside an actor)."""
        actor_id = getattr(self.worker, "actor_id", None)
        if not actor_id:
            raise error(f"{what} is only available in an actor (this process runs none)")
        reply = self.worker.call(self.worker.gcs.GetActor, gcs_pb2.ActorLookupRequest(actor_id=actor_id))
        if not reply.found:
            raise RuntimeError(f"{what}: the GCS has no record of the actor {actor_id}")
        return pickle.loads(reply.record)

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether the current actor has been restarted (its restart count is above 0).
        Outside an actor, raises ``AssertionError``, as Ray does."""
        return bool(self._actor_record("was_current_actor_reconstructed", AssertionError).get("num_restarts"))

    @property
    def current_actor(self) -> Any:
        """A handle to the current actor itself. Raises ``RuntimeError`` outside an actor."""
        record = self._actor_record("current_actor")
        if _actor_handle_factory is None:
            raise RuntimeError("current_actor needs the actor API loaded in this process: import microray.actor")
        return _actor_handle_factory(record)

    @property
    def namespace(self) -> str | None:
        return self.worker.namespace

    def get_placement_group_id(self) -> str | None:
        """Always None: microray does not support placement groups."""
        return None

    @property
    def current_placement_group_id(self) -> ids.PlacementGroupID:
        return ids.PlacementGroupID.nil()

    @property
    def should_capture_child_tasks_in_placement_group(self) -> bool:
        return False

    def get_assigned_resources(self) -> dict[str, float]:
        """The resources the current task holds (``{"CPU": 1.0}`` for a default task) or,
        in an actor, those the actor holds for its lifetime: what it asked for with
        ``num_cpus``/``num_gpus``/``resources`` ({} for a default actor, which holds no
        CPU once created, as in Ray). {} in a driver."""
        actor_id = getattr(self.worker, "actor_id", None)
        if actor_id:
            held = _actor_resources.get(actor_id)
            if held is None:
                record = self._actor_record("get_assigned_resources")
                held = _actor_resources[actor_id] = {k: float(v) for k, v in (record.get("hold") or {}).items()}
            return dict(held)
        task = current_task()
        return dict(task.resources) if task is not None else {}

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """The accelerators the current task or actor was given, by resource name."""
        return {"GPU": [str(i) for i in getattr(self.worker, "gpu_ids", None) or []]}

    def get_node_labels(self) -> dict[str, str]:
        """The labels of the node this process runs on (``init(labels=...)``,
        ``microray start --labels``)."""
        node_id = self.get_node_id()
        for node in self.worker.get_all_nodes():
            if node.node_id == node_id:
                return dict(node.labels)
        return {}

    def get_runtime_env_string(self) -> str:
        """The runtime env this task, actor or driver runs in, as JSON: the task's (its
        own over its job's), else the one this process was started with (a driver: the
        job's, from ``init(runtime_env=...)``)."""
        task = current_task()
        env = task.runtime_env if task is not None and task.runtime_env else None
        if env is None:
            env = getattr(self.worker, "job_runtime_env", None)
        return json.dumps(env or {})

    @property
    def runtime_env(self) -> Any:
        """The runtime env this task, actor or driver runs in, as a ``RuntimeEnv`` (a dict)."""
        return RuntimeEnv.deserialize(self.get_runtime_env_string())

    @property
    def gcs_address(self) -> str:
        return self.worker.gcs_address

    def is_canceled(self) -> bool:
        """Whether the running task was cancelled with ``cancel()``. A task that catches
        the cancellation, or a method of a threaded actor (which is not interrupted),
        checks this to stop. Raises RuntimeError outside a task and, as in Ray, in an async
        actor (whose cancelled calls see ``asyncio.CancelledError`` instead)."""
        task = current_task()
        if task is None:
            raise RuntimeError("is_canceled() is only valid inside a task or an actor method")
        executor = getattr(self.worker, "executor", None)
        if getattr(executor, "mode", None) == "async":
            raise RuntimeError("is_canceled() is not supported in an async actor: cancel() cancels the call's "
                               "asyncio task, which sees asyncio.CancelledError")
        return executor is not None and task.task_id in executor.cancelled

    def get(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "node_id": self.node_id,
            "worker_id": self.get_worker_id(),
            "task_id": self.task_id,
            "actor_id": self.actor_id,
            "namespace": self.namespace,
        }


def get_runtime_context() -> RuntimeContext:
    """The runtime context of this process (connects first, as the API does)."""
    return RuntimeContext(context.current_worker())


__all__ = ["RuntimeContext", "get_runtime_context"]
