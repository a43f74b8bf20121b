"""A cluster of several nodes on this machine, for tests: ``microray.cluster_utils.Cluster``.

Like Ray's ``ray.cluster_utils.Cluster``::

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node = cluster.add_node(num_cpus=2, resources={"custom": 1})
    cluster.wait_for_nodes()
    cluster.connect()                 # microray.init(address=cluster.address)
    ...
    cluster.remove_node(node)         # graceful stop; allow_graceful=False: SIGKILL its process group
    cluster.shutdown()

Every node is real: it is started by ``microray start`` (``--head`` for the first one,
``--address`` for the others) in a child interpreter, so it runs exactly the code an
operator's node runs, with its own ports, session folder and object store namespace,
all under the cluster's own session root (a temporary folder unless one is given).
Keyword arguments of ``add_node`` are the node's flags (``num_cpus``, ``num_gpus``,
``resources``, ``labels``, ``object_store_memory``, ``node_ip_address``, ``object_store``,
``dashboard`` ...); any other config key is given to the node through its
``MICRORAY_<KEY>`` variable (those of the head, e.g. ``node_dead_after_s``, are the
cluster's). The nodes import modules from this process's ``sys.path`` (they share this
machine's files), so functions of a test module run on every node.

``Cluster(isolation="netns")`` runs each worker node as if on a machine of its own (see
``microray.cluster_netns``): in its own network namespace on a bridge of this machine,
with its own IP (``--node-ip-address``), loopback and ``/dev/shm``, and its own session
root; the head and the driver bind to this machine's address on the bridge. Nothing then
passes between the nodes but over the network. Where namespaces cannot be made it raises
``IsolationUnavailable`` naming the reason.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from microray.cluster_netns import IsolationUnavailable, Network, NodeNamespace

__all__ = ["Cluster", "ClusterNode", "IsolationUnavailable"]

log = structlog.get_logger(__name__)

# add_node keywords that are `microray start` flags (value: the flag)
_FLAGS = {
    "num_cpus": "--num-cpus",
    "num_gpus": "--num-gpus",
    "resources": "--resources",
    "labels": "--labels",
    "object_store_memory": "--object-store-memory",
    "node_ip_address": "--node-ip-address",
    "object_store": "--object-store",
    "gcs_store": "--gcs-store",
    "scheduling_policy": "--scheduling-policy",
    "dashboard": "--dashboard",
    "port": "--port",
    "node_manager_port": "--node-manager-port",
}
_OPTION_FLAGS = {"object_store_options": "--object-store-option", "gcs_store_options": "--gcs-store-option"}


def _env_value(value: Any) -> str:
    """A config value as its ``MICRORAY_<KEY>`` variable reads it (lists comma-separated)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return json.dumps(value)


@dataclass
class ClusterNode:
    """One node of a ``Cluster``: its ids, addresses, session folder and processes."""

    node_id: str
    is_head: bool
    gcs_address: str
    raylet_address: str
    session_dir: str
    store_namespace: str
    pids: dict[str, int] = field(default_factory=dict)
    node_args: dict[str, Any] = field(default_factory=dict)
    session_root: str = ""  # where the node's session folder and record are
    netns: NodeNamespace | None = None  # its network namespace (isolation="netns"), else None

    @property
    def ip(self) -> str:
        """The IP the node's services bind to."""
        return self.raylet_address.rsplit(":", 1)[0]

    @property
    def raylet_pid(self) -> int:
        return self.pids["raylet"]

    @property
    def address(self) -> str:
        """The GCS address of the node's cluster (what ``microray.init`` takes)."""
        return self.gcs_address

    def alive(self) -> bool:
        from microray.process import pid_alive

        return any(pid_alive(pid) for pid in self.pids.values())


class Cluster:
    """Nodes started one by one on this machine, under one session root.

    ``initialize_head``: start the head now (with ``head_node_args``); ``connect``: then
    connect this process as a driver. ``session_root``: where every node keeps its
    session folder and record (default: a new temporary folder, removed at shutdown).
    ``isolation="netns"``: each worker node in network and mount namespaces of its own
    (module docstring); ``None``: every node on this machine's loopback."""

    def __init__(
        self,
        initialize_head: bool = False,
        connect: bool = False,
        head_node_args: dict[str, Any] | None = None,
        shutdown_at_exit: bool = True,
        session_root: str | None = None,
        isolation: str | None = None,
    ) -> None:
        if isolation not in (None, "none", "netns"):
            raise ValueError(f"Cluster isolation {isolation!r} is not known; expected None (every node on this "
                             "machine's loopback) or 'netns' (each worker node in namespaces of its own)")
        # made first: where namespaces cannot be made, nothing else is started
        self.network: Network | None = Network.create() if isolation == "netns" else None
        self._own_root = session_root is None
        self.session_root = session_root or tempfile.mkdtemp(prefix="microray-cluster-")
        os.makedirs(self.session_root, mode=0o700, exist_ok=True)
        self.head_node: ClusterNode | None = None
        self.worker_nodes: list[ClusterNode] = []
        self.removed_nodes: list[ClusterNode] = []
        self.connected = False
        if shutdown_at_exit:
            atexit.register(self.shutdown)
        if initialize_head:
            try:
                self.add_node(**(head_node_args or {}))
            except BaseException:
                self.shutdown()
                raise
            if connect:
                self.connect()
        elif connect:
            raise ValueError("Cluster(connect=True) needs initialize_head=True (there is nothing to connect to)")

    # -- addresses -------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """The GCS address (``HOST:PORT``) of the cluster's head."""
        if self.head_node is None:
            raise RuntimeError("the cluster has no head node yet; call add_node() first")
        return self.head_node.gcs_address

    @property
    def gcs_address(self) -> str:
        return self.address

    @property
    def token(self) -> str:
        """The cluster token (the head made it; its session folder keeps it)."""
        from microray import session

        if self.head_node is None:
            raise RuntimeError("the cluster has no head node yet; call add_node() first")
        return session.read_token(self.head_node.session_dir)

    def list_all_nodes(self) -> list[ClusterNode]:
        """The head (when started) and every worker node not removed."""
        return ([self.head_node] if self.head_node else []) + list(self.worker_nodes)

    # -- nodes -----------------------------------------------------------------------------
    def env(self, extra: dict[str, Any] | None = None, session_root: str | None = None) -> dict[str, str]:
        """The environment of the ``microray`` commands this cluster runs: its session
        root (or ``session_root``), this process's module path, and ``extra`` config keys
        as ``MICRORAY_<KEY>``."""
        env = dict(os.environ)
        env.pop("MICRORAY_ADDRESS", None)
        env["MICRORAY_SESSION_ROOT"] = session_root or self.session_root
        path = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([os.getcwd(), *path]))
        for key, value in (extra or {}).items():
            env[f"MICRORAY_{key.upper()}"] = _env_value(value)
        return env

    def _cli(self, args: list[str], env: dict[str, str], netns: NodeNamespace | None = None,
             timeout: float = 120.0) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "microray.cli", *args]
        return subprocess.run(netns.command(argv) if netns else argv, env=env, capture_output=True,
                              text=True, timeout=timeout, cwd=self.session_root)

    def add_node(self, wait: bool = True, **node_args: Any) -> ClusterNode:
        """Start a node and return it once the GCS lists it ALIVE: the head when the
        cluster has none yet, else a worker node joining it. ``wait`` is accepted for
        Ray's signature; the node is always registered when this returns."""
        is_head = self.head_node is None
        args = ["start", "--head"] if is_head else ["start", f"--address={self.address}"]
        rest: dict[str, Any] = {}
        if is_head:
            node_args.setdefault("dashboard", "none")
        for key, value in node_args.items():
            if value is None:
                continue
            if key == "_system_config":  # Ray's internal flags: microray has its own config keys
                warnings.warn(f"Cluster.add_node ignores _system_config {sorted(value)}: give microray config "
                              "keys (docs/config.md) as keyword arguments instead", UserWarning, stacklevel=2)
            elif key in _FLAGS:
                args += [_FLAGS[key], value if isinstance(value, str) else json.dumps(value)]
            elif key in _OPTION_FLAGS:
                for opt_key, opt_value in value.items():
                    args += [_OPTION_FLAGS[key], f"{opt_key}={json.dumps(opt_value)}"]
            else:
                rest[key] = value
        root, netns = self.session_root, None
        if self.network is not None:  # the head binds to the bridge, a worker node to its namespace's IP
            if "node_ip_address" in node_args:
                raise ValueError("Cluster(isolation='netns') gives each node its IP; node_ip_address cannot be set")
            if is_head:
                args += ["--node-ip-address", self.network.host_ip]
            else:
                netns = self.network.add_namespace()
                args += ["--node-ip-address", netns.ip]
                root = os.path.join(self.session_root, netns.name)  # no session files shared with others
                os.makedirs(root, mode=0o700, exist_ok=True)
        try:
            node = self._start(args, rest, root, netns, is_head, node_args)
        except BaseException:
            if netns is not None and self.network is not None:
                self.network.remove_namespace(netns)
            raise
        if is_head:
            self.head_node = node
        else:
            self.worker_nodes.append(node)
        log.debug("cluster_node_added", node_id=node.node_id, head=is_head, pids=node.pids, ip=node.ip)
        return node

    def _start(self, args: list[str], rest: dict[str, Any], root: str, netns: NodeNamespace | None,
               is_head: bool, node_args: dict[str, Any]) -> ClusterNode:
        from microray.node import ADDRESS_FILE

        before = set(self._session_dirs(root))
        env = self.env(rest, session_root=root)
        if not is_head and "token" not in rest:  # as an operator on another machine gives it (an
            env["MICRORAY_TOKEN"] = self.token   # isolated node finds none here); token=...: that one
        result = self._cli(args, env, netns)
        if result.returncode != 0:
            raise RuntimeError(f"'microray {' '.join(args)}' failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr[-4000:]}")
        new = [d for d in self._session_dirs(root) if d not in before]
        if len(new) != 1:
            raise RuntimeError(f"'microray {' '.join(args)}' made {len(new)} session folders, expected 1: {new}")
        record = json.loads((Path(new[0]) / ADDRESS_FILE).read_text())
        return ClusterNode(
            node_id=record["node_id"], is_head=is_head, gcs_address=record["gcs_address"],
            raylet_address=record["raylet_address"], session_dir=record["session_dir"],
            store_namespace=record["store_namespace"], pids=dict(record["pids"]), node_args=dict(node_args),
            session_root=root, netns=netns,
        )

    @staticmethod
    def _session_dirs(root: str) -> list[str]:
        return [str(p) for p in Path(root).glob("session_2*") if p.is_dir()]

    def remove_node(self, node: ClusterNode, allow_graceful: bool = True, timeout: float = 20.0,
                    unplug: bool = False) -> None:
        """Stop ``node``: SIGTERM its processes (its raylet leaves the cluster, stops its
        workers and removes its object store), or with ``allow_graceful=False`` SIGKILL
        each of its process groups at once (the node just dies: the GCS declares it dead
        after ``node_dead_after_s``). Removing the head stops the GCS too.

        ``unplug=True`` (an isolated node, killed): its network is cut before its processes
        die, so that the connections of others to it see no close or reset, only silence,
        as with a machine that lost power."""
        from microray import node as node_mod
        from microray import worker_node
        from microray.process import pid_alive

        if unplug:
            if node.netns is None or allow_graceful:
                raise ValueError("remove_node(unplug=True) needs an isolated node (Cluster(isolation='netns')) "
                                 "and allow_graceful=False")
            node.netns.unplug()
        order = [node.pids[k] for k in ("dashboard", "raylet", "gcs") if k in node.pids]
        if allow_graceful:
            if node.is_head:
                handle = node_mod.NodeHandle(node.gcs_address, node.raylet_address, node.node_id, node.session_dir,
                                             node.store_namespace, pids=dict(node.pids))
                node_mod.stop_node(handle, timeout=timeout)
            else:
                worker_node.terminate(node.raylet_pid)
        else:
            for pid in order:
                worker_node.kill_process_group(pid)
        deadline = time.monotonic() + timeout
        while any(pid_alive(p) for p in order) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in order:  # graceful stop overran: no node is left half-running
            if pid_alive(pid):
                worker_node.kill_process_group(pid)
        if node.netns is not None and self.network is not None:
            self.network.remove_namespace(node.netns)  # what still runs there; its /dev/shm goes with it
        if not allow_graceful or any(pid_alive(p) for p in order):
            self._remove_namespace(node)
        if node.is_head:
            node_mod.forget_current(self.session_root)
            self.head_node = None
        else:
            worker_node.forget_node(node.session_root or self.session_root, node.node_id)
            if node in self.worker_nodes:
                self.worker_nodes.remove(node)
        self.removed_nodes.append(node)

    def _remove_namespace(self, node: ClusterNode) -> None:
        """A killed raylet could not remove its object store namespace: remove it here."""
        from microray import config as config_mod
        from microray.object_store_access import destroy_namespace

        cfg = config_mod.resolve({k: v for k, v in node.node_args.items()
                                  if k in ("object_store", "object_store_options")}, environ={})
        destroy_namespace(cfg, node.store_namespace, node.session_dir)

    def wait_for_nodes(self, timeout: float = 30.0) -> None:
        """Until the GCS lists exactly this cluster's nodes as ALIVE."""
        from microray.util.state import StateClient

        want = {n.node_id for n in self.list_all_nodes()}
        deadline = time.monotonic() + timeout
        alive: set[str] = set()
        while True:
            try:
                with StateClient(self.address, token=self.token) as client:
                    alive = {n["node_id"] for n in client.nodes() if n["state"] == "ALIVE"}
            except Exception as exc:  # noqa: BLE001 -- the GCS may still be starting
                alive = {f"(GCS unreachable: {exc})"}
            if alive == want:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster's ALIVE nodes are {sorted(alive)} after {timeout:g}s; "
                                   f"expected {sorted(want)}")
            time.sleep(0.05)

    # -- drivers ---------------------------------------------------------------------------
    def connect(self, **init_kwargs: Any) -> Any:
        """Connect this process to the cluster as a driver (``microray.init``)."""
        import microray

        if self.network is not None:  # the driver's services bind where the nodes reach them
            init_kwargs.setdefault("node_ip", self.network.host_ip)
        # the cluster's session root: where this driver finds the cluster token
        init_kwargs.setdefault("session_root", self.session_root)
        context = microray.init(address=self.address, **init_kwargs)
        self.connected = True
        return context

    def shutdown(self) -> None:
        """Disconnect the driver (when connected), stop every node (worker nodes first,
        then the head) and remove the cluster's session root when it made it."""
        atexit.unregister(self.shutdown)
        if self.connected:
            import microray

            microray.shutdown()
            self.connected = False
        from microray import worker_node

        for node in self.worker_nodes:  # all at once; remove_node then waits for each
            worker_node.terminate(node.raylet_pid)
        for node in list(self.worker_nodes):
            try:
                self.remove_node(node)
            except Exception as exc:  # noqa: BLE001 -- stop the others regardless
                log.warning("cluster_node_stop_failed", node_id=node.node_id, error=repr(exc))
        try:
            if self.head_node is not None:
                self.remove_node(self.head_node)
        finally:
            if self.network is not None:
                self.network.teardown()
                self.network = None
        if self._own_root:
            shutil.rmtree(self.session_root, ignore_errors=True)
