"""Worker nodes joining a cluster, and the record of the nodes ``microray start`` started here.

``start_worker_node`` starts a raylet (with its zygote and object store namespace) that
takes the cluster's config from the head's GCS, registers its node and serves; it returns
once the GCS node table lists the node ALIVE. Every node started by ``microray start``
is recorded in ``<session_root>/nodes/<node_id>.json`` (a head in ``current_cluster``) with the PIDs it
started and their start times, so that ``microray stop`` ends exactly those processes
and no process that merely reuses a recorded PID.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import structlog

from microray import config as config_mod
from microray import fork_safety, process, rpc, session
from microray.exceptions import RaySystemError
from microray.ids import new_hex_id
from microray.node import ADDRESS_FILE, NodeHandle, _launch, _read_ready, abandon_start, ready_handle

log = structlog.get_logger(__name__)

NODES_DIR = "nodes"


def start_worker_node(cfg: config_mod.Config, gcs_address: str, *, token: str, timeout: float = 60.0) -> NodeHandle:
    """Start a worker node of the cluster whose GCS is at ``gcs_address``; return once the
    GCS lists it ALIVE. ``cfg`` is this machine's config: its node-local keys (resources,
    labels, object store, IP, ports, session root) apply to the node, every other key is
    taken from the cluster (see ``config.joining_node_config``). ``token`` is the
    cluster's: it goes to ``<session>/cluster_token`` (0600), where the raylet reads it."""
    session_dir = session.new_session_dir(cfg.session_root, cfg.session_keep, latest=False)
    try:
        session.write_token(session_dir, token)
        return _start_worker_node(cfg, gcs_address, session_dir, timeout)
    finally:
        session.release(session_dir)  # the raylet holds it now (or it failed)


def _start_worker_node(cfg: config_mod.Config, gcs_address: str, session_dir: str, timeout: float) -> NodeHandle:
    node_id = new_hex_id()
    # this machine's config (secrets included) in a 0600 file, never in argv; the raylet
    # merges it with the cluster's (config.joining_node_config)
    cfg_file = session.write_node_config(session_dir, cfg)
    method = fork_safety.choose_start_method(cfg.start_method, embedded=False)
    argv = ["--gcs-address", gcs_address, "--session-dir", session_dir, "--config-file", cfg_file,
            "--node-id", node_id, "--port", str(cfg.raylet_port)]
    raylet, ready_fd = _launch("raylet", "microray.raylet.__main__:main", argv, session_dir, False, method)
    deadline = time.monotonic() + timeout
    try:
        line = _read_ready(ready_fd, raylet, "raylet", deadline, session_dir)
    except BaseException:
        abandon_start(cfg, (raylet,), (ready_fd,), raylet.pid, node_id, session_dir)
        raise
    handle = ready_handle(line, cfg.node_ip, [raylet], gcs_address=gcs_address, node_id=node_id,
                          session_dir=session_dir, pids={"raylet": raylet.pid})
    session.write_private(Path(session_dir) / ADDRESS_FILE, handle.to_json())
    return handle


def wait_registered(gcs_address: str, node_id: str, credentials: rpc.Credentials, timeout: float = 30.0) -> None:
    """Until the GCS node table lists ``node_id`` ALIVE; ``RaySystemError`` after ``timeout``."""
    import grpc

    from microray.protocol import common_pb2, gcs_pb2_grpc

    deadline = time.monotonic() + timeout
    state = "not listed"
    with rpc.blocking_channel(gcs_address, credentials) as ch:
        stub = gcs_pb2_grpc.GcsStub(ch)
        while time.monotonic() < deadline:
            try:
                nodes = stub.GetAllNodes(common_pb2.Empty(), timeout=5).nodes
                state = next((n.state for n in nodes if n.node_id == node_id), "not listed")
            except grpc.RpcError as exc:
                state = f"GCS unreachable ({exc.code().name})"
            if state == "ALIVE":
                return
            time.sleep(0.05)
    raise RaySystemError(f"node {node_id} is not ALIVE in the GCS node table at {gcs_address} after "
                         f"{timeout:g}s (last: {state})")


# -- the record of started nodes -------------------------------------------------------------
def _start_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def record_node(root: str, handle: NodeHandle, head: bool) -> Path:
    """Record ``handle`` (and the start time of each of its processes) under ``root``."""
    folder = Path(root) / NODES_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.loads(handle.to_json())
    data["head"] = head
    data["started"] = {name: _start_time(pid) for name, pid in handle.pids.items()}
    path = folder / f"{handle.node_id}.json"
    session.write_private(path, json.dumps(data))
    return path


def forget_node(root: str, node_id: str) -> None:
    try:
        (Path(root) / NODES_DIR / f"{node_id}.json").unlink()
    except FileNotFoundError:
        pass


def recorded_nodes(root: str) -> list[dict[str, Any]]:
    """The worker node records under ``root``; records whose processes all ended are
    removed and left out."""
    out = []
    for path in sorted((Path(root) / NODES_DIR).glob("*.json")):
        text = session.read_private(path)  # None: missing, or writable by others: not ours
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            continue
        if not recorded_pids(data):
            path.unlink(missing_ok=True)
            continue
        out.append(data)
    return out


def recorded_pids(record: dict[str, Any]) -> dict[str, int]:
    """The recorded processes of a node record that still run as the same process (same
    start time): the ones ``microray stop`` may signal."""
    started = record.get("started", {})
    out = {}
    for name, pid in record.get("pids", {}).items():
        when = started.get(name)
        actual = _start_time(pid)
        if actual and (not when or abs(actual - when) < 1.0):
            out[name] = pid
    return out


def local_gcs_address(root: str) -> str | None:
    """The GCS address of the cluster a worker node started here belongs to."""
    for record in recorded_nodes(root):
        return str(record["gcs_address"])
    return None


def stop_recorded(root: str, force: bool = False, grace: float = 10.0) -> list[dict[str, Any]]:
    """Stop every worker node recorded under ``root`` (the head is ``current_cluster``'s,
    see ``node.stop_node``): SIGTERM to every recorded process at once (each raylet leaves
    the cluster, stops its workers and removes its object store), then SIGKILL to what
    still runs after ``grace`` seconds; with ``force`` SIGKILL at once. A SIGKILL takes the
    whole process group of a process that leads one (its zygote and workers). Returns the
    records stopped."""
    records = recorded_nodes(root)
    pids = [pid for record in records for pid in recorded_pids(record).values()]
    for pid in pids:
        _signal(pid, signal.SIGKILL if force else signal.SIGTERM)
    if not wait_gone(pids, grace):
        for pid in pids:
            if process.pid_alive(pid):
                _signal(pid, signal.SIGKILL)
        wait_gone(pids, 5.0)
    for record in records:
        forget_node(root, record["node_id"])
    return records


def _signal(pid: int, sig: int) -> None:
    try:
        if sig == signal.SIGKILL and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_gone(pids: list[int], timeout: float) -> bool:
    """Whether every process in ``pids`` ended within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while any(process.pid_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def kill_process_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (a node process started by ``microray
    start`` leads one: its raylet, zygote and workers), or ``pid`` alone."""
    _signal(pid, signal.SIGKILL)


def terminate(pid: int) -> None:
    """SIGTERM ``pid`` (a raylet then leaves the cluster and stops its workers); nothing
    when it is gone."""
    _signal(pid, signal.SIGTERM)
