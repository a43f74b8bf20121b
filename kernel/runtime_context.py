"""``get_runtime_context()``: ids of the current job, node, worker, task and actor.

As in Ray, the ``get_*_id()`` methods return hex strings and the ``job_id``,
``node_id``, ``task_id`` and ``actor_id`` properties return id objects
(``microray.ids.JobID`` ...) with ``hex()``, ``binary()`` and ``is_nil()``.
"""

from __future__ import annotations

from typing import Any

from microray import ids
from microray.core import context
from microray.core.context import current_task


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
        task = current_task()
        return task.function_name if task is not None else None

    def get_task_function_name(self) -> str | None:
        return self.get_task_name()

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
        task = current_task()
        return dict(task.resources) if task is not None else {}

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """The accelerators the current task or actor was given, by resource name."""
        return {"GPU": [str(i) for i in getattr(self.worker, "gpu_ids", None) or []]}

    def get_runtime_env_string(self) -> str:
        import json

        task = current_task()
        return json.dumps(task.runtime_env or {}) if task is not None else "{}"

    @property
    def runtime_env(self) -> dict[str, Any]:
        import json

        return json.loads(self.get_runtime_env_string())

    @property
    def gcs_address(self) -> str:
        return self.worker.gcs_address

    def is_canceled(self) -> bool:
        """Whether the running task was cancelled with ``cancel()``. A task that catches
        the cancellation, or a method of a threaded actor (which is not interrupted),
        checks this to stop. Raises RuntimeError outside a task."""
        task = current_task()
        if task is None:
            raise RuntimeError("is_canceled() is only valid inside a task or an actor method")
        executor = getattr(self.worker, "executor", None)
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
