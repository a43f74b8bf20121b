"""The JSON API (``/api/v0/...``), the job API (``/api/jobs/...``) and ``/metrics``.

Every handler reads through the kernel's state API on the state thread pool
(``StateSource.run``); nothing here keeps per-task state, and task lists are paged
in the GCS (``GetTaskEvents`` offset/limit), never shipped whole. See
docs/dashboard.md for each endpoint's parameters and response.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from typing import Any

import grpc
from aiohttp import web

from microray import runtime_env as renv
from microray.plugin_manager import get_plugin_manager
from microray.redaction import redact, redact_config  # noqa: F401 -- redact: part of this module's API
from microray.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc, gcs_pb2
from microray.util import state as state_api

from microray.plugins.dashboard.web import logs as logs_mod
from microray.plugins.dashboard.web import ray_jobs
from microray.plugins.dashboard.web.jobs import JobError
from microray.plugins.dashboard.web.keys import (
    K_CONTEXT, K_JOBS, K_METRICS, K_SOURCE, bad_request, error, json_response,
)
from microray.plugins.dashboard.web.metrics import CONTENT_TYPE, gather
from microray.plugins.dashboard.web.source import TERMINAL, cluster_summary, snapshot

MAX_LIMIT = 1000
TASK_FILTER_KEYS = ("state", "name", "func_or_class_name", "job_id", "actor_id", "node_id", "worker_id", "type",
                    "task_id", "parent_task_id")
ACTOR_FILTER_KEYS = ("state", "name", "class_name", "namespace", "job_id", "node_id", "pid")
OBJECT_FILTER_KEYS = ("reference_type", "location", "node_id", "owner_worker_id", "task_status")


class StateUnavailable(RuntimeError):
    """The GCS (or a raylet) did not answer."""


async def _run(request: web.Request, fn: Any, *args: Any) -> Any:
    try:
        return await request.app[K_SOURCE].run(fn, *args)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "?"
        raise StateUnavailable(f"the cluster did not answer ({code}); is it running?") from None


def _int(request: web.Request, name: str, default: int, lo: int = 0, hi: int = MAX_LIMIT) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer") from None
    return max(lo, min(value, hi))


def _filters(request: web.Request, keys: tuple[str, ...], kind: str) -> list[tuple[str, str, str]]:
    """``?state=RUNNING&name=f`` plus Ray-style ``?filter=key=value`` / ``?filter=key!=value``,
    checked as the state API checks them: an unknown key is a 400 naming the valid ones;
    state and type values match in any case."""
    out = [(k, "=", request.query[k]) for k in keys if request.query.get(k)]
    for raw in request.query.getall("filter", []):
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(!=|=)(.*)$", raw)
        if not m:
            raise bad_request("filter must be key=value or key!=value")
        out.append((m.group(1), m.group(2), m.group(3)))
    try:
        return state_api.check_filters(kind, out)
    except state_api.InvalidFilterError as exc:
        raise bad_request(str(exc)) from None


def _apply(rows: list[dict[str, Any]], filters: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        if all((str(row.get(k)) == v) == (op == "=") for k, op, v in filters):
            out.append(row)
    return out


def _page(request: web.Request, rows: list[dict[str, Any]], key: str) -> web.Response:
    limit = _int(request, "limit", 100, 1)
    offset = _int(request, "offset", 0, 0, 10**9)
    return json_response({key: rows[offset:offset + limit], "total": len(rows), "limit": limit, "offset": offset})


# -- cluster -------------------------------------------------------------------------------
async def cluster(request: web.Request) -> web.Response:
    snap = await _run(request, snapshot)
    actors = await _run(request, lambda c: c.actors())
    data = cluster_summary(snap, actors)
    data["jobs"] = {"running_submissions": request.app[K_JOBS].running()}
    return json_response(data)


async def timeseries(request: web.Request) -> web.Response:
    try:
        since = float(request.query.get("since", 0) or 0)
    except ValueError:
        raise bad_request("since must be a unix time") from None
    return json_response(await _run(request, lambda c: c.timeseries(since)))


async def nodes(request: web.Request) -> web.Response:
    def read(c: Any) -> list[dict[str, Any]]:
        rows = c.nodes()
        workers = c.workers()
        now = time.time()
        for n in rows:
            n["workers"] = [w for w in workers if w["node_id"] == n["node_id"]]
            n["heartbeat_age_s"] = round(now - n["last_heartbeat"], 3) if n["last_heartbeat"] else None
        return rows

    rows = _apply(await _run(request, read), _filters(request, ("state", "node_id"), "nodes"))
    return _page(request, rows, "nodes")


async def node(request: web.Request) -> web.Response:
    rows = (await _run(request, lambda c: c.nodes()))
    for n in rows:
        if n["node_id"] == request.match_info["node_id"]:
            n["workers"] = [w for w in await _run(request, lambda c: c.workers()) if w["node_id"] == n["node_id"]]
            return json_response(n)
    return error(404, "no such node")


async def workers(request: web.Request) -> web.Response:
    rows = _apply(await _run(request, lambda c: c.workers()), _filters(request, ("node_id", "worker_type", "state"), "workers"))
    return _page(request, rows, "workers")


# -- tasks -----------------------------------------------------------------------------------
async def tasks(request: web.Request) -> web.Response:
    limit = _int(request, "limit", 100, 1)
    offset = _int(request, "offset", 0, 0, 10**9)
    detail = request.query.get("detail") in ("1", "true")
    filters = _filters(request, TASK_FILTER_KEYS, "tasks")
    data = await _run(request, lambda c: c.tasks(filters, limit, offset, detail))
    return json_response({"tasks": data["tasks"], "total": data["total"], "counts": data["counts"],
                          "dropped_from_history": data["dropped"], "limit": limit, "offset": offset})


async def task(request: web.Request) -> web.Response:
    task_id = request.match_info["task_id"]
    data = await _run(request, lambda c: c.tasks([("task_id", "=", task_id)], 1, 0, True))
    if not data["tasks"]:
        return error(404, "no such task in the history (it may have been evicted by the history cap)")
    t = data["tasks"][0]
    t["events"] = [{"state": s, "time": ts} for s, ts in t.get("events", [])]
    if t.get("end_time") and t.get("start_time"):
        t["run_s"] = round(t["end_time"] - t["start_time"], 6)
    if t.get("start_time") and t.get("submit_time"):
        t["wait_s"] = round(t["start_time"] - t["submit_time"], 6)
    return json_response(t)


async def tasks_summary(request: web.Request) -> web.Response:
    return json_response(await _run(request, lambda c: state_api.summarize_tasks(client=c)))


async def cancel_task(request: web.Request) -> web.Response:
    task_id = request.match_info["task_id"]
    body = await _body(request)
    force = bool(body.get("force", False))

    def do(c: Any) -> tuple[int, dict[str, Any]]:
        found = c.tasks([("task_id", "=", task_id)], 1)["tasks"]
        if not found:
            return 404, {"error": "no such task"}
        t = found[0]
        if t.get("state") in TERMINAL:
            return 409, {"error": f"the task already ended ({t.get('state')})", "cancelled": False}
        owner = next((w for w in c.workers() if w["worker_id"] == t.get("owner")), None)
        if owner is None or not owner["address"]:
            return 409, {"error": "the task's owner is gone", "cancelled": False}
        reply = core_worker_pb2_grpc.CoreWorkerStub(c.channel(owner["address"])).CancelTask(
            core_worker_pb2.CancelTaskRequest(task_id=bytes.fromhex(task_id), force=force), timeout=10)
        return 200, {"cancelled": reply.found, "task_id": task_id}

    if not re.fullmatch(r"[0-9a-f]{2,128}", task_id):
        return error(400, "task_id must be hex")
    status, data = await _run(request, do)
    return json_response(data, status)


# -- actors ------------------------------------------------------------------------------------
async def actors(request: web.Request) -> web.Response:
    rows = _apply(await _run(request, lambda c: c.actors()), _filters(request, ACTOR_FILTER_KEYS, "actors"))
    rows.sort(key=lambda a: (a["state"] == "DEAD", -(a.get("start_time") or 0)))
    return _page(request, rows, "actors")


async def actor(request: web.Request) -> web.Response:
    actor_id = request.match_info["actor_id"]
    for a in await _run(request, lambda c: c.actors()):
        if a["actor_id"] == actor_id:
            return json_response(a)
    return error(404, "no such actor")


async def kill_actor(request: web.Request) -> web.Response:
    actor_id = request.match_info["actor_id"]
    body = await _body(request)
    no_restart = bool(body.get("no_restart", True))

    def do(c: Any) -> tuple[int, dict[str, Any]]:
        known = next((a for a in c.actors() if a["actor_id"] == actor_id), None)
        if known is None:
            return 404, {"error": "no such actor"}
        if known["state"] == "DEAD":
            return 409, {"error": "the actor is already dead", "killed": False}
        c.gcs.KillActor(gcs_pb2.KillActorRequest(actor_id=actor_id, no_restart=no_restart,
                                                 reason="killed from the dashboard"), timeout=10)
        return 200, {"killed": True, "actor_id": actor_id, "no_restart": no_restart}

    status, data = await _run(request, do)
    return json_response(data, status)


# -- objects, placement groups, jobs --------------------------------------------------------------
async def objects(request: web.Request) -> web.Response:
    rows = _apply(await _run(request, lambda c: c.objects()), _filters(request, OBJECT_FILTER_KEYS, "objects"))
    return _page(request, rows, "objects")


async def objects_summary(request: web.Request) -> web.Response:
    return json_response(await _run(request, lambda c: state_api.summarize_objects(client=c)))


async def placement_groups(request: web.Request) -> web.Response:
    return json_response({"placement_groups": [], "total": 0,
                  "note": "microray does not support placement groups, so this list is always empty; "
                          "use SPREAD, node affinity or custom resources to keep work together or apart"})


async def jobs_v0(request: web.Request) -> web.Response:
    drivers = await _run(request, lambda c: c.jobs())
    drivers.sort(key=lambda j: -(j.get("start_time") or 0))
    subs = [j.public() for j in request.app[K_JOBS].jobs.values()]
    subs.sort(key=lambda j: -j["start_time"])
    return json_response({"drivers": drivers, "submissions": subs})


# -- logs ----------------------------------------------------------------------------------------
def _logs_dir(request: web.Request) -> str:
    return os.path.join(request.app[K_CONTEXT].session_dir, "logs")


async def _check_node(request: web.Request) -> web.Response | None:
    wanted = request.query.get("node_id")
    if not wanted:
        return None
    head = [n["node_id"] for n in await _run(request, lambda c: c.nodes()) if n["is_head_node"]]
    if wanted not in head:
        return error(404, "only the head node's logs are served here so far")
    return None


async def logs_list(request: web.Request) -> web.Response:
    bad = await _check_node(request)
    if bad is not None:
        return bad
    return json_response({"files": logs_mod.list_logs(_logs_dir(request))})


async def log_file(request: web.Request) -> web.Response:
    bad = await _check_node(request)
    if bad is not None:
        return bad
    name = request.match_info["name"]
    lines = _int(request, "lines", 200, 1, logs_mod.MAX_TAIL_LINES)
    try:
        path = logs_mod.resolve(_logs_dir(request), name)
    except logs_mod.LogAccessError as exc:
        return error(404 if "no log file" in str(exc) else 400, str(exc))
    text, cut = await asyncio.get_running_loop().run_in_executor(None, logs_mod.tail, path, lines)
    return json_response({"name": name, "lines": text, "truncated": cut})


# -- plugins & config ------------------------------------------------------------------------------
async def plugins(request: web.Request) -> web.Response:
    def read(c: Any) -> dict[str, Any]:
        reply = c.gcs.GetClusterConfig(common_pb2.Empty(), timeout=10)
        cfg = json.loads(reply.config_json)
        pm = get_plugin_manager(cfg.get("plugins") or [])
        shown = redact_config(cfg, pm)  # the GCS masks secrets already; this page never shows one either
        families: dict[str, dict[str, Any]] = {}
        for row in pm.describe():
            fam = families.setdefault(row["family"], {"family": row["family"], "selected": cfg.get(row["family"]),
                                                      "options": shown.get(f"{row['family']}_options", {}),
                                                      "backends": []})
            row["selected"] = cfg.get(row["family"]) == row["name"]
            fam["backends"].append(row)
        failed = [{"name": f.name, "source": f.source, "error": str(f.error)} for f in pm.failed]
        return {"cluster_id": reply.cluster_id, "families": list(families.values()), "failed": failed,
                "config": shown}

    return json_response(await _run(request, read))


# -- metrics -----------------------------------------------------------------------------------------
async def metrics(request: web.Request) -> web.Response:
    data = await _run(request, gather)
    samples = (await _run(request, lambda c: c.timeseries(time.time() - 60)))["samples"]
    data["tasks_per_s"] = samples[-1]["tasks_per_s"] if samples else 0.0
    jobs = request.app[K_JOBS]
    counts: dict[str, int] = {}
    for j in jobs.jobs.values():
        counts[j.status] = counts.get(j.status, 0) + 1
    data["job_counts"] = counts
    body = request.app[K_METRICS].render(data)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


# -- job API (Ray's /api/jobs/) ------------------------------------------------------------------------
async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise bad_request("the body must be JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _jobs_call(request: web.Request, fn: Any) -> web.Response:
    try:
        return json_response(fn(request.app[K_JOBS]))
    except JobError as exc:
        return error(exc.status, str(exc))


async def job_submit(request: web.Request) -> web.Response:
    body = await _body(request)
    setup = None
    runtime_env = body.get("runtime_env")
    if isinstance(runtime_env, dict) and renv.package_uris(runtime_env):
        # the driver runs in the job's unpacked working_dir, on this (the head) node
        session_dir = request.app[K_CONTEXT].session_dir
        try:
            setup = await request.app[K_SOURCE].run(
                lambda c: _unpack_all(c, session_dir, runtime_env))
        except renv.RuntimeEnvError as exc:
            return error(400, str(exc))

    def submit(jobs: Any) -> dict[str, Any]:
        job = jobs.submit(body, setup)
        return {"job_id": job.submission_id, "submission_id": job.submission_id}  # Ray's JobSubmitResponse

    return _jobs_call(request, submit)


async def job_list(request: web.Request) -> web.Response:
    return _jobs_call(request, lambda jobs: [j.ray() for j in sorted(jobs.jobs.values(), key=lambda j: -j.start_time)])


async def job_get(request: web.Request) -> web.Response:
    return _jobs_call(request, lambda jobs: jobs.get(request.match_info["job_id"]).ray())


async def job_logs(request: web.Request) -> web.Response:
    """With ``?offset=N``: the bytes from N on, the next offset and the status (incremental reads);
    without: ``{"logs": ...}``, all of it, as Ray's job API answers."""
    if "offset" not in request.query:
        return _jobs_call(request, lambda jobs: {"logs": jobs.logs(request.match_info["job_id"], 0)["logs"]})
    offset = _int(request, "offset", 0, 0, 2**62)
    return _jobs_call(request, lambda jobs: jobs.logs(request.match_info["job_id"], offset))


async def job_stop(request: web.Request) -> web.Response:
    return _jobs_call(request, lambda jobs: {"stopped": jobs.stop(request.match_info["job_id"])})


async def job_delete(request: web.Request) -> web.Response:
    return _jobs_call(request, lambda jobs: {"deleted": jobs.delete(request.match_info["job_id"])})


def _kv_get(client: Any) -> Any:
    def get(key: bytes) -> bytes | None:
        reply = client.gcs.KvGet(gcs_pb2.KvGetRequest(ns=renv.KV_NS, key=key), timeout=60)
        return reply.value if reply.found else None
    return get


def _unpack_all(client: Any, session_dir: str, runtime_env: dict[str, Any]) -> Any:
    get = _kv_get(client)
    for uri in renv.package_uris(runtime_env):
        renv.ensure_unpacked(session_dir, uri, lambda uri=uri: renv.download(uri, get))
    return renv.worker_setup(session_dir, runtime_env)


# -- runtime_env packages (what `microray job submit --working-dir` uploads) ------------------------
def _package_uri(request: web.Request) -> str:
    sha = request.match_info["sha"]
    if not re.fullmatch(r"[0-9a-f]{40}", sha):
        raise bad_request(f"a package name is the 40 hex digits of its zip's sha1, got {sha!r}")
    return renv.URI_PREFIX + sha + renv.URI_SUFFIX


async def package_get(request: web.Request) -> web.Response:
    uri = _package_uri(request)
    key, _ = renv.chunk_keys(uri)
    found = await request.app[K_SOURCE].run(lambda c: _kv_get(c)(key) is not None)
    return json_response({"uri": uri, "exists": found})


async def package_put(request: web.Request) -> web.Response:
    uri = _package_uri(request)
    cfg = await request.app[K_SOURCE].run(
        lambda c: json.loads(c.gcs.GetClusterConfig(common_pb2.Empty(), timeout=10).config_json))
    limit = int(cfg.get("runtime_env_max_bytes") or 500 * 1024 * 1024)
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 20):
        data += chunk
        if len(data) > limit:
            return error(413, f"the package is over the cluster's limit of {limit} bytes "
                              "(config key 'runtime_env_max_bytes'); leave files out with excludes")
    pkg = renv.Package(uri, bytes(data), 0)
    if hashlib.sha1(pkg.data).hexdigest() != renv.package_hash(uri):
        return error(400, "the uploaded bytes do not match the package's sha1")

    def store(c: Any) -> bool:
        def put(key: bytes, value: bytes) -> None:
            c.gcs.KvPut(gcs_pb2.KvPutRequest(ns=renv.KV_NS, key=key, value=value, overwrite=True), timeout=60)
        return renv.upload(pkg, _kv_get(c), put)

    stored = await request.app[K_SOURCE].run(store)
    return json_response({"uri": uri, "stored": stored})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v0/cluster", cluster)
    r.add_get("/api/v0/timeseries", timeseries)
    r.add_get("/api/v0/nodes", nodes)
    r.add_get("/api/v0/nodes/{node_id}", node)
    r.add_get("/api/v0/workers", workers)
    r.add_get("/api/v0/tasks", tasks)
    r.add_get("/api/v0/tasks/summary", tasks_summary)
    r.add_get("/api/v0/tasks/{task_id}", task)
    r.add_post("/api/v0/tasks/{task_id}/cancel", cancel_task)
    r.add_get("/api/v0/actors", actors)
    r.add_get("/api/v0/actors/{actor_id}", actor)
    r.add_post("/api/v0/actors/{actor_id}/kill", kill_actor)
    r.add_get("/api/v0/objects", objects)
    r.add_get("/api/v0/objects/summary", objects_summary)
    r.add_get("/api/v0/placement_groups", placement_groups)
    r.add_get("/api/v0/jobs", jobs_v0)
    r.add_get("/api/v0/logs", logs_list)
    r.add_get("/api/v0/logs/{name}", log_file)
    r.add_get("/api/v0/plugins", plugins)
    r.add_get("/metrics", metrics)
    for path in ("/api/jobs/", "/api/jobs"):
        r.add_post(path, job_submit)
        r.add_get(path, job_list)
    r.add_get("/api/jobs/{job_id}", job_get)
    r.add_get("/api/jobs/{job_id}/logs", job_logs)
    r.add_post("/api/jobs/{job_id}/stop", job_stop)
    r.add_delete("/api/jobs/{job_id}", job_delete)
    r.add_get("/api/jobs/{job_id}/logs/tail", ray_jobs.tail_logs)
    r.add_get("/api/version", ray_jobs.version)
    r.add_get("/api/packages/{protocol}/{name}", ray_jobs.ray_package)
    r.add_put("/api/packages/{protocol}/{name}", ray_jobs.ray_package)
    r.add_get("/api/packages/{sha}", package_get)
    r.add_put("/api/packages/{sha}", package_put)
