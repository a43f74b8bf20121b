"""``get_runtime_context()``: ids of the current job, node, worker, task and actor."""

from __future__ import annotations

from typing import Any

from microray.core.context import current_task


class RuntimeContext:
    def __init__(self, worker: Any) -> None:
        self._worker = worker

    def get_job_id(self) -> str:
        task = current_task()
        return task.job_id if task is not None and task.job_id else self._worker.job_id

    @property
    def job_id(self) -> str:
        return self.get_job_id()

    def get_node_id(self) -> str:
        return self._worker.node_id

    @property
    def node_id(self) -> str:
        return self.get_node_id()

    def get_worker_id(self) -> str:
        return self._worker.worker_id

    def get_task_id(self) -> str | None:
        task = current_task()
        return task.task_id.hex() if task is not None else None

    def get_task_name(self) -> str | None:
        task = current_task()
        return task.function_name if task is not None else None

    def get_actor_id(self) -> str | None:
        task = current_task()
        actor_id = getattr(self._worker, "actor_id", None)
        if actor_id:
            return actor_id
        return task.actor_id or None if task is not None else None

    def get_actor_name(self) -> str | None:
        return getattr(self._worker, "actor_name", None)

    @property
    def namespace(self) -> str | None:
        return self._worker.namespace

    def get_assigned_resources(self) -> dict[str, float]:
        task = current_task()
        return dict(task.resources) if task is not None else {}

    def get_runtime_env_string(self) -> str:
        import json

        task = current_task()
        return json.dumps(task.runtime_env or {}) if task is not None else "{}"

    @property
    def gcs_address(self) -> str:
        return self._worker.gcs_address

    def get(self) -> dict[str, Any]:
        return {
            "job_id": self.get_job_id(),
            "node_id": self.get_node_id(),
            "worker_id": self.get_worker_id(),
            "task_id": self.get_task_id(),
            "actor_id": self.get_actor_id(),
            "namespace": self.namespace,
        }
