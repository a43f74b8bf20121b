"""State commands of the ``microray`` CLI (Ray's ``ray list/summary/get/status/logs/
timeline/memory``), added to the ``microray`` group by ``cli`` (``COMMANDS``);
``microray job ...`` lives in ``cli_job``.

They read through ``microray.util.state`` (the GCS, raylets and owners) of the cluster
at ``--address`` (GCS ``HOST:PORT``; default: the cluster that ``microray start`` runs
on this machine). ``logs`` reads the session folder of that cluster.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click


KINDS = ("nodes", "actors", "tasks", "objects", "jobs", "workers", "placement-groups", "runtime-envs",
         "cluster-events")

# columns of each kind's table: (header, key or callable)
_COLUMNS: dict[str, list[tuple[str, Any]]] = {
    "nodes": [("NODE_ID", "node_id"), ("STATE", "state"), ("IP", "node_ip"), ("HEAD", "is_head_node"),
              ("CPU", lambda r: _used_total(r, "CPU")), ("OBJECT_STORE", lambda r: f"{_size(r['object_store_used'])} / "
                                                                                  f"{_size(r['object_store_capacity'])}"),
              ("WORKERS", "num_workers")],
    "actors": [("ACTOR_ID", "actor_id"), ("CLASS_NAME", "class_name"), ("NAME", "name"), ("STATE", "state"),
               ("PID", "pid"), ("NODE_ID", lambda r: (r.get("node_id") or "")[:8]), ("RESTARTS", "num_restarts")],
    "tasks": [("TASK_ID", "task_id"), ("NAME", "name"), ("STATE", "state"), ("TYPE", "type"), ("JOB_ID", "job_id"),
              ("NODE_ID", lambda r: (r.get("node_id") or "")[:8]), ("WORKER_PID", "worker_pid"), ("ATTEMPT", "attempt")],
    "objects": [("OBJECT_ID", "object_id"), ("SIZE", lambda r: _size(r.get("object_size"))),
                ("REFERENCE_TYPE", "reference_type"), ("LOCATION", "location"), ("OWNER_PID", "owner_pid"),
                ("NODE_ID", lambda r: (r.get("node_id") or "")[:8])],
    "jobs": [("JOB_ID", "job_id"), ("STATUS", "status"), ("DRIVER_PID", "driver_pid"), ("ENTRYPOINT", "entrypoint"),
             ("START_TIME", lambda r: _when(r.get("start_time"))), ("MESSAGE", lambda r: (r.get("message") or "")[:60])],
    "workers": [("WORKER_ID", "worker_id"), ("TYPE", "worker_type"), ("STATE", "state"), ("PID", "pid"),
                ("NODE_ID", lambda r: (r.get("node_id") or "")[:8])],
    "placement-groups": [("PLACEMENT_GROUP_ID", "placement_group_id"), ("NAME", "name"), ("STATE", "state")],
    "runtime-envs": [("URI", "uri"), ("SIZE", lambda r: _size(r.get("size")))],
    "cluster-events": [("TIME", lambda r: _when(r.get("time"))), ("SEVERITY", "severity"), ("TYPE", "type"),
                       ("MESSAGE", "message")],
}


def _size(n: Any) -> str:
    if n is None or n < 0:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def _when(t: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


def _used_total(row: dict[str, Any], res: str) -> str:
    total = row["resources_total"].get(res, 0.0)
    used = total - row["resources_available"].get(res, 0.0)
    return f"{used:g} / {total:g}"


def _cell(row: dict[str, Any], col: Any) -> str:
    value = col(row) if callable(col) else row.get(col)
    return "" if value is None else str(value)


def _table(title: str, kind: str, rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for header, _ in _COLUMNS[kind]:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row, col) for _, col in _COLUMNS[kind]))
    Console(soft_wrap=False, width=max(120, _term_width())).print(table)


def _term_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 160


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))


def _echo_yaml(data: Any) -> None:
    import yaml

    click.echo(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=True), nl=False)


def _echo_data(data: Any, fmt: str) -> None:
    """Print ``data`` as ``fmt`` (``json`` or ``yaml``)."""
    (_echo_yaml if fmt == "yaml" else _echo_json)(data)


FORMATS = ("table", "json", "yaml")


def _parse_filters(pairs: tuple[str, ...]) -> list[tuple[str, str, str]]:
    out = []
    for pair in pairs:
        op = "!=" if "!=" in pair else "="
        if op not in pair:
            raise click.BadParameter(f"--filter expects key=value or key!=value, got {pair!r}")
        key, value = pair.split(op, 1)
        if not key.strip():
            raise click.BadParameter(f"--filter expects key=value or key!=value, got {pair!r}")
        out.append((key.strip(), op, value.strip()))
    return out


def _state_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a state API function; turn 'no cluster' and RPC failures into clean CLI errors."""
    import grpc

    from microray.util.state import NoClusterError

    try:
        return fn(*args, **kwargs)
    except NoClusterError:
        raise click.ClickException(
            "no running microray cluster found on this machine; start one with 'microray start --head', "
            "or pass --address HOST:PORT (the GCS address 'microray start' printed)") from None
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None
    except grpc.RpcError as exc:
        raise click.ClickException(f"the cluster did not answer: {exc.code().name} {exc.details()}") from None


_ADDRESS = click.option("--address", default=None, help="GCS address HOST:PORT (default: the cluster running here).")


def _address(address: str | None) -> str:
    """A CLI has no connected driver: find the running cluster (``auto``) unless given."""
    return address or "auto"


# -- list / get / summary --------------------------------------------------------------------
@click.command("list")
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--filter", "filters", multiple=True,
              help="key=value or key!=value (state, type and status values in any case); repeatable. "
                   "An unknown key is an error that lists the valid ones.")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many rows.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format.")
@click.option("--detail", is_flag=True, help="Every field (implies --format json unless yaml is asked).")
@_ADDRESS
def list_cmd(kind: str, filters: tuple[str, ...], limit: int, fmt: str, detail: bool, address: str | None) -> None:
    """List cluster state: nodes, actors, tasks, objects, jobs, workers, placement groups, runtime
    envs (the packages stored in the cluster) or cluster events (nodes, jobs, actors; newest first)."""
    from microray.util import state

    fn = getattr(state, f"list_{kind.replace('-', '_')}")
    try:  # checked before asking the cluster: a typo is a usage error, not "0 rows"
        checked = state.check_filters(kind.replace("-", "_"), _parse_filters(filters))
    except state.InvalidFilterError as exc:
        raise click.BadParameter(str(exc), param_hint="'--filter'") from None
    rows = _state_call(fn, address=_address(address), filters=checked, limit=limit, detail=detail)
    if fmt != "table" or detail:
        _echo_data(rows, "yaml" if fmt == "yaml" else "json")
        return
    _table(f"{len(rows)} {kind}" + (f" (limit {limit})" if len(rows) >= limit else ""), kind, rows)


@click.command("get")
@click.argument("kind", type=click.Choice(["nodes", "actors", "tasks", "objects", "jobs", "workers"]))
@click.argument("id")
@click.option("--format", "fmt", type=click.Choice(["json", "yaml"]), default="json", show_default=True,
              help="Output format.")
@_ADDRESS
def get_cmd(kind: str, id: str, fmt: str, address: str | None) -> None:
    """Every field of one node, actor, task, object, job or worker (JSON)."""
    from microray.util import state

    if kind == "objects":
        found: Any = _state_call(state.get_objects, id, address=_address(address)) or None
    else:
        found = _state_call(getattr(state, f"get_{kind[:-1]}"), id, address=_address(address))
    if not found:
        raise click.ClickException(f"no {kind[:-1]} with id {id!r}")
    _echo_data(found, fmt)


@click.command("summary")
@click.argument("kind", type=click.Choice(["tasks", "actors", "objects"]))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format.")
@_ADDRESS
def summary_cmd(kind: str, fmt: str, address: str | None) -> None:
    """Tasks or actors counted by name and state; objects by reference type and location."""
    from rich.console import Console
    from rich.table import Table

    from microray.util import state

    data = _state_call(getattr(state, f"summarize_{kind}"), address=_address(address))
    if fmt != "table":
        _echo_data(data, fmt)
        return
    console = Console(width=max(120, _term_width()))
    if kind in ("tasks", "actors"):
        key = "func_or_class_name" if kind == "tasks" else "class_name"
        states = sorted({s for e in data["summary"].values() for s in e["state_counts"]})
        table = Table(title=f"{kind} summary", title_justify="left")
        table.add_column(key.upper())
        if kind == "tasks":
            table.add_column("TYPE")
        for s in states:
            table.add_column(s, justify="right")
        for name, entry in sorted(data["summary"].items()):
            cells = [name] + ([str(entry.get("type") or "")] if kind == "tasks" else [])
            table.add_row(*cells, *(str(entry["state_counts"].get(s, 0)) for s in states))
        console.print(table)
        if kind == "tasks":
            totals = ", ".join(f"{k}: {v}" for k, v in sorted(data["total_counts"].items()))
            console.print(f"Totals over every task reported: {totals or 'none'}; "
                          f"evicted from the history: {data['dropped_from_history']}")
        else:
            console.print(f"Total actors: {data['total_actors']}")
        return
    table = Table(title="objects summary", title_justify="left")
    table.add_column("REFERENCE_TYPE")
    table.add_column("COUNT", justify="right")
    for ref, n in sorted(data["by_reference_type"].items()):
        table.add_row(ref, str(n))
    console.print(table)
    console.print(f"Total objects: {data['total_objects']}, {_size(data['total_size_bytes'])}")
    for node_id, u in data["object_store"].items():
        console.print(f"Object store of node {node_id[:8]}: {_size(u['used'])} / {_size(u['capacity'])}")


# -- status --------------------------------------------------------------------------------------
@click.command("status")
@_ADDRESS
def status_cmd(address: str | None) -> None:
    """Nodes, resources used/total and pending resource demands (like ``ray status``)."""
    from microray.util.state import StateClient, resource_demands

    def read() -> tuple[list[dict], dict, list[dict]]:
        with StateClient(_address(address)) as c:
            pending = c.tasks([("state", "=", "PENDING_NODE_ASSIGNMENT")], 100_000)["tasks"]
            return c.nodes(), c.tasks([], 1)["counts"], pending + [
                a for a in c.actors() if a["state"] in ("PENDING_CREATION", "DEPENDENCIES_UNREADY")]

    nodes, counts, pending = _state_call(read)
    line = "-" * 64
    out = [f"======== Cluster status: {_when(time.time())} ========", "Node status", line]
    alive = [n for n in nodes if n["state"] == "ALIVE"]
    dead = [n for n in nodes if n["state"] != "ALIVE"]
    out.append("Alive:")
    out += [f" {n['node_id'][:12]} {n['node_ip']}{' (head)' if n['is_head_node'] else ''}" for n in alive] or [" (none)"]
    out.append("Dead:")
    out += [f" {n['node_id'][:12]} {n['node_ip']}" for n in dead] or [" (none)"]
    out += ["", "Resources", line, "Usage:"]
    total: dict[str, float] = {}
    avail: dict[str, float] = {}
    for n in alive:
        for k, v in n["resources_total"].items():
            total[k] = total.get(k, 0.0) + v
            avail[k] = avail.get(k, 0.0) + n["resources_available"].get(k, 0.0)
    for k in sorted(total):
        if not k.startswith("node:"):  # every node's own marker resource: not usage (as Ray's status)
            out.append(f" {total[k] - avail[k]:g}/{total[k]:g} {k}")
    used = sum(n["object_store_used"] for n in alive)
    cap = sum(n["object_store_capacity"] for n in alive)
    out.append(f" {_size(used)}/{_size(cap)} object_store_memory")
    out += ["", "Demands:"]
    shapes: dict[str, int] = {}
    for p in pending:
        res = p.get("required_resources") or {}
        kind = "actor" if "actor_id" in p and "task_id" not in p else "task"
        key = json.dumps({k: v for k, v in sorted(res.items())}) + f" ({kind})"
        shapes[key] = shapes.get(key, 0) + 1
    out += [f" {shape}: {n}+ pending" for shape, n in sorted(shapes.items())] or [" (no resource demands)"]
    demands = resource_demands(nodes)  # what the raylets hold without a worker, by shape
    out += ["", "Pending demand (lease requests waiting for resources):"]
    out += [f" {json.dumps(d['resources'])}: {d['count']}" for d in demands["pending"]] or [" (none)"]
    out += ["Infeasible demand (no alive node has these resources; they wait for one that does):"]
    out += [f" {json.dumps(d['resources'])}: {d['count']}" for d in demands["infeasible"]] or [" (none)"]
    out += ["", "Tasks", line]
    out.append(" " + (", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if v) or "(none yet)"))
    click.echo("\n".join(out))


# -- memory ----------------------------------------------------------------------------------------
@click.command("memory")
@click.option("--group-by", type=click.Choice(["owner", "node"]), default="owner", show_default=True,
              help="Group the objects by the process that owns them or by the node that stores them.")
@click.option("--sort-by", type=click.Choice(["size", "id"]), default="size", show_default=True,
              help="Order of the objects in each group.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format.")
@_ADDRESS
def memory_cmd(group_by: str, sort_by: str, fmt: str, address: str | None) -> None:
    """Objects by owner (or node): size, reference type, location; and object store use."""
    from rich.console import Console
    from rich.table import Table

    from microray.util.state import StateClient

    def read() -> tuple[list[dict], list[dict]]:
        with StateClient(_address(address)) as c:
            return c.objects(), c.nodes()

    objects, nodes = _state_call(read)
    if fmt != "table":
        _echo_data({"objects": objects, "nodes": nodes}, fmt)
        return
    key = (lambda o: f"owner pid {o.get('owner_pid')} (worker {str(o.get('owner_worker_id'))[:12]})") \
        if group_by == "owner" else (lambda o: f"node {str(o.get('node_id'))[:12]}")
    groups: dict[str, list[dict]] = {}
    for o in objects:
        groups.setdefault(key(o), []).append(o)
    console = Console(width=max(120, _term_width()))
    for name, rows in sorted(groups.items()):
        rows.sort(key=(lambda o: -max(o.get("object_size", 0), 0)) if sort_by == "size" else (lambda o: o["object_id"]))
        table = Table(title=f"{name}: {len(rows)} objects, {_size(sum(max(o.get('object_size', 0), 0) for o in rows))}",
                      title_justify="left")
        for col in ("OBJECT_ID", "SIZE", "REFERENCE_TYPE", "LOCATION", "NODE_ID", "LOCAL_REFS", "PENDING_TASK_REFS"):
            table.add_column(col)
        for o in rows:
            table.add_row(o["object_id"], _size(o.get("object_size")), str(o.get("reference_type")),
                          str(o.get("location")), str(o.get("node_id") or "")[:12], str(o.get("local_refs", "")),
                          str(o.get("pending_task_refs", "")))
        console.print(table)
    if not objects:
        console.print("No objects are referenced right now.")
    alive = [n for n in nodes if n["state"] == "ALIVE"]
    used = sum(n["object_store_used"] for n in alive)
    cap = sum(n["object_store_capacity"] for n in alive)
    total = sum(max(o.get("object_size", 0), 0) for o in objects)
    pct = 100 * used / cap if cap else 0.0
    console.print(f"Object store: {_size(used)} used of {_size(cap)} ({pct:.1f}%) on {len(alive)} node(s); "
                  f"{len(objects)} objects referenced, {_size(total)}")


# -- timeline ------------------------------------------------------------------------------------
@click.command("timeline")
@click.option("--output", "-o", default=None, help="File to write (default: /tmp/microray-timeline-<time>.json).")
@_ADDRESS
def timeline_cmd(output: str | None, address: str | None) -> None:
    """Write the task history as Chrome trace JSON (open in chrome://tracing or Perfetto);
    the same events as ``microray.timeline()``."""
    from microray.cluster_info import chrome_trace, write_timeline
    from microray.util.state import StateClient

    def read() -> list[dict]:
        with StateClient(_address(address)) as c:
            return chrome_trace(lambda filters, limit: c.tasks(filters, limit)["tasks"])

    events = _state_call(read)
    path = output or f"/tmp/microray-timeline-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    write_timeline(events, path)
    click.echo(f"Trace of {len(events)} tasks written to {path}")


# -- logs ------------------------------------------------------------------------------------------
def _session_dir(address: str | None) -> tuple[str, str | None]:
    """(session folder, head node id) of the running cluster; the latest session otherwise."""
    from microray import config as config_mod
    from microray import node

    cfg = config_mod.resolve({})
    handle = node.current_cluster(cfg.session_root)
    if handle is not None and (address is None or address == handle.gcs_address):
        return handle.session_dir, handle.node_id
    if address is not None:
        raise click.ClickException(f"the logs of the cluster at {address} are not on this machine's session folder")
    latest = Path(cfg.session_root) / "session_latest"
    if latest.exists():
        return str(latest.resolve()), None
    raise click.ClickException("no running microray cluster and no session folder found")


_LOG_KINDS = ("actor", "task", "worker", "job", "cluster")


@click.command("logs")
@click.argument("what", required=False)
@click.argument("file", required=False)
@click.option("--id", "id_", default=None,
              help="With 'actor', 'task', 'worker' or 'job': the id (prefix for workers; a job's submission id).")
@click.option("--node", "node_id", default=None, help="Node id (prefix); only this machine's nodes so far.")
@click.option("--worker", "worker_id", default=None, help="A worker's id (prefix): its .log, .out and .err.")
@click.option("--pid", type=int, default=None, help="A worker's or driver's PID.")
@click.option("--tail", type=int, default=100, show_default=True, help="Lines from the end (0: all).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing what is appended until interrupted (Ctrl-C).")
@_ADDRESS
def logs_cmd(what: str | None, file: str | None, id_: str | None, node_id: str | None, worker_id: str | None,
             pid: int | None, tail: int, follow: bool, address: str | None) -> None:
    """List the session's log files, or print the tail of one (or of a worker's).

    As in Ray: ``logs FILE``, ``logs cluster FILE``, ``logs actor --id ID``, ``logs task --id ID``,
    ``logs worker --id ID`` (or ``--pid``), ``logs job --id SUBMISSION_ID``."""
    session, head = _session_dir(address)
    logs = Path(session) / "logs"
    if node_id and head and not head.startswith(node_id):
        raise click.ClickException(f"node {node_id} is not this machine's node ({head[:12]}); only local logs can be read")
    names = sorted(p.name for p in logs.iterdir() if p.is_file()) if logs.is_dir() else []
    if what in _LOG_KINDS:
        if what == "cluster":
            what = None  # ``logs cluster [FILE]``: a file of the session, as ``logs [FILE]``
        else:
            if file is not None:
                raise click.UsageError(f"'logs {what}' takes --id (or --pid), not a file name")
            if not id_ and not (what == "worker" and pid is not None):
                raise click.UsageError(f"'logs {what}' needs --id ID")
            if what == "job":
                file = f"job-{id_}.log"
                if file not in names:
                    raise click.ClickException(f"no log of job {id_!r} in {logs} (jobs submitted with "
                                               "'microray job submit' have one)")
            else:
                worker_id, pid = _worker_of(what, id_, pid, address)
    elif what is not None:
        if file is not None:
            raise click.UsageError(f"unknown log kind {what!r}; expected one of {', '.join(_LOG_KINDS)} or a file name")
        file = what
    if pid is not None and worker_id is None:
        driver = f"driver-{pid}.log"
        if driver in names:
            file = driver
        else:
            from microray.util import state

            found = _state_call(state.list_workers, address=_address(address), filters=[("pid", "=", str(pid))])
            if not found:
                raise click.ClickException(f"no worker or driver with pid {pid}")
            worker_id = found[0]["worker_id"]
    if worker_id:
        picked = [n for n in names if n.startswith(f"worker-{worker_id[:12]}")]
        if not picked:
            raise click.ClickException(f"no log files of worker {worker_id}")
        seen = {}
        for name in picked:
            click.echo(f"==> {name} <==")
            seen[logs / name] = _print_tail(logs / name, tail)
        if follow:
            _follow_files(seen)
        return
    if file is None:
        if node_id:
            names = [n for n in names if not n.startswith(("raylet-", "zygote-")) or n.split("-", 1)[1].startswith(node_id[:8])]
        click.echo(f"Log files in {logs}:")
        for name in names:
            click.echo(f"  {name}  ({_size((logs / name).stat().st_size)})")
        return
    if "/" in file or file.startswith(".") or file not in names:
        raise click.ClickException(f"no log file {file!r} in {logs}")
    printed = _print_tail(logs / file, tail)
    if follow:
        _follow_files({logs / file: printed})


def _worker_of(kind: str, id_: str | None, pid: int | None, address: str | None) -> tuple[str | None, int | None]:
    """(worker id, pid) of the process that holds an actor, ran a task, or is the worker asked for."""
    from microray.util import state

    if kind == "worker":
        return id_, pid
    if kind == "actor":
        actor = _state_call(state.get_actor, id_, address=_address(address))
        if not actor:
            raise click.ClickException(f"no actor with id {id_!r}")
        if not actor.get("pid"):
            raise click.ClickException(f"actor {id_} has no worker process ({actor.get('state')})")
        return None, int(actor["pid"])
    task = _state_call(state.get_task, id_, address=_address(address))
    if not task:
        raise click.ClickException(f"no task with id {id_!r}")
    if task.get("worker_id"):
        return str(task["worker_id"]), None
    if task.get("worker_pid"):
        return None, int(task["worker_pid"])
    raise click.ClickException(f"task {id_} has not run on a worker yet ({task.get('state')})")


def _follow_files(offsets: dict[Path, int], poll_s: float = 0.25) -> None:
    """Print what is appended to each file past its offset until interrupted (``tail -f``)."""
    try:
        while True:
            for p in list(offsets):
                try:
                    size = p.stat().st_size
                except OSError:
                    continue
                if size < offsets[p]:  # truncated or replaced: from the start
                    offsets[p] = 0
                if size > offsets[p]:
                    with open(p, "rb") as f:
                        f.seek(offsets[p])
                        data = f.read(size - offsets[p])
                    offsets[p] = size
                    click.echo(data.decode("utf-8", errors="replace"), nl=False)
            time.sleep(poll_s)
    except KeyboardInterrupt:
        return


def _print_tail(path: Path, lines: int) -> int:
    """Print the last ``lines`` lines (0: all) of ``path``; the bytes read (where following starts)."""
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8", errors="replace").splitlines()
    for line in (text[-lines:] if lines > 0 else text):
        click.echo(line)
    return len(data)


COMMANDS = (list_cmd, get_cmd, summary_cmd, status_cmd, memory_cmd, timeline_cmd, logs_cmd)
