"""The GCS's bounded task history (pure; no I/O).

Events are merged into one record per task. At most ``cap`` records are kept;
past that the oldest *finished* records are evicted (running and pending ones
are kept), while the per-state counts cover every task ever reported.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from itertools import islice
from typing import Any

TERMINAL = ("FINISHED", "FAILED", "CANCELLED")


class TaskStore:
    def __init__(self, cap: int) -> None:
        self.cap = max(1, cap)
        self.tasks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.counts: dict[str, int] = {}
        self.dropped = 0
        self._finished: OrderedDict[str, None] = OrderedDict()  # eviction order

    def add(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            task_id = row["task_id"]
            rec = self.tasks.get(task_id)
            state = row["state"]
            if rec is None:
                rec = self.tasks[task_id] = {"task_id": task_id, "events": []}
            else:
                old = rec.get("state")
                if old in TERMINAL and state not in TERMINAL and row.get("attempt", 0) <= rec.get("attempt", 0):
                    continue  # a late non-final event after the end
                if old is not None:
                    self.counts[old] -= 1
            for key, value in row.items():
                if key not in ("time",):
                    rec[key] = value
            rec["events"].append((state, row["time"]))
            if state == "RUNNING":  # started (a task queued at its worker first was SUBMITTED_TO_WORKER)
                rec["start_time"] = row["time"]
            elif state == "SUBMITTED_TO_WORKER":
                rec["start_time"] = rec.get("start_time") or row["time"]
            if state in TERMINAL:
                rec["end_time"] = row.get("end_time") or row["time"]
                self._finished[task_id] = None
            else:
                self._finished.pop(task_id, None)
            self.counts[state] = self.counts.get(state, 0) + 1
        self._evict()

    def fail_unfinished(self, job_id: str, now: float, message: str, keep_owners: Collection[str] = ()) -> int:
        """Mark FAILED every task of ``job_id`` not in a terminal state: its job ended, so
        no owner is left to report how it ends (as Ray does, with ``WORKER_DIED``). Tasks
        owned by a process in ``keep_owners`` (a detached actor's worker: it outlives the
        job) are left as they are. Returns how many were marked."""
        marked = 0
        for task_id, rec in self.tasks.items():
            old = rec.get("state")
            if rec.get("job_id") != job_id or old in TERMINAL or rec.get("owner") in keep_owners:
                continue
            if old is not None:
                self.counts[old] -= 1
            rec.update(state="FAILED", error_type="WORKER_DIED", error_message=message, end_time=now)
            rec["events"].append(("FAILED", now))
            self._finished[task_id] = None
            self.counts["FAILED"] = self.counts.get("FAILED", 0) + 1
            marked += 1
        self._evict()
        return marked

    def _evict(self) -> None:
        while len(self.tasks) > self.cap and self._finished:
            task_id, _ = self._finished.popitem(last=False)
            self.tasks.pop(task_id, None)
            self.dropped += 1

    def query(self, filters: list[tuple[str, str, Any]], limit: int, offset: int = 0) -> tuple[list[dict], int]:
        """Newest first; ``filters`` are ``(key, "=" | "!=", value)``."""
        if not filters:  # no scan: the total is the size, the page the newest records
            return list(islice(reversed(self.tasks.values()), offset, offset + limit)), len(self.tasks)
        out: list[dict] = []
        matched = 0
        for rec in reversed(self.tasks.values()):
            if not _matches(rec, filters):
                continue
            matched += 1
            if matched > offset and len(out) < limit:
                out.append(rec)
        return out, matched


def _matches(rec: dict[str, Any], filters: list[tuple[str, str, Any]]) -> bool:
    for key, op, value in filters:
        have = rec.get(key)
        same = str(have) == str(value) if have is not None else value in (None, "", "None")
        if (op == "=" and not same) or (op == "!=" and same):
            return False
    return True
