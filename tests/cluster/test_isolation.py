"""Worker nodes as if on machines of their own (``Cluster(isolation="netns")``): each in its
own network namespace on a bridge of this machine, with its own IP, loopback and
``/dev/shm``. Tasks and actors work across them, and nothing of a node is seen from the
host but over the network: not its shared memory, not its loopback, not its sockets."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import psutil
import pytest

import microray as ray
from microray.cluster_netns import SUBNET_PREFIX
from microray.util.state import list_nodes

SHM = "/dev/shm"


@ray.remote(num_cpus=0)
class Counter:
    def __init__(self) -> None:
        self.total = 0

    def add(self, n: int) -> int:
        self.total += n
        return self.total

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=0.5)
def bump(counter, values, i):
    ray.get(counter.add.remote(i))  # a call from this node to the actor's, over the bridge
    return ray.get_runtime_context().get_node_id(), sum(values) + i


@ray.remote(num_cpus=0.5)
def make(n):
    return ray.get_runtime_context().get_node_id(), list(range(n))


@ray.remote(num_cpus=0.5)
def consume(made):
    return ray.get_runtime_context().get_node_id(), made[0], sum(made[1])


def shm_of(pid: int) -> list[str]:
    """The /dev/shm entries a process sees (through its own mount namespace)."""
    return os.listdir(f"/proc/{pid}/root{SHM}")


def in_namespace(netns, code: str) -> str:
    result = netns.exec([sys.executable, "-c", textwrap.dedent(code)])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


CONNECT = """
    import socket
    try:
        socket.create_connection(({host!r}, {port}), timeout=5).close()
        print("connected")
    except ConnectionRefusedError:
        print("refused")
"""


def connects(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
        return True
    except ConnectionRefusedError:
        return False


@pytest.mark.slow
def test_isolated_worker_nodes_run_tasks_and_actors_and_meet_only_over_the_network(make_cluster):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1}, isolation="netns")
    a = cluster.add_node(num_cpus=1, resources={"a": 10})
    b = cluster.add_node(num_cpus=1, resources={"b": 10})
    cluster.wait_for_nodes()

    # every node its own address on the bridge; the head and the driver on the host's
    subnet = f"{SUBNET_PREFIX}.{cluster.network.subnet}."
    assert cluster.head_node.ip == cluster.network.host_ip
    assert a.ip != b.ip and a.ip.startswith(subnet) and b.ip.startswith(subnet)
    ips = {n["node_id"]: n["node_ip"] for n in list_nodes(address=cluster.address)}
    assert ips == {cluster.head_node.node_id: cluster.network.host_ip, a.node_id: a.ip, b.node_id: b.ip}
    assert os.path.dirname(a.session_dir) == os.path.join(cluster.session_root, a.netns.name)

    # a workload across the nodes: an actor on a, tasks on b calling it, a result made on a read on b
    cluster.connect()
    counter = Counter.options(resources={"a": 1}).remote()
    assert ray.get(counter.node.remote()) == a.node_id
    values = ray.put(list(range(100)))
    results = ray.get([bump.options(resources={"b": 1}).remote(counter, values, i) for i in range(6)])
    assert results == [(b.node_id, 4950 + i) for i in range(6)]
    assert ray.get(counter.add.remote(0)) == sum(range(6))
    made = make.options(resources={"a": 1}).remote(1000)
    assert ray.get(consume.options(resources={"b": 1}).remote(made)) == (b.node_id, a.node_id, sum(range(1000)))

    # shared memory: each node's object store is in its own /dev/shm, seen by no one else
    host_shm = os.listdir(SHM)
    for node, other in ((a, b), (b, a)):
        own = shm_of(node.raylet_pid)
        assert any(node.store_namespace in e for e in own), (node.store_namespace, own)
        assert not any(node.store_namespace in e for e in host_shm), (node.store_namespace, host_shm)
        assert not any(other.store_namespace in e or cluster.head_node.store_namespace in e for e in own), own
    assert any(cluster.head_node.store_namespace in e for e in host_shm)

    # sockets: the nodes' processes have none in the host's network namespace
    node_pids = set(a.netns.pids()) | set(b.netns.pids())
    assert a.raylet_pid in node_pids and b.raylet_pid in node_pids
    host_sockets = [c for c in psutil.net_connections("inet") if c.pid in node_pids]
    assert not host_sockets, host_sockets
    raylet_port = int(a.raylet_address.rsplit(":", 1)[1])
    assert connects(a.ip, raylet_port)  # over the bridge: yes
    assert not connects("127.0.0.1", raylet_port)

    # loopback: a node's is not the host's, either way
    gcs_port = int(cluster.address.rsplit(":", 1)[1])
    assert in_namespace(a.netns, CONNECT.format(host=cluster.network.host_ip, port=gcs_port)) == "connected"
    with socket.socket() as host_listener:
        host_listener.bind(("127.0.0.1", 0))
        host_listener.listen()
        port = host_listener.getsockname()[1]
        assert in_namespace(a.netns, CONNECT.format(host="127.0.0.1", port=port)) == "refused"
    node_listener = subprocess.Popen(
        ["ip", "netns", "exec", a.netns.name, sys.executable, "-c",
         "import socket, sys\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
         "print(s.getsockname()[1], flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(node_listener.stdout.readline())
        assert in_namespace(a.netns, CONNECT.format(host="127.0.0.1", port=port)) == "connected"
        assert not connects("127.0.0.1", port)
    finally:
        node_listener.stdin.close()
        node_listener.wait(timeout=30)


DRIVER = """
    import sys
    import microray as ray
    try:
        ray.init(address=sys.argv[1])
    except ConnectionError as exc:
        print("REFUSED", exc)
        sys.exit(3)

    @ray.remote(num_cpus=0.5)
    def node():
        return ray.get_runtime_context().get_node_id()

    print("RAN", ray.get_runtime_context().get_node_id(), ray.get(node.options(resources={"head": 1}).remote()))
"""


@pytest.mark.slow
def test_a_driver_takes_the_node_of_its_machine_and_a_machine_without_one_is_refused(make_cluster, tmp_path):
    """A driver on a worker node's machine (in its network and mount namespaces) with
    ``node_ip`` left as is takes that node's raylet; a driver on a machine with no node is
    refused with an error that says so (its objects would have no shared memory to live in)."""
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1}},
                           isolation="netns")
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    env = {k: v for k, v in cluster.env().items() if k not in ("MICRORAY_NODE_IP", "MICRORAY_ADDRESS")}
    env["MICRORAY_TOKEN"] = cluster.token
    argv = [sys.executable, str(script), cluster.address]

    on_worker = subprocess.run(["nsenter", "-t", str(worker.raylet_pid), "-n", "-m", *argv], env=env,
                               capture_output=True, text=True, timeout=120)
    assert on_worker.returncode == 0, on_worker.stderr[-3000:]
    assert on_worker.stdout.split() == ["RAN", worker.node_id, cluster.head_node.node_id], on_worker.stdout

    elsewhere = cluster.network.add_namespace()  # a machine of its own: no node, its own /dev/shm
    nodeless = subprocess.run(elsewhere.command(argv), env=env, capture_output=True, text=True, timeout=120)
    assert nodeless.returncode == 3, (nodeless.stdout, nodeless.stderr[-3000:])
    assert "runs on this machine" in nodeless.stdout and "microray start --address=" in nodeless.stdout
    assert cluster.network.host_ip in nodeless.stdout and worker.ip in nodeless.stdout


@pytest.mark.slow
def test_killed_isolated_node_takes_its_namespace_and_processes_with_it(make_cluster):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1}, isolation="netns")
    node = cluster.add_node(num_cpus=1, resources={"a": 1})
    cluster.wait_for_nodes()
    cluster.connect()
    assert ray.get(make.options(resources={"a": 1}).remote(10))[0] == node.node_id
    pids = node.netns.pids()
    assert len(pids) >= 2  # the raylet and at least the worker that ran the task
    cluster.remove_node(node, allow_graceful=False)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert node.netns.name not in listed
    cluster.wait_for_nodes()


@pytest.mark.slow
def test_an_isolated_node_joins_only_with_the_token_and_its_raylet_demands_it(make_cluster):
    """An isolated node shares no files with the head: the token it is given is all it has."""
    import grpc

    from microray import rpc
    from microray.protocol import common_pb2, raylet_pb2_grpc

    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1}, isolation="netns")
    with pytest.raises(RuntimeError, match="needs its cluster token"):
        cluster.add_node(num_cpus=1, token="")
    with pytest.raises(RuntimeError, match="UNAUTHENTICATED"):
        cluster.add_node(num_cpus=1, token="not-the-token")
    node = cluster.add_node(num_cpus=1, resources={"a": 1})  # given the cluster's token
    cluster.wait_for_nodes()
    cluster.connect()
    assert ray.get(make.options(resources={"a": 1}).remote(10))[0] == node.node_id
    # over the bridge, the node's raylet refuses callers without the token or with a wrong one
    for bad in (None, "not-the-token"):
        ch = grpc.insecure_channel(node.raylet_address) if bad is None else \
            rpc.blocking_channel(node.raylet_address, rpc.Credentials(bad))
        with ch, pytest.raises(grpc.RpcError) as info:
            raylet_pb2_grpc.RayletStub(ch).GetNodeStats(common_pb2.Empty(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value
    with rpc.blocking_channel(node.raylet_address, rpc.Credentials(cluster.token)) as ch:
        assert raylet_pb2_grpc.RayletStub(ch).GetNodeStats(common_pb2.Empty(), timeout=10).node.node_id == node.node_id


@ray.remote(num_cpus=0.5)
def array_sum(arr):
    return ray.get_runtime_context().get_node_id(), int(arr.sum(dtype="uint64"))


@ray.remote(num_cpus=0.5)
def make_array(nbytes):
    import numpy as np

    return np.full(nbytes, 3, dtype=np.uint8)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the test certificate")
def test_isolated_nodes_over_tls(make_cluster, tmp_path, monkeypatch):
    """With the ``tls`` key (a self-signed certificate for the bridge's addresses, made
    here) isolated nodes run tasks, an actor and a pull over TLS; a plaintext caller with
    the right token is refused."""
    import grpc

    from microray import rpc
    from microray.protocol import common_pb2, raylet_pb2_grpc

    cluster = make_cluster(isolation="netns")
    prefix = f"{SUBNET_PREFIX}.{cluster.network.subnet}"
    key, crt = tmp_path / "node.key", tmp_path / "node.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=microray-test", "-addext", "subjectAltName=" + ",".join(f"IP:{prefix}.{i}" for i in range(1, 5)),
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True, timeout=60)
    cert = {"cert_file": str(crt), "key_file": str(key), "ca_file": str(crt)}
    monkeypatch.setenv("MICRORAY_TLS", json.dumps(cert))  # this driver and every node it starts
    cluster.add_node(num_cpus=1)
    a = cluster.add_node(num_cpus=1, resources={"a": 10})
    b = cluster.add_node(num_cpus=1, resources={"b": 10})
    cluster.wait_for_nodes()
    cluster.connect()
    counter = Counter.options(resources={"a": 1}).remote()
    values = ray.put(list(range(100)))
    assert ray.get([bump.options(resources={"b": 1}).remote(counter, values, i) for i in range(3)]) == \
        [(b.node_id, 4950 + i) for i in range(3)]
    n = 20_000_000
    arr = make_array.options(resources={"a": 1}).remote(n)
    assert ray.get(array_sum.options(resources={"b": 1}).remote(arr)) == (b.node_id, 3 * n)
    with rpc.blocking_channel(a.raylet_address, rpc.Credentials(cluster.token)) as ch:  # plaintext
        with pytest.raises(grpc.RpcError) as info:
            raylet_pb2_grpc.RayletStub(ch).GetNodeStats(common_pb2.Empty(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    with rpc.blocking_channel(a.raylet_address, rpc.Credentials(cluster.token, cert)) as ch:
        assert raylet_pb2_grpc.RayletStub(ch).GetNodeStats(common_pb2.Empty(), timeout=10).node.node_id == a.node_id


UNAVAILABLE = """
import os, sys
from microray.cluster_utils import Cluster, IsolationUnavailable
if sys.argv[2] == "nobody":
    os.setgid(65534); os.setuid(65534)
try:
    Cluster(isolation="netns", session_root=sys.argv[1], shutdown_at_exit=False)
except IsolationUnavailable as exc:
    print(exc)
"""


@pytest.mark.parametrize("case", ["nobody", "no-tools"])
def test_isolation_unavailable_names_the_reason_and_starts_nothing(tmp_path, case):
    """Without root, or without ``ip``/``unshare`` on PATH, no namespace can be made: the
    reason says which (tests then skip with it) and nothing is started."""
    if case == "nobody" and os.geteuid() != 0:
        pytest.skip("needs root to drop to an unprivileged user")
    root = tmp_path / "root"
    env = dict(os.environ, PATH="/nonexistent") if case == "no-tools" else None
    result = subprocess.run([sys.executable, "-c", UNAVAILABLE, str(root), case], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    reason = result.stdout.strip()
    assert reason.startswith("isolated cluster nodes cannot be made here: "), reason
    assert ("needs root" if case == "nobody" else "ip, unshare, mount not found on PATH") in reason, reason
    assert not root.exists()  # no session root, no node


def test_unknown_isolation_is_refused():
    from microray.cluster_utils import Cluster

    with pytest.raises(ValueError, match="isolation 'vm' is not known; expected None"):
        Cluster(isolation="vm", shutdown_at_exit=False)

