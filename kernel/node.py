"""Starting and stopping the processes of a node, and finding a running cluster.

``microray start --head`` and the embedded default of ``init()`` both call
``start_head``: a GCS process and a raylet process (which starts the zygote and
the workers). The embedded head dies with its driver; a started one records
itself in the session folder and in ``<session_root>/current_cluster`` so that
``init(address="auto")`` and ``microray stop`` find it.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from microray import config as config_mod
from microray.exceptions import RaySystemError
from microray.ids import new_hex_id
from microray import fork_safety, process, rpc
from microray import session

log = structlog.get_logger(__name__)

ADDRESS_FILE = "address.json"
CURRENT = "current_cluster"


@dataclass
class NodeHandle:
    """What ``start_head`` started: addresses, PIDs and the session folder."""

    gcs_address: str
    raylet_address: str
    node_id: str
    session_dir: str
    store_namespace: str
    pids: dict[str, int] = field(default_factory=dict)
    embedded: bool = False
    gcs_argv: list[str] = field(default_factory=list)
    dashboard_url: str = ""  # without the token; see dashboard_login_url()

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 0))
        return s.getsockname()[1]


# What a node's processes run, by module name: a process is started by naming its
# module, never by importing it from a layer below.
NODE_PROCESS_MODULES = (
    "microray.gcs.server",
    "microray.raylet.__main__",
    "microray.raylet.server",
    "microray.core.worker_main",
)


def _launch(name: str, module_main: str, argv: list[str], session_dir: str, embedded: bool, method: str,
            extra_fds: tuple[int, ...] = ()):
    """Start a node process running ``module_main`` (``pkg.mod:function``) with ``argv``.

    ``extra_fds`` are handed to the child too; ``"{fd1}"``, ``"{fd2}"``... in ``argv``
    name them (their numbers may differ in the child)."""
    r, w = os.pipe()
    argv = [*argv, "--ready-fd", str(w)]
    log_path = os.path.join(session_dir, "logs", f"{name}.err")
    kwargs = {"start_method": "fork"} if name == "raylet" else {}
    child: process.StartedProcess
    if method == "fork" and embedded:
        argv = [*argv[:-1], "{fd0}"]
        child = process.launcher().launch(module_main, argv, kwargs, log_path, (w, *extra_fds))
        os.close(w)
        return child, r
    names = {f"{{fd{i + 1}}}": str(fd) for i, fd in enumerate(extra_fds)}
    argv = [names.get(a, a) for a in argv]
    if method == "fork":
        mod_name, func_name = module_main.split(":")
        func = getattr(importlib.import_module(mod_name), func_name)
        child = process.fork_child(
            lambda: func(argv, **kwargs),
            keep_fds=(w, *extra_fds),
            log_path=log_path,
            die_with_parent_=embedded,
            new_session=not embedded,
        )
    else:
        child = process.spawn_child(
            ["-m", module_main.split(":")[0], *argv], pass_fds=(w, *extra_fds), log_path=log_path, embedded=embedded
        )
    os.close(w)
    return child, r


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _read_ready(fd: int, proc: "process.Child", name: str, deadline: float, session_dir: str) -> str:
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RaySystemError(f"the {name} did not start within the deadline; see {session_dir}/logs/{name}*")
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
        elif proc.poll() is not None:
            break
    os.close(fd)
    line = buf.decode().strip()
    if not line or line.startswith("ERROR"):
        detail = line[6:] if line else f"exited with code {proc.poll()}"
        raise RaySystemError(f"the {name} failed to start: {detail} (logs: {session_dir}/logs)")
    return line


def ready_handle(line: str, ip: str, procs: list[process.StartedProcess], **fields: Any) -> NodeHandle:
    """The handle of a node whose raylet reported ready with ``line`` ("port node_id
    store_namespace"), holding ``procs`` (stopped with it) and the other ``fields``."""
    raylet_port, _node, store_ns = line.split()
    handle = NodeHandle(raylet_address=f"{ip}:{raylet_port}", store_namespace=store_ns, **fields)
    handle._procs = procs  # type: ignore[attr-defined]
    return handle


def abandon_start(cfg: config_mod.Config, procs: tuple["process.Child", ...], fds: tuple[int, ...],
                  raylet_pid: int, node_id: str, session_dir: str) -> None:
    """A node did not start: kill its processes, close the ready pipes still open and
    remove the object store namespace its raylet may have made."""
    for proc in procs:
        proc.kill()
        proc.wait()
    from microray.object_store_access import destroy_namespace, node_namespace

    destroy_namespace(cfg, node_namespace(raylet_pid, node_id), session_dir)
    for fd in fds:
        if _fd_open(fd):
            os.close(fd)


def start_head(cfg: config_mod.Config, *, embedded: bool, timeout: float = 60.0, token: str | None = None) -> NodeHandle:
    """Start a GCS and a head raylet; return when both are serving.

    The cluster's token (``token``, else a new random one) goes to
    ``<session>/cluster_token`` (0600), where the node's processes read it."""
    # old sessions are pruned while the node's processes start (_start_head), not before
    session_dir = session.new_session_dir(cfg.session_root, keep=0)
    try:
        session.write_token(session_dir, token or session.new_token())
        return _start_head(cfg, session_dir, embedded, timeout)
    finally:
        session.release(session_dir)  # the node's processes hold it now (or it failed)


GCS_PORT_ATTEMPTS = 3  # an auto-chosen GCS port another process took first: try another


def _start_head(cfg: config_mod.Config, session_dir: str, embedded: bool, timeout: float) -> NodeHandle:
    """Start the head's processes. The GCS port, when not configured, is one free when
    chosen; another process may take it before the GCS binds it (the GCS and the raylet
    start together, so the raylet must be told the port first): then the head starts
    again on another port."""
    for attempt in range(1, GCS_PORT_ATTEMPTS + 1):
        gcs_port = cfg.gcs_port or free_port(cfg.node_ip)
        try:
            return _start_head_on(cfg, session_dir, embedded, timeout, gcs_port)
        except RaySystemError as exc:
            if cfg.gcs_port or attempt == GCS_PORT_ATTEMPTS or "Failed to bind" not in str(exc):
                raise
            log.warning("gcs_port_taken", port=gcs_port, attempt=attempt)
    raise AssertionError("unreachable")


def _start_head_on(cfg: config_mod.Config, session_dir: str, embedded: bool, timeout: float,
                   gcs_port: int) -> NodeHandle:
    ip = cfg.node_ip
    node_id = new_hex_id()
    # the config (secrets included) goes to the node processes in a 0600 file, never in argv
    cfg_file = session.write_node_config(session_dir, cfg)
    method = fork_safety.choose_start_method(cfg.start_method, embedded=embedded)
    gcs_argv = ["--host", ip, "--port", str(gcs_port), "--session-dir", session_dir, "--config-file", cfg_file]
    gcs, gcs_fd = _launch("gcs", "microray.gcs.server:main", gcs_argv, session_dir, embedded, method)
    gcs_address = f"{ip}:{gcs_port}"
    raylet, raylet_fd = _launch(
        "raylet", "microray.raylet.__main__:main",
        ["--gcs-address", gcs_address, "--session-dir", session_dir, "--config-file", cfg_file,
         "--node-id", node_id, "--port", str(cfg.raylet_port), "--head"],
        session_dir, embedded, method,
    )
    deadline = time.monotonic() + timeout
    try:
        session.prune_quietly(cfg.session_root, cfg.session_keep)  # while they start
        _read_ready(gcs_fd, gcs, "GCS", deadline, session_dir)
        line = _read_ready(raylet_fd, raylet, "raylet", deadline, session_dir)
    except BaseException:
        abandon_start(cfg, (raylet, gcs), (gcs_fd, raylet_fd), raylet.pid, node_id, session_dir)
        raise
    handle = ready_handle(line, ip, [raylet, gcs], gcs_address=gcs_address, node_id=node_id,
                          session_dir=session_dir, pids={"gcs": gcs.pid, "raylet": raylet.pid},
                          embedded=embedded, gcs_argv=gcs_argv)
    if cfg.dashboard != "none":
        try:
            _start_dashboard(handle, cfg, cfg_file, method)
        except BaseException:
            stop_node(handle)
            raise
    session.write_private(Path(session_dir) / ADDRESS_FILE, handle.to_json())
    if not embedded:
        session.write_private(Path(cfg.session_root) / CURRENT, handle.to_json())
    return handle


# the dashboard's mutating endpoints demand the cluster token: its job API runs commands
# on the cluster, as much as a task does, so one secret guards both
DASHBOARD_TOKEN = session.TOKEN_FILE


def _dashboard_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; when that port is taken, the next free one
    above it (up to 100 further); port 0: any free port."""
    family = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]
    candidates = [0] if port == 0 else range(port, min(port + 101, 65536))
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise RaySystemError(f"the dashboard cannot listen on {host}:{candidate}: {exc}") from None
        sock.listen(128)
        return sock
    raise RaySystemError(
        f"dashboard_port {port} and the 100 ports above it are taken on {host}; "
        "set dashboard_port (0: any free port) or dashboard = \"none\""
    )


def _start_dashboard(handle: NodeHandle, cfg: config_mod.Config, cfg_file: str, method: str) -> None:
    """Start the dashboard process on a socket bound here, so its URL is valid at once.

    It reads the cluster token from ``<session>/cluster_token`` (mode 0600). An
    embedded head does not wait for the dashboard to finish starting (that would delay
    the driver's first task); its ready line is checked on a side thread."""
    token_path = os.path.join(handle.session_dir, DASHBOARD_TOKEN)
    sock = _dashboard_socket(cfg.dashboard_host, cfg.dashboard_port)
    port = sock.getsockname()[1]
    if cfg.dashboard_port not in (0, port):
        log.warning("dashboard_port_taken", wanted=cfg.dashboard_port, port=port)
    try:
        dash, ready_fd = _launch(
            "dashboard", "microray.dashboard_main:main",
            ["--gcs-address", handle.gcs_address, "--session-dir", handle.session_dir, "--config-file", cfg_file,
             "--token-file", token_path, "--host", cfg.dashboard_host, "--port", str(port), "--listen-fd", "{fd1}"],
            handle.session_dir, handle.embedded, method, extra_fds=(sock.fileno(),),
        )
    finally:
        sock.close()
    host = cfg.node_ip if cfg.dashboard_host in ("0.0.0.0", "::") else cfg.dashboard_host
    handle.dashboard_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    handle.pids["dashboard"] = dash.pid
    handle._procs.insert(0, dash)  # type: ignore[attr-defined]
    stopped = threading.Event()
    handle._dashboard_stopped = stopped  # type: ignore[attr-defined]

    def check_ready() -> None:
        try:
            _read_ready(ready_fd, dash, "dashboard", time.monotonic() + 60, handle.session_dir)
        except RaySystemError as exc:
            if not stopped.is_set():
                log.warning("dashboard_failed", error=str(exc))
                if not handle.embedded:
                    handle.dashboard_url = ""

    if handle.embedded:
        threading.Thread(target=check_ready, name="microray-dashboard-ready", daemon=True).start()
    else:
        check_ready()


#: What is printed beside the dashboard's URL. The token itself is never printed: it is the
#: cluster token (it runs code on the cluster), and a terminal's output ends up in logs.
DASHBOARD_TOKEN_HINT = "read-only; to enable its actions open it with ?token=<what `microray token` prints>"


def dashboard_login_url(handle: NodeHandle) -> str:
    """The dashboard URL with the session token (what a user opens); "" without a dashboard."""
    if not handle.dashboard_url:
        return ""
    try:
        token = session.read_token(handle.session_dir)
    except OSError:
        return handle.dashboard_url
    return f"{handle.dashboard_url}/?token={token}"


def restart_gcs(handle: NodeHandle, timeout: float = 60.0) -> NodeHandle:
    """Start the GCS of ``handle`` again on its port (after it died or was killed), as a
    detached process. With a durable store it recovers the cluster's state; raylets,
    workers and drivers reconnect by themselves."""
    if process.pid_alive(handle.pids.get("gcs", 0)):
        raise RuntimeError(f"the GCS (pid {handle.pids['gcs']}) is still running")
    # an embedded head's GCS dies with its driver, a restarted one too: forked by the
    # driver's launcher (a clean fork) when there is one, else spawned with a death signal
    launcher = process._launcher
    method = "fork" if handle.embedded and launcher is not None and launcher.alive() else "spawn"
    child, fd = _launch("gcs", "microray.gcs.server:main", list(handle.gcs_argv), handle.session_dir,
                        handle.embedded, method)
    try:
        _read_ready(fd, child, "GCS", time.monotonic() + timeout, handle.session_dir)
    except BaseException:
        child.kill()
        raise
    old_pid = handle.pids.get("gcs")
    handle.pids["gcs"] = child.pid
    procs = getattr(handle, "_procs", None)
    if procs is not None:  # stop_node waits for the new GCS, not the dead one
        handle._procs = [p for p in procs if p.pid != old_pid] + [child]  # type: ignore[attr-defined]
    session.write_private(Path(handle.session_dir) / ADDRESS_FILE, handle.to_json())
    if not handle.embedded:
        session.write_private(Path(handle.session_dir).parent / CURRENT, handle.to_json())
    log.info("gcs_restarted", pid=child.pid, address=handle.gcs_address)
    return handle


def stop_node(handle: NodeHandle, timeout: float = 5.0) -> None:
    """Stop the dashboard, the raylet (and its workers) and the GCS of ``handle``, and
    delete the node's config file (the one file of the session that holds secrets)."""
    try:
        _stop_processes(handle, timeout)
    finally:
        try:
            os.unlink(os.path.join(handle.session_dir, session.CONFIG_FILE))
        except OSError:
            pass


def _stop_processes(handle: NodeHandle, timeout: float) -> None:
    procs = getattr(handle, "_procs", None)
    stopped = getattr(handle, "_dashboard_stopped", None)
    if stopped is not None:
        stopped.set()
    pids = [handle.pids.get("dashboard"), handle.pids.get("raylet"), handle.pids.get("gcs")]
    deadline = time.monotonic() + timeout
    for i, pid in enumerate(pids):
        if i == 2 and pids[1]:
            # the raylet unregisters its node on the way out: stop the GCS after it, or a
            # durable store keeps the stopped node ALIVE for the next head on that namespace
            process.wait_gone(pids[1], max(0.0, deadline - time.monotonic()))
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    if procs:
        for proc in procs:
            try:
                proc.wait(max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return
    for pid in pids:
        if not pid:
            continue
        while time.monotonic() < deadline and process.pid_alive(pid):
            time.sleep(0.02)
        if process.pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def current_cluster(root: str) -> NodeHandle | None:
    text = session.read_private(Path(root) / CURRENT)
    if text is None:
        return None
    data = json.loads(text)
    handle = NodeHandle(**{k: v for k, v in data.items() if k in NodeHandle.__dataclass_fields__})
    if not any(process.pid_alive(pid) for pid in handle.pids.values()):
        return None
    return handle


def forget_current(root: str) -> None:
    try:
        (Path(root) / CURRENT).unlink()
    except FileNotFoundError:
        pass


def find_raylet(gcs_address: str, ip: str, credentials: rpc.Credentials) -> tuple[str, str]:
    """Ask the GCS at ``gcs_address`` for the raylet a driver on this machine (``ip``)
    uses (see ``choose_raylet``); ConnectionError when it cannot be reached or no node
    runs on this machine."""
    import grpc

    from microray.protocol import common_pb2, gcs_pb2_grpc

    with rpc.blocking_channel(gcs_address, credentials) as ch:
        try:
            nodes = gcs_pb2_grpc.GcsStub(ch).GetAllNodes(common_pb2.Empty(), timeout=10).nodes
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise ConnectionError(
                    f"the microray cluster at {gcs_address} refused this process's cluster token "
                    f"(UNAUTHENTICATED: {exc.details()})"
                ) from None
            raise ConnectionError(
                f"could not reach a microray cluster at {gcs_address}: {exc.code().name} {exc.details()}"
            ) from None
    node = choose_raylet(nodes, ip, is_local_address, gcs_address)
    if node.ip != ip:
        log.info("no_raylet_on_node_ip", ip=ip, using=f"{node.ip}:{node.raylet_port}", node_id=node.node_id)
    return f"{node.ip}:{node.raylet_port}", node.node_id


def choose_raylet(nodes: Iterable[Any], ip: str, is_local: Callable[[str], bool], gcs_address: str) -> Any:
    """The live node whose raylet a driver on this machine (``ip``) uses: the one on
    ``ip``; else one serving on another address of this machine (the head first: a head
    started with ``--node-ip-address``, a driver whose own ``node_ip`` was left as is).

    A driver needs a node on its own machine (its objects live in that node's shared
    memory), so a cluster whose live nodes are all elsewhere is a ConnectionError that
    says so and what to do."""
    alive = [n for n in nodes if n.state == "ALIVE"]
    if not alive:
        raise ConnectionError(f"the cluster at {gcs_address} has no live node")
    on_ip = [n for n in alive if n.ip == ip]
    if on_ip:
        return min(on_ip, key=lambda n: not n.is_head)
    here = sorted((n for n in alive if is_local(n.ip)), key=lambda n: not n.is_head)
    if here:
        return here[0]
    seen = ", ".join(sorted({n.ip for n in alive}))
    raise ConnectionError(
        f"no node of the microray cluster at {gcs_address} runs on this machine (its live nodes are at {seen}, "
        "none an address of this machine). A driver runs on a machine with a node, whose shared memory "
        "holds its objects: start one here with 'microray start --address=" + gcs_address + "' and connect "
        "with init(address='auto'), or run the driver on a node's machine."
    )


def is_local_address(ip: str) -> bool:
    """True when ``ip`` is an address of this machine (a socket can bind to it)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((ip, 0))
    except OSError:
        return False
    return True


def cluster_token(gcs_address: str, root: str, given: str | None = None) -> str:
    """The token for a driver or tool connecting to the cluster at ``gcs_address``
    (``"auto"``: the one ``microray start`` started here): ``given``, else
    ``MICRORAY_TOKEN``, else ``local_token``; ConnectionError saying how to give it."""
    token = given or os.environ.get(rpc.TOKEN_ENV) or None
    if token:
        return token
    handle = current_cluster(root)
    if handle is not None and gcs_address == "auto":
        gcs_address = handle.gcs_address
    token = local_token(gcs_address, root)
    if token:
        return token
    raise ConnectionError(
        f"connecting to the microray cluster whose GCS is at {gcs_address} needs its cluster token: set {rpc.TOKEN_ENV} "
        "(or --token); `microray token` on the head machine prints it"
    )


def local_token(gcs_address: str, root: str) -> str | None:
    """The token of a cluster of this user with a node on this machine (started or
    embedded) whose GCS is ``gcs_address``: from the newest session under ``root`` whose
    record (``address.json``, 0600) names that GCS. None when there is none."""
    for session_dir in _sessions_serving(root, gcs_address):
        try:
            return session.read_token(session_dir)
        except OSError as exc:
            raise ConnectionError(f"cannot read the cluster token of the cluster at {gcs_address}: {exc}") from None
    return None


def _sessions_serving(root: str, gcs_address: str) -> list[str]:
    """Session folders under ``root`` whose record names ``gcs_address``, newest first."""
    try:
        entries = [e for e in os.scandir(root) if e.name.startswith(session.PREFIX) and e.name != session.LATEST
                   and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    found = []
    for entry in entries:
        text = session.read_private(os.path.join(entry.path, ADDRESS_FILE))
        try:
            if text and json.loads(text).get("gcs_address") == gcs_address:
                found.append((entry.stat().st_mtime, entry.path))
        except (ValueError, AttributeError, OSError):
            continue
    return [path for _mtime, path in sorted(found, reverse=True)]
