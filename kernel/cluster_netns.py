"""Nodes of a test cluster that see each other only over the network: ``Cluster(isolation="netns")``.

An isolated node runs in its own network namespace, joined to a Linux bridge on this
machine by a veth pair, with its own address in a private /24 made for the cluster
(``10.213.N.0/24``: the bridge, on this machine's side, is ``.1``; the nodes are ``.2``
and up), and in its own mount namespace whose ``/dev/shm`` is a fresh tmpfs. So the node
has its own loopback (the host's ``127.0.0.1`` is not its own), its own shared memory
(segments of its object store are invisible to every other node and to the host), and
nothing reaches it but packets over the bridge: the way separate machines would be.

Needs root (``CAP_NET_ADMIN`` and ``CAP_SYS_ADMIN``), iproute2's ``ip`` and util-linux's
``unshare`` and ``mount``; ``unavailable_reason()`` names what is missing, so that tests
can skip with it. Every network made here is recorded in ``/run/microray-netns/`` with
the PID of the process that made it; a network whose maker died without tearing it down
is removed the next time a network is made.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

STATE_DIR = Path("/run/microray-netns")
SUBNET_PREFIX = "10.213"  # the third octet is chosen per network; only namespaces made here use it
# a node's command runs after this: its own mount namespace, private, with a fresh /dev/shm
_MOUNT_SHM = 'mount -t tmpfs -o mode=1777,nosuid,nodev microray-shm /dev/shm && exec "$@"'


class IsolationUnavailable(RuntimeError):
    """Network namespaces cannot be made here; the message says why."""


def _run(argv: list[str], check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise IsolationUnavailable(f"'{' '.join(argv)}' failed ({result.returncode}): "
                                   f"{(result.stderr or result.stdout).strip()}")
    return result


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["ip", *args], check=check)


_reason: list[str | None] = []


def unavailable_reason() -> str | None:
    """Why isolated nodes cannot be made on this machine (``None``: they can). Checked once
    per process by making (and removing) a namespace with a private ``/dev/shm``."""
    if not _reason:
        _reason.append(_probe())
    return _reason[0]


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux-only (this is {sys.platform})"
    missing = [tool for tool in ("ip", "unshare", "mount") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found on PATH (install iproute2 / util-linux)"
    if os.geteuid() != 0:
        return "making network and mount namespaces needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); running as uid " \
               f"{os.geteuid()}"
    name = f"microray-probe-{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except IsolationUnavailable as exc:
        return str(exc)
    try:
        _run(["ip", "netns", "exec", name, "unshare", "--mount", "--propagation", "private", "--",
              "sh", "-c", _MOUNT_SHM, "probe", "true"])
        _ip("link", "add", f"mrp{os.getpid() % 10**8}", "type", "veth", "peer", "name", "eth0", "netns", name)
    except IsolationUnavailable as exc:
        return str(exc)
    finally:
        _ip("netns", "del", name, check=False)  # the veth pair goes with it
    return None


@dataclass
class NodeNamespace:
    """The network namespace of one isolated node: its name (``ip netns``), its IP on the
    cluster's bridge, and the host end of its veth pair."""

    name: str
    ip: str
    host_veth: str

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this namespace, in a mount namespace of its own whose
        ``/dev/shm`` is a fresh tmpfs (gone when the last process in it ends)."""
        return ["ip", "netns", "exec", self.name, "unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", _MOUNT_SHM, "microray-node", *argv]

    def exec(self, argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run ``argv`` in this namespace's network (the host's mounts) and wait for it."""
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True,
                              timeout=timeout)

    def unplug(self) -> None:
        """Cut this namespace off the bridge (its ``eth0`` down): from now on nothing it
        sends reaches anyone and nothing reaches it, with no refusal or reset either way,
        as when a machine loses power or its cable."""
        _ip("-n", self.name, "link", "set", "eth0", "down")

    def pids(self) -> list[int]:
        """The processes running in this namespace now."""
        out = _ip("netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split()]


@dataclass
class Network:
    """A bridge on this machine and the namespaces of the isolated nodes joined to it."""

    tag: str
    subnet: int  # the third octet: 10.213.<subnet>.0/24
    namespaces: list[NodeNamespace] = field(default_factory=list)
    _next_host: int = 2

    @property
    def bridge(self) -> str:
        return f"mrb{self.tag}"

    @property
    def host_ip(self) -> str:
        """This machine's address on the bridge (where the head and the driver bind)."""
        return f"{SUBNET_PREFIX}.{self.subnet}.1"

    @property
    def state_file(self) -> Path:
        return STATE_DIR / f"{self.tag}.json"

    @classmethod
    def create(cls) -> Network:
        """Make a bridge with the host's address on a free ``10.213.N.0/24``; raise
        ``IsolationUnavailable`` (with the reason) where namespaces cannot be made."""
        reason = unavailable_reason()
        if reason:
            raise IsolationUnavailable(f"isolated cluster nodes cannot be made here: {reason}")
        with _locked():
            _sweep_stale()
            used = {int(a.split(".")[2]) for a in _ip("-o", "-4", "addr", "show").stdout.split()
                    if a.startswith(f"{SUBNET_PREFIX}.")}
            used |= {s["subnet"] for s in _states()}
            free = [n for n in range(1, 255) if n not in used]
            if not free:
                raise IsolationUnavailable(f"every {SUBNET_PREFIX}.N.0/24 subnet is in use on this machine")
            net = cls(tag=os.urandom(3).hex(), subnet=random.choice(free))
            net._save()
        try:
            _ip("link", "add", net.bridge, "type", "bridge")
            _ip("addr", "add", f"{net.host_ip}/24", "dev", net.bridge)
            _ip("link", "set", net.bridge, "up")
        except BaseException:
            net.teardown()
            raise
        log.debug("netns_network_created", bridge=net.bridge, host_ip=net.host_ip)
        return net

    def add_namespace(self) -> NodeNamespace:
        """A new namespace with the next address on the bridge, its loopback up."""
        index = self._next_host
        if index > 254:
            raise IsolationUnavailable(f"the /24 of bridge {self.bridge} has no address left for another node")
        self._next_host += 1
        ns = NodeNamespace(name=f"microray-{self.tag}-{index}", ip=f"{SUBNET_PREFIX}.{self.subnet}.{index}",
                           host_veth=f"mrh{self.tag}{index:02x}")
        self.namespaces.append(ns)
        self._save()
        try:
            _ip("netns", "add", ns.name)
            _ip("link", "add", ns.host_veth, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
            _ip("link", "set", ns.host_veth, "master", self.bridge)
            _ip("link", "set", ns.host_veth, "up")
            _ip("-n", ns.name, "addr", "add", f"{ns.ip}/24", "dev", "eth0")
            _ip("-n", ns.name, "link", "set", "eth0", "up")
            _ip("-n", ns.name, "link", "set", "lo", "up")
        except BaseException:
            self.remove_namespace(ns)
            raise
        log.debug("netns_namespace_added", netns=ns.name, ip=ns.ip)
        return ns

    def remove_namespace(self, ns: NodeNamespace, timeout: float = 10.0) -> None:
        """SIGKILL whatever still runs in ``ns`` (the processes of the node started in it),
        then delete the namespace and its veth pair. The node's ``/dev/shm`` goes with
        its last process."""
        _remove(ns.name, ns.host_veth, timeout)
        if ns in self.namespaces:
            self.namespaces.remove(ns)
            self._save()

    def teardown(self) -> None:
        """Remove every namespace (ending its processes), the bridge and the record."""
        for ns in list(self.namespaces):
            try:
                self.remove_namespace(ns)
            except Exception as exc:  # noqa: BLE001 -- remove the rest regardless
                log.warning("netns_remove_failed", netns=ns.name, error=repr(exc))
        _ip("link", "del", self.bridge, check=False)
        self.state_file.unlink(missing_ok=True)

    def _save(self) -> None:
        STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {"owner": os.getpid(), "owner_started": _started(os.getpid()), "tag": self.tag,
                "subnet": self.subnet, "bridge": self.bridge,
                "namespaces": [[ns.name, ns.host_veth] for ns in self.namespaces]}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.state_file)


def _remove(name: str, host_veth: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p) for p in _ip("netns", "pids", name, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise IsolationUnavailable(f"processes {pids} in network namespace {name} did not end in {timeout:g}s")
        time.sleep(0.02)
    _ip("netns", "del", name, check=False)
    _ip("link", "del", host_veth, check=False)  # normally gone with its peer


def _started(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return float(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return -1.0


def _states() -> list[dict]:
    out = []
    for path in STATE_DIR.glob("*.json"):
        try:
            out.append(json.loads(path.read_text()) | {"_path": str(path)})
        except (OSError, ValueError):
            continue
    return out


def _sweep_stale() -> None:
    """Remove networks whose maker is gone (a killed test run): their empty namespaces,
    veths and bridge. A namespace in which processes still run is left alone (they are
    not this process's to end), and so is its network."""
    for state in _states():
        owner = state.get("owner", 0)
        if _started(owner) == state.get("owner_started"):
            continue
        names = [name for name, _veth in state.get("namespaces", [])]
        busy = [name for name in names if _ip("netns", "pids", name, check=False).stdout.split()]
        if busy:
            log.warning("netns_stale_network_busy", bridge=state.get("bridge"), owner=owner, busy=busy)
            continue
        log.info("netns_stale_network_removed", bridge=state.get("bridge"), owner=owner)
        for name, host_veth in state.get("namespaces", []):
            _remove(name, host_veth, 0.0)
        _ip("link", "del", state.get("bridge", ""), check=False)
        Path(state["_path"]).unlink(missing_ok=True)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
