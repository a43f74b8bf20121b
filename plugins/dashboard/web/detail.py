"""The Timeline's data (``/api/v0/timeline``) and a job's page (``/api/v0/jobs/{id}``).

Both read the GCS task history through the state API on the state thread pool, a bounded
page at a time: the timeline takes the newest ended tasks (as ``microray timeline`` does,
in the same Chrome trace format), a job's page its newest tasks and its actors.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from microray.util.state import timeline_events

from microray.plugins.dashboard.web.api import _int, _run
from microray.plugins.dashboard.web.keys import K_JOBS, error, json_response

TIMELINE_DEFAULT = 1000
TIMELINE_MAX = 20_000
JOB_TASKS = 200


def _ended_tasks(client: Any, limit: int, job_ids: list[str] | None) -> tuple[list[dict[str, Any]], int]:
    """The newest ``limit`` FINISHED and FAILED tasks (of ``job_ids`` when given) and how
    many ended tasks the history holds in all."""
    rows: list[dict[str, Any]] = []
    total = 0
    jobs: list[str | None] = list(job_ids) if job_ids else [None]
    for job in jobs:
        for state in ("FINISHED", "FAILED"):
            filters = [("state", "=", state)] + ([("job_id", "=", job)] if job else [])
            page = client.tasks(filters, limit)
            rows += page["tasks"]
            total += page["total"]
    rows.sort(key=lambda t: t.get("end_time") or 0, reverse=True)
    return rows[:limit], total


async def timeline(request: web.Request) -> web.Response:
    """The newest ended tasks as Chrome trace JSON (object form: Perfetto and
    chrome://tracing open it as is), with how many tasks were left out."""
    limit = _int(request, "limit", TIMELINE_DEFAULT, 1, TIMELINE_MAX)
    job = request.query.get("job_id") or None
    rows, total = await _run(request, lambda c: _ended_tasks(c, limit, [job] if job else None))
    events = timeline_events(rows)
    return json_response({"traceEvents": events, "displayTimeUnit": "ms",
                          "otherData": {"tasks_shown": len(events), "tasks_ended": total, "limit": limit}})


async def job_detail(request: web.Request) -> web.Response:
    """A job by submission id or driver job id: the submission (when it was submitted
    here), the drivers it ran, their newest tasks and their actors."""
    wanted = request.match_info["job_id"]
    sub = request.app[K_JOBS].jobs.get(wanted)

    def read(c: Any) -> dict[str, Any]:
        drivers = [d for d in c.jobs() if d["job_id"] == wanted or (d.get("submission_id") and d["submission_id"] == wanted)]
        job_ids = [d["job_id"] for d in drivers]
        tasks: list[dict[str, Any]] = []
        total = 0
        for job in job_ids:
            page = c.tasks([("job_id", "=", job)], JOB_TASKS)
            tasks += page["tasks"]
            total += page["total"]
        tasks.sort(key=lambda t: t.get("submit_time") or 0, reverse=True)
        actors = [a for a in c.actors() if a.get("job_id") in job_ids]
        return {"drivers": drivers, "job_ids": job_ids, "tasks": tasks[:JOB_TASKS], "tasks_total": total,
                "actors": actors}

    data = await _run(request, read)
    if sub is None and not data["drivers"]:
        return error(404, f"no job {wanted!r}: not a submission id of this dashboard nor a driver's job id")
    data["submission"] = sub.public() if sub is not None else None
    return json_response(data)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v0/timeline", timeline)
    app.router.add_get("/api/v0/jobs/{job_id}", job_detail)
