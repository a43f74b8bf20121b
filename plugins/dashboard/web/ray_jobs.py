"""The parts of Ray's job REST API that microray's own job API lacks: ``GET /api/version``
and the log tail websocket ``/api/jobs/{id}/logs/tail``.

With them (and the Ray-shaped replies of ``/api/jobs/``, see ``jobs.Job.ray``), Ray's
``JobSubmissionClient`` and ``ray job ...`` CLI talk to a microray head unchanged. Ray's
client refuses a server whose ``ray_version`` is below 2.0, so the version reply names the
Ray release whose job API this one follows (``RAY_JOBS_API_VERSION``) and, separately,
microray's own version.
"""

from __future__ import annotations

import asyncio
import os

import structlog
from aiohttp import WSCloseCode, web

from microray import __version__

from microray.plugins.dashboard.web.jobs import TERMINAL, JobError
from microray.plugins.dashboard.web.keys import K_CONTEXT, K_JOBS, error, json_response

log = structlog.get_logger(__name__)

RAY_JOBS_API_VERSION = "2.60.0"  # the Ray release whose job REST API this follows
_API_REVISION = "4"  # what Ray's version endpoint calls "version": its job API's revision
TAIL_POLL_S = 0.2


async def version(request: web.Request) -> web.Response:
    """Ray's ``VersionResponse`` (``version``, ``ray_version``, ``ray_commit``, ``session_name``)
    plus ``microray_version``."""
    session = os.path.basename(request.app[K_CONTEXT].session_dir.rstrip("/"))
    return json_response({"version": _API_REVISION, "ray_version": RAY_JOBS_API_VERSION,
                          "ray_commit": f"microray-{__version__}", "session_name": session,
                          "microray_version": __version__})


async def tail_logs(request: web.Request) -> web.StreamResponse:
    """A websocket that sends the job's log as text messages from its start, as it grows,
    and closes normally once the job has ended and everything was sent."""
    jobs = request.app[K_JOBS]
    sid = request.match_info["job_id"]
    try:
        jobs.get(sid)
    except JobError as exc:
        return error(exc.status, str(exc))
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    offset = 0
    try:
        while not ws.closed:
            try:
                chunk = jobs.logs(sid, offset)
            except JobError:  # deleted while followed
                break
            offset = chunk["offset"]
            if chunk["logs"]:
                await ws.send_str(chunk["logs"])
                continue  # more may be waiting (a read is capped)
            if chunk["status"] in TERMINAL:
                break
            await asyncio.sleep(TAIL_POLL_S)
    except (ConnectionResetError, asyncio.CancelledError):
        log.debug("job_tail_client_gone", submission_id=sid)
        raise
    finally:
        if not ws.closed:
            await ws.close(code=WSCloseCode.OK)
    return ws


_NO_RAY_PACKAGES = ("this head does not take runtime_env packages in Ray's format, which Ray's job client "
                    "makes of a local working_dir or py_modules: submit without them (the entrypoint then runs in "
                    "the dashboard's working folder on the head), or with `microray job submit --working-dir DIR`")


async def ray_package(request: web.Request) -> web.Response:
    """Ray's package endpoints (``/api/packages/{protocol}/{name}``): never stored here, so a
    GET says 404 (not there) and a PUT (the upload that follows) is refused, naming what works."""
    if request.method == "GET":
        return error(404, f"no package {request.match_info['name']!r}: " + _NO_RAY_PACKAGES)
    return error(400, _NO_RAY_PACKAGES)
