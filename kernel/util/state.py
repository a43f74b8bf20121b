"""The state API (Ray's ``ray.util.state``): list, get and summarize cluster state.

Works from a connected driver (no arguments needed) or from any process given
the GCS address (``address="HOST:PORT"`` or ``"auto"``). Nodes, actors, jobs and
tasks come from the GCS; workers from each node's raylet; objects from the
processes that own them (asked through their raylets).

Filters are ``(key, op, value)`` tuples with ``op`` ``"="`` or ``"!="``, as in Ray.
"""

from __future__ import annotations

import contextlib
import json
import pickle
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from microray.protocol import common_pb2, core_worker_pb2_grpc, gcs_pb2, gcs_pb2_grpc, raylet_pb2_grpc
from microray import rpc
from microray.cluster_info import timeline_events  # noqa: F401 -- the state API's name for it, as before

Filter = tuple[str, str, Any]
DEFAULT_LIMIT = 100
TIMEOUT = 10


class NoClusterError(ConnectionError):
    """No address was given and no cluster runs on this machine."""


def _resolve_address(address: str | None) -> str:
    if address and address != "auto":
        return address.removeprefix("microray://")
    from microray.core import context

    if address is None and context.worker is not None:
        return context.worker.gcs_address
    from microray import config as config_mod
    from microray import node

    handle = node.current_cluster(config_mod.resolve({}).session_root)
    if handle is None:
        raise NoClusterError("no running microray cluster found on this machine; start one with "
                             "'microray start --head', or pass address='HOST:PORT' (the GCS address)")
    return handle.gcs_address


def _credentials(address: str, token: str | None, tls: dict[str, Any] | None) -> rpc.Credentials:
    """What this client shows the cluster at ``address``: the connected driver's own
    credentials when it is that cluster's, else ``token`` / ``MICRORAY_TOKEN`` / the
    token of the cluster started on this machine, with ``tls`` or this machine's
    ``tls`` config."""
    from microray.core import context

    worker = context.worker
    if token is None and worker is not None and getattr(worker, "gcs_address", None) == address:
        return worker.credentials
    from microray import config as config_mod
    from microray import node

    cfg = config_mod.resolve({})
    return rpc.Credentials(node.cluster_token(address, cfg.session_root, token), cfg.tls if tls is None else tls)


class StateClient:
    """A small synchronous client of the GCS, raylets and owners. Its calls carry the
    cluster token (``token``, else found as ``_credentials`` says) and use TLS when
    ``tls`` (else this machine's ``tls`` config) says so."""

    def __init__(self, address: str | None = None, *, token: str | None = None,
                 tls: dict[str, Any] | None = None) -> None:
        self.address = _resolve_address(address)
        self.credentials = _credentials(self.address, token, tls)
        self._channels: dict[str, Any] = {}
        self.gcs = gcs_pb2_grpc.GcsStub(self.channel(self.address))

    def channel(self, address: str) -> Any:
        """The (reused) channel to a process of the cluster at ``address``."""
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = rpc.blocking_channel(address, self.credentials)
        return ch

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    def __enter__(self) -> "StateClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- raw reads ---------------------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        out = []
        for n in self.gcs.GetAllNodes(common_pb2.Empty(), timeout=TIMEOUT).nodes:
            out.append({
                "node_id": n.node_id,
                "state": n.state,
                "node_ip": n.ip,
                "raylet_port": n.raylet_port,
                "is_head_node": n.is_head,
                "resources_total": dict(n.total.amounts),
                "resources_available": dict(n.available.amounts),
                "object_store_used": n.object_store_used,
                "object_store_capacity": n.object_store_capacity,
                "num_workers": n.num_workers,
                "start_time": n.start_time,
                "last_heartbeat": n.last_heartbeat,
                "pid": n.pid,
                "labels": dict(n.labels),
                # lease requests the node holds with no worker yet: waiting for resources,
                # or infeasible (no alive node could ever fit them)
                "pending_demands": [{"resources": dict(d.shape.amounts), "count": d.count,
                                     "infeasible": d.infeasible} for d in n.demands],
                "host": _host(n.host) if n.HasField("host") else None,
            })
        return out

    def actors(self) -> list[dict[str, Any]]:
        reply = self.gcs.ListActors(gcs_pb2.ListActorsRequest(all_namespaces=True), timeout=TIMEOUT)
        out = []
        for raw in reply.records:
            r = pickle.loads(raw)
            out.append({
                "actor_id": r["actor_id"],
                "class_name": r.get("class_name"),
                "state": r.get("state"),
                "name": r.get("name") or "",
                "namespace": r.get("namespace"),
                "job_id": r.get("job_id"),
                "pid": r.get("pid"),
                "node_id": r.get("node_id"),
                "num_restarts": r.get("num_restarts", 0),
                "max_restarts": r.get("max_restarts", 0),
                "lifetime": r.get("lifetime"),
                "death_cause": r.get("death_cause"),
                "required_resources": r.get("resources", {}),
                "start_time": r.get("start_time"),
                "end_time": r.get("end_time"),
            })
        return out

    def jobs(self) -> list[dict[str, Any]]:
        reply = self.gcs.GetAllJobs(common_pb2.Empty(), timeout=TIMEOUT)
        return [
            {
                "job_id": j.job_id, "status": j.state, "driver_ip": j.driver_ip, "driver_pid": j.driver_pid,
                "start_time": j.start_time, "end_time": j.end_time or None, "entrypoint": j.entrypoint,
                "namespace": j.namespace, "submission_id": j.submission_id or None, "message": j.message,
            }
            for j in reply.jobs
        ]

    def tasks(self, filters: list[Filter], limit: int, offset: int = 0, detail: bool = False) -> dict[str, Any]:
        reply = self.gcs.GetTaskEvents(
            gcs_pb2.GetTaskEventsRequest(filters=pickle.dumps(filters), limit=limit, offset=offset, detail=detail),
            timeout=TIMEOUT,
        )
        return {
            "tasks": pickle.loads(reply.tasks),
            "total": reply.total,
            "counts": pickle.loads(reply.counts),
            "dropped": reply.dropped,
        }

    def timeseries(self, since: float = 0.0) -> dict[str, Any]:
        """The GCS's cluster samples newer than unix time ``since`` (oldest first), with
        the sampling period and how many samples the GCS keeps."""
        reply = self.gcs.GetClusterHistory(gcs_pb2.GetClusterHistoryRequest(since=since), timeout=TIMEOUT)
        return {"period_s": reply.period_s, "capacity": reply.capacity, "samples": pickle.loads(reply.samples)}

    def cluster_events(self) -> list[dict[str, Any]]:
        """What happened to the cluster, as the GCS kept it (bounded), newest first."""
        reply = self.gcs.GetClusterEvents(common_pb2.Empty(), timeout=TIMEOUT)
        return list(reversed(pickle.loads(reply.events))) if reply.events else []

    def runtime_envs(self) -> list[dict[str, Any]]:
        """The runtime_env packages (working_dir, py_modules) stored in the cluster."""
        from microray import runtime_env as renv

        keys = self.gcs.KvKeys(gcs_pb2.KvKeysRequest(ns=renv.KV_NS, prefix=b"pkg:"), timeout=TIMEOUT).keys
        out = []
        for key in keys:
            parts = key.decode().split(":")
            if len(parts) != 2:  # pkg:<sha>:<i> is a chunk; pkg:<sha> the package
                continue
            meta = self.gcs.KvGet(gcs_pb2.KvGetRequest(ns=renv.KV_NS, key=key), timeout=TIMEOUT)
            info = json.loads(meta.value) if meta.found else {}
            out.append({"uri": f"{renv.URI_PREFIX}{parts[1]}{renv.URI_SUFFIX}", "size": info.get("size"),
                        "chunks": info.get("chunks")})
        return sorted(out, key=lambda r: r["uri"])

    def workers(self) -> list[dict[str, Any]]:
        out = []
        for node in self.nodes():
            if node["state"] != "ALIVE":
                continue
            stub = raylet_pb2_grpc.RayletStub(self.channel(f"{node['node_ip']}:{node['raylet_port']}"))
            try:
                stats = stub.GetNodeStats(common_pb2.Empty(), timeout=TIMEOUT)
            except grpc.RpcError:
                continue
            for w in stats.workers:
                out.append({
                    "worker_id": w.worker_id, "pid": w.pid, "state": w.state, "node_id": node["node_id"],
                    "ip": node["node_ip"], "address": w.address,
                    "worker_type": "DRIVER" if w.is_driver else "WORKER", "is_alive": True,
                })
        return out

    def objects(self) -> list[dict[str, Any]]:
        out = []
        for w in self.workers():
            if not w["address"]:
                continue
            stub = core_worker_pb2_grpc.CoreWorkerStub(self.channel(w["address"]))
            try:
                reply = stub.GetObjectsInfo(common_pb2.Empty(), timeout=TIMEOUT)
            except grpc.RpcError:
                continue
            out.extend(pickle.loads(reply.objects))
        return out


# -- filters ---------------------------------------------------------------------------------
# The keys each kind can be filtered on (the fields of its rows); a key outside these is an
# error, not an empty answer.
FILTER_KEYS: dict[str, tuple[str, ...]] = {
    "nodes": ("node_id", "state", "node_ip", "raylet_port", "is_head_node", "num_workers", "pid"),
    "actors": ("actor_id", "class_name", "state", "name", "namespace", "job_id", "pid", "node_id",
               "num_restarts", "max_restarts", "lifetime"),
    "jobs": ("job_id", "status", "driver_ip", "driver_pid", "entrypoint", "namespace"),
    "tasks": ("task_id", "name", "func_or_class_name", "state", "type", "job_id", "actor_id", "node_id",
              "worker_id", "worker_pid", "attempt", "parent_task_id", "owner", "error_type"),
    "workers": ("worker_id", "pid", "state", "node_id", "ip", "worker_type", "is_alive"),
    "objects": ("object_id", "object_size", "location", "node_id", "owner_worker_id", "owner_pid", "job_id",
                "reference_type", "task_status"),
    "placement_groups": ("placement_group_id", "name", "state"),
    "cluster_events": ("severity", "type", "node_id", "job_id", "actor_id"),
    "runtime_envs": ("uri",),
}
# keys whose values are upper-case names (states, types): matched whatever the case given
_ENUM_KEYS = frozenset({"state", "type", "status", "worker_type", "location", "lifetime", "severity"})
_BOOL_KEYS = frozenset({"is_head_node", "is_alive"})


class InvalidFilterError(ValueError):
    """A filter names a key the kind does not have, or an operator other than = and !=."""


def check_filters(kind: str, filters: Iterable[Filter] | None) -> list[Filter]:
    """Validate ``filters`` for ``kind`` (``"tasks"``, ``"placement_groups"``...) and normalize
    their values: enum values (state, type, status...) upper-cased, booleans as ``True``/``False``.

    Raises ``InvalidFilterError`` naming the bad key and every valid one."""
    valid = FILTER_KEYS[kind]
    out: list[Filter] = []
    for key, op, value in filters or []:
        if op not in ("=", "!="):
            raise InvalidFilterError(f"filter operator {op!r} is not supported; use '=' or '!='")
        if key not in valid:
            raise InvalidFilterError(f"{kind.replace('_', ' ')} cannot be filtered on {key!r}; "
                                     f"valid keys: {', '.join(sorted(valid))}")
        if key in _ENUM_KEYS and isinstance(value, str):
            value = value.upper()
        elif key in _BOOL_KEYS and str(value).lower() in ("true", "false", "1", "0", "yes", "no"):
            value = str(str(value).lower() in ("true", "1", "yes"))
        out.append((key, op, value))
    return out


# -- Ray-named functions -------------------------------------------------------------------
def _host(h: Any) -> dict[str, Any]:
    """A node's machine as its raylet last measured it (``HostStats``)."""
    return {
        "cpu_percent": round(h.cpu_percent, 1), "cpu_count": h.cpu_count,
        "mem_total": h.mem_total, "mem_used": h.mem_used,
        "disk_total": h.disk_total, "disk_used": h.disk_used, "disk_path": h.disk_path,
        "load_avg_1m": round(h.load_avg_1m, 2), "sampled_at": h.sampled_at,
    }


class StateRow(dict):
    """One row of a state listing: a dict whose columns also read as attributes
    (``row.state``), as Ray's ``ActorState``/``TaskState`` objects are read."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"state row has no column {name!r} (columns: {', '.join(self)})") from None


def _rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [StateRow(r) for r in rows]


def _apply(rows: Iterable[dict[str, Any]], filters: list[Filter] | None, limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in rows:
        ok = True
        for key, op, value in filters or []:
            same = str(row.get(key)) == str(value)
            if (op == "=") != same:
                ok = False
                break
        if ok:
            out.append(StateRow(row))
            if len(out) >= limit:
                break
    return out


def _client(address: str | None, client: StateClient | None = None) -> Any:
    """A new client for ``address`` (closed after use), or ``client`` (left open)."""
    return contextlib.nullcontext(client) if client is not None else StateClient(address)


def _listed(kind: str, address: str | None, filters: list[Filter] | None, limit: int,
            fetch: Callable[[StateClient], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rows ``fetch`` reads of one kind, filtered and cut to ``limit``; the filters are
    checked before any call (a bad key is an error, not an empty list)."""
    checked = check_filters(kind, filters)
    with _client(address) as c:
        return _apply(fetch(c), checked, limit)


def list_nodes(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_: Any) -> list[dict]:
    return _listed("nodes", address, filters, limit, StateClient.nodes)


def list_actors(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_: Any) -> list[dict]:
    return _listed("actors", address, filters, limit, StateClient.actors)


def list_jobs(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_: Any) -> list[dict]:
    return _listed("jobs", address, filters, limit, StateClient.jobs)


def list_tasks(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_: Any) -> list[dict]:
    checked = check_filters("tasks", filters)
    with _client(address) as c:
        return _rows(c.tasks(checked, limit, detail=detail)["tasks"])


def list_workers(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_: Any) -> list[dict]:
    return _listed("workers", address, filters, limit, StateClient.workers)


def list_objects(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_: Any) -> list[dict]:
    return _listed("objects", address, filters, limit, StateClient.objects)


def list_placement_groups(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_: Any) -> list[dict]:
    """Always empty: microray does not support placement groups (see
    ``microray.util.placement_group``); the filters are still checked."""
    check_filters("placement_groups", filters)
    return []


def list_cluster_events(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_: Any) -> list[dict]:
    """Nodes added and removed, jobs started and finished, actors dead: newest first (the
    GCS keeps the latest 1,000 since it started)."""
    checked = check_filters("cluster_events", filters)
    with _client(address) as c:
        return _apply(c.cluster_events(), checked, limit)


def list_runtime_envs(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_: Any) -> list[dict]:
    """The runtime_env packages stored in the cluster (``uri``, ``size`` in bytes)."""
    checked = check_filters("runtime_envs", filters)
    with _client(address) as c:
        return _apply(c.runtime_envs(), checked, limit)


def _get(rows: list[dict], key: str, value: str) -> dict | None:
    for row in rows:
        if row.get(key) == value:
            return StateRow(row)
    return None


def get_node(id: str, address: str | None = None) -> dict | None:
    with _client(address) as c:
        return _get(c.nodes(), "node_id", id)


def get_actor(id: str, address: str | None = None) -> dict | None:
    with _client(address) as c:
        return _get(c.actors(), "actor_id", id)


def get_job(id: str, address: str | None = None) -> dict | None:
    with _client(address) as c:
        return _get(c.jobs(), "job_id", id)


def get_worker(id: str, address: str | None = None) -> dict | None:
    with _client(address) as c:
        return _get(c.workers(), "worker_id", id)


def get_task(id: str, address: str | None = None) -> dict | None:
    with _client(address) as c:
        tasks = c.tasks([("task_id", "=", id)], 1, detail=True)["tasks"]
        return StateRow(tasks[0]) if tasks else None


def get_objects(id: str, address: str | None = None) -> list[dict]:
    with _client(address) as c:
        return _rows(o for o in c.objects() if o["object_id"] == id)


def resource_demands(nodes: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The alive nodes' pending lease requests summed by resource shape:
    ``{"pending": [...], "infeasible": [...]}``, each ``{"resources": ..., "count": n}``."""
    out: dict[str, dict[str, dict[str, Any]]] = {"pending": {}, "infeasible": {}}
    for n in nodes:
        if n.get("state") != "ALIVE":
            continue
        for d in n.get("pending_demands", []):
            rows = out["infeasible" if d["infeasible"] else "pending"]
            key = json.dumps(d["resources"], sort_keys=True)
            row = rows.setdefault(key, {"resources": dict(sorted(d["resources"].items())), "count": 0})
            row["count"] += d["count"]
    return {kind: [rows[k] for k in sorted(rows)] for kind, rows in out.items()}


def summarize_tasks(address: str | None = None, *, client: StateClient | None = None, **_: Any) -> dict[str, Any]:
    """Per function name: counts by state; plus totals over every task ever reported
    (read through ``client`` when given)."""
    with _client(address, client) as c:
        data = c.tasks([], 1_000_000)
        actors = len(c.actors())  # the GCS creates actors: their constructors are not task rows
    summary: dict[str, dict[str, Any]] = {}
    for t in data["tasks"]:
        name = t.get("func_or_class_name") or t.get("name") or "?"
        entry = summary.setdefault(name, {"func_or_class_name": name, "type": t.get("type"), "state_counts": Counter()})
        entry["state_counts"][t.get("state")] += 1
    kinds: Counter = Counter()
    for entry in summary.values():
        entry["state_counts"] = dict(entry["state_counts"])
        kinds[entry["type"]] += sum(entry["state_counts"].values())
    cluster = {"summary": summary, "total_tasks": kinds["NORMAL_TASK"], "total_actor_tasks": kinds["ACTOR_TASK"],
               "total_actor_scheduled": kinds["ACTOR_CREATION_TASK"] or actors, "summary_by": "func_name"}
    # Ray's shape under "cluster"; the top-level keys are microray's (the CLI's)
    return {"cluster": cluster, "summary": summary, "total_counts": data["counts"],
            "dropped_from_history": data["dropped"]}


def summarize_actors(address: str | None = None, **_: Any) -> dict[str, Any]:
    with _client(address) as c:
        actors = c.actors()
    summary: dict[str, dict[str, Any]] = {}
    for a in actors:
        entry = summary.setdefault(a["class_name"], {"class_name": a["class_name"], "state_counts": Counter()})
        entry["state_counts"][a["state"]] += 1
    for entry in summary.values():
        entry["state_counts"] = dict(entry["state_counts"])
    cluster = {"summary": summary, "total_actors": len(actors), "summary_by": "class"}
    return {"cluster": cluster, "summary": summary, "total_actors": len(actors)}  # Ray's shape under "cluster"


def summarize_objects(address: str | None = None, *, client: StateClient | None = None, **_: Any) -> dict[str, Any]:
    with _client(address, client) as c:
        objects = c.objects()
        nodes = c.nodes()
    by_type: Counter = Counter()
    size_by_location: Counter = Counter()
    for o in objects:
        by_type[o["reference_type"]] += 1
        size_by_location[o["location"]] += max(o.get("object_size", 0), 0)
    return {
        "total_objects": len(objects),
        "total_size_bytes": sum(max(o.get("object_size", 0), 0) for o in objects),
        "by_reference_type": dict(by_type),
        "size_by_location": dict(size_by_location),
        "object_store": {
            n["node_id"]: {"used": n["object_store_used"], "capacity": n["object_store_capacity"]}
            for n in nodes if n["state"] == "ALIVE"
        },
    }
