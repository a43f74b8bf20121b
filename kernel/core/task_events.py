"""Task state events: recorded on the owner's hot path as cheap tuples, shipped to the
GCS in batches off it, and handed to ``microray_task_finished`` observers.

States follow Ray's: PENDING_ARGS_AVAIL -> PENDING_NODE_ASSIGNMENT ->
SUBMITTED_TO_WORKER (queued at its worker behind other tasks) -> RUNNING -> FINISHED |
FAILED (| CANCELLED). The owner infers RUNNING (``TaskStream``): a task sent to a worker
with nothing in flight runs at once, a queued one once those before it are done; a task
that started and ended between two result batches goes from SUBMITTED_TO_WORKER straight
to its end.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from typing import Any

import grpc
import structlog

from microray import serialization
from microray.protocol import gcs_pb2

log = structlog.get_logger(__name__)

FLUSH_PERIOD_S = 0.5


class TaskEventBuffer:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.events: list[tuple] = []
        self._task: asyncio.Task | None = None
        from microray.plugin_manager import get_plugin_manager

        self.pm = get_plugin_manager()

    # -- hot path (any thread) -----------------------------------------------------
    def submitted(self, spec: Any, state: str) -> None:
        self.events.append((spec.task_id, state, time.time(), spec))

    def state(self, task_id: bytes, state: str, **fields: Any) -> None:
        self.events.append((task_id, state, time.time(), fields))

    # -- off the hot path --------------------------------------------------------------
    def start(self) -> None:
        self._task = self.cw.loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_PERIOD_S)
            await self.flush()

    async def flush(self) -> None:
        if not self.events:
            return
        events, self.events = self.events, []
        rows = [self._row(e) for e in events]
        try:
            await self.cw.gcs.ReportTaskEvents(gcs_pb2.TaskEventBatch(events=pickle.dumps(rows)), timeout=5)
        except grpc.aio.AioRpcError as exc:
            log.debug("task_events_dropped", count=len(rows), error=exc.code().name)
        if self.pm.has_observers("microray_task_finished"):
            finished = [r for r in rows if r["state"] in ("FINISHED", "FAILED", "CANCELLED")]
            if finished:
                loop = asyncio.get_running_loop()
                loop.run_in_executor(None, self._notify, finished)

    def _notify(self, rows: list[dict]) -> None:
        for row in rows:
            self.pm.notify("microray_task_finished", task=row)

    def _row(self, event: tuple) -> dict:
        task_id, state, ts, extra = event
        row: dict[str, Any] = {"task_id": task_id.hex(), "state": state, "time": ts}
        if state in ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT") and not isinstance(extra, dict):
            spec = extra  # a submission carries the spec; a retry's re-queue carries fields
            row.update(
                name=spec.name or (f"{spec.function_name}.{spec.method_name}" if spec.method_name else spec.function_name),
                func_or_class_name=f"{spec.function_name}.{spec.method_name}" if spec.method_name else spec.function_name,
                job_id=spec.job_id,
                type=("ACTOR_TASK" if spec.kind == 2 else "ACTOR_CREATION_TASK" if spec.kind == 1 else "NORMAL_TASK"),
                actor_id=spec.actor_id or None,
                required_resources=dict(spec.resources),
                parent_task_id=spec.parent_task_id.hex() if spec.parent_task_id else None,
                owner=self.cw.worker_id,
                attempt=spec.attempt,
                args_summary=_args_summary(spec.args),
                submit_time=ts,
            )
        else:
            err = extra.pop("error_bytes", None)
            if err is not None:
                try:
                    value, _ = serialization.deserialize(err)
                    extra["error_type"] = type(value).__name__
                    extra["error_message"] = str(value)[:4000]
                except Exception as exc:  # noqa: BLE001 -- an unreadable error still reports
                    extra["error_message"] = f"(could not decode the error: {exc})"
            row.update(extra)
        return row

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.flush()


def _args_summary(args: list) -> list[str]:
    out = []
    for arg in args[:8]:
        kind = arg[0]
        if kind == 0:
            out.append(repr(arg[1])[:60])
        elif kind == 1:
            out.append(f"<serialized {len(arg[1])} bytes>")
        else:
            out.append(f"ObjectRef({arg[1].hex()})")
    if len(args) > 8:
        out.append(f"... {len(args) - 8} more")
    return out
