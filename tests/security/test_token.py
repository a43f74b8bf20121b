"""Every gRPC service of every process demands the cluster token before it looks at a
request: without it or with a wrong one a call that would store or run something gets
UNAUTHENTICATED, and nothing is stored or run. With the token the cluster works."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import grpc
import psutil
import pytest

import microray as ray
from microray import rpc, session
from microray.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc, gcs_pb2, gcs_pb2_grpc
from microray.protocol import raylet_pb2, raylet_pb2_grpc
from microray.testing.processes import wait_for
from microray.util import state

from .conftest import NO_TOKEN, WRONG_TOKEN, channel, cluster_token, marker_pickle, refused

pytestmark = pytest.mark.timeout(180)
BAD_TOKENS = pytest.mark.parametrize("token", [NO_TOKEN, WRONG_TOKEN], ids=["no-token", "wrong-token"])


@ray.remote
class Holder:
    def pid(self) -> int:
        return os.getpid()


@ray.remote
def double(x: int) -> int:
    return 2 * x


def _worker_address(actor) -> str:
    """The core-worker address of the process that runs ``actor``."""
    pid = ray.get(actor.pid.remote())
    with state.StateClient() as c:
        found = [w for w in c.workers() if w.get("pid") == pid and w.get("address")]
    assert found, f"no worker with pid {pid} in the state API"
    return found[0]["address"]


def _push_tasks(address: str, token: str | None, marker: Path) -> None:
    """Open a PushTasks stream to ``address`` with one pickled 'task' that would create
    ``marker``, and read the answer."""
    with channel(address, token) as ch:
        call = core_worker_pb2_grpc.CoreWorkerStub(ch).PushTasks(
            iter([core_worker_pb2.TaskBatch(specs=[marker_pickle(marker)])]), timeout=10)
        for _ in call:
            pass


# -- the GCS ---------------------------------------------------------------------------------------
@BAD_TOKENS
def test_gcs_refuses_and_stores_nothing(cluster, tmp_path, token):
    gcs = ray.api._worker.gcs_address
    key = b"intruder-" + os.urandom(4).hex().encode()
    marker = tmp_path / "gcs-ran-it"
    with channel(gcs, token) as ch:
        stub = gcs_pb2_grpc.GcsStub(ch)
        refused(lambda: stub.KvPut(gcs_pb2.KvPutRequest(ns="sec", key=key, value=b"x"), timeout=10), token_shown=token)
        refused(lambda: stub.RegisterActor(gcs_pb2.ActorRecordRequest(record=marker_pickle(marker)), timeout=10),
                token_shown=token)
        refused(lambda: stub.GetAllNodes(common_pb2.Empty(), timeout=10), token_shown=token)
    assert not marker.exists(), "the GCS unpickled a request of an unauthenticated caller"
    with channel(gcs, cluster_token()) as ch:
        reply = gcs_pb2_grpc.GcsStub(ch).KvGet(gcs_pb2.KvGetRequest(ns="sec", key=key), timeout=10)
    assert not reply.found, "the GCS stored a key for an unauthenticated caller"


def test_the_payload_is_real_with_the_token(cluster, tmp_path):
    """The same call with the token reaches the handler, which unpickles the record: this
    is why the check must come first (and why the token is a secret)."""
    marker = tmp_path / "gcs-ran-it"
    with channel(ray.api._worker.gcs_address, cluster_token()) as ch:
        try:
            gcs_pb2_grpc.GcsStub(ch).RegisterActor(gcs_pb2.ActorRecordRequest(record=marker_pickle(marker)), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() != grpc.StatusCode.UNAUTHENTICATED
    assert marker.exists()


# -- the raylet ------------------------------------------------------------------------------------
@BAD_TOKENS
def test_raylet_refuses_and_runs_nothing(cluster, tmp_path, token):
    raylet = ray.api._worker.raylet_address
    marker = tmp_path / "raylet-ran-it"
    before = ray.available_resources()
    with channel(raylet, token) as ch:
        stub = raylet_pb2_grpc.RayletStub(ch)
        lease = raylet_pb2.LeaseRequest(lease_key="intruder", strategy=marker_pickle(marker), owner_worker_id="x" * 32)
        lease.resources.amounts["CPU"] = 1.0
        refused(lambda: stub.RequestWorkerLease(lease, timeout=10), token_shown=token)
        refused(lambda: stub.RegisterWorker(raylet_pb2.RegisterWorkerRequest(worker_id="y" * 32, pid=1, port=1),
                                            timeout=10), token_shown=token)
        refused(lambda: stub.Shutdown(common_pb2.Empty(), timeout=10), token_shown=token)
    assert not marker.exists(), "the raylet unpickled a request of an unauthenticated caller"
    assert ray.available_resources() == before, "the raylet leased resources to an unauthenticated caller"
    assert ray.get(double.remote(21)) == 42  # the raylet still serves (Shutdown was refused)


# -- core workers: the driver's and a worker's -----------------------------------------------------
@BAD_TOKENS
def test_driver_core_worker_refuses_and_runs_nothing(cluster, tmp_path, token):
    me = ray.api._worker
    marker = tmp_path / "driver-ran-it"
    ref = ray.put(b"mine")
    with channel(me.address, token) as ch:
        stub = core_worker_pb2_grpc.CoreWorkerStub(ch)
        refused(lambda: stub.AddBorrower(core_worker_pb2.BorrowRequest(object_ids=[ref.binary()], borrower="127.0.0.1:1"),
                                         timeout=10), token_shown=token)
        refused(lambda: stub.GetObject(core_worker_pb2.GetObjectRequest(object_id=ref.binary(), timeout=1), timeout=10),
                token_shown=token)
    refused(lambda: _push_tasks(me.address, token, marker), token_shown=token)
    assert not marker.exists(), "the driver unpickled a task of an unauthenticated caller"
    assert me.refs.counts(ref.binary())["borrowers"] == 0, "the driver recorded a borrower for an unauthenticated caller"


@BAD_TOKENS
def test_worker_core_worker_refuses_and_runs_nothing(cluster, tmp_path, token):
    holder = Holder.remote()
    address = _worker_address(holder)
    marker = tmp_path / "worker-ran-it"
    refused(lambda: _push_tasks(address, token, marker), token_shown=token)
    with channel(address, token) as ch:
        stub = core_worker_pb2_grpc.CoreWorkerStub(ch)
        refused(lambda: stub.Exit(core_worker_pb2.ExitRequest(), timeout=10), token_shown=token)
        refused(lambda: stub.AddBorrower(core_worker_pb2.BorrowRequest(object_ids=[b"\0" * 28], borrower="x"),
                                         timeout=10), token_shown=token)
    assert not marker.exists(), "a worker unpickled a task of an unauthenticated caller"
    assert ray.get(holder.pid.remote()) > 0  # Exit was refused: the actor still answers
    ray.kill(holder)


# -- the token itself -------------------------------------------------------------------------------
def test_with_the_token_the_cluster_works(cluster):
    assert ray.get([double.remote(i) for i in range(20)]) == [2 * i for i in range(20)]
    holder = Holder.remote()
    assert ray.get(holder.pid.remote()) > 0
    assert any(n["state"] == "ALIVE" for n in state.list_nodes())
    ray.kill(holder)


def test_token_file_is_private_and_nowhere_else(cluster):
    me = ray.api._worker
    token = cluster_token()
    assert len(token) >= 32
    path = Path(me.session_dir) / session.TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(os.stat(me.session_dir).st_mode) & 0o077 == 0, "the session folder is open to others"
    assert path.read_text().strip() == token
    holder = Holder.remote()
    ray.get([holder.pid.remote(), double.remote(1)])  # a worker and an actor worker run
    shown = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if token in " ".join(proc.info["cmdline"] or ()):
            shown.append(proc.info)
    assert not shown, f"the cluster token is in the command line of {shown}"
    logs = Path(me.session_dir) / "logs"
    leaked = [p.name for p in logs.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    assert not leaked, f"the cluster token is in the logs {leaked}"
    # a task's code does not find it in its environment
    assert ray.get(_env_token.remote()) is None
    ray.kill(holder)


@ray.remote
def _env_token() -> str | None:
    return os.environ.get(rpc.TOKEN_ENV)


def test_services_bind_the_node_ip_only(cluster):
    """Every listening socket of the node's processes and of this driver is on the node IP
    (127.0.0.1 by default; gRPC may show it IPv4-mapped), none on 0.0.0.0 or ::."""
    me = ray.api._worker
    holder = Holder.remote()
    ray.get(holder.pid.remote())  # an actor worker listens too
    ports = {int(a.rsplit(":", 1)[1]) for a in (me.gcs_address, me.raylet_address, me.address)}
    pids = {os.getpid()}
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports and conn.pid:
            pids.add(conn.pid)
    node_pids = set()
    for pid in list(pids):
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        node_pids |= {pid, *(c.pid for c in proc.children(recursive=True))}

    def listening() -> list[tuple[int, str, int]]:
        found = [(c.pid, c.laddr.ip, c.laddr.port) for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.pid in node_pids]
        return found if ports <= {port for _pid, _ip, port in found} else []

    found = wait_for(listening, what="the GCS, raylet and driver listening")
    assert len(found) >= 4, found  # GCS, raylet, this driver, the actor's worker
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for _pid, ip, _port in found), found
    ray.kill(holder)


@BAD_TOKENS
def test_object_manager_refuses_and_frees_nothing(cluster, token):
    """The object manager is served on the raylet's port, behind the same check: a caller
    without the token can neither free an object nor pull its bytes."""
    import numpy as np

    from microray.protocol import object_manager_pb2, object_manager_pb2_grpc
    from microray.raylet.object_manager import PULL_METHOD

    raylet = ray.api._worker.raylet_address
    big = np.arange(200_000, dtype=np.int64)  # beyond max_inline_object_bytes: in the node's store
    ref = ray.put(big)
    with channel(raylet, token) as ch:
        stub = object_manager_pb2_grpc.ObjectManagerStub(ch)
        refused(lambda: stub.FreeObjects(object_manager_pb2.FreeObjectsRequest(object_ids=[ref.binary()]), timeout=10),
                token_shown=token)
        refused(lambda: stub.FetchObject(object_manager_pb2.FetchObjectRequest(object_id=ref.binary()), timeout=10),
                token_shown=token)
        pull = ch.unary_stream(PULL_METHOD)
        request = object_manager_pb2.PullRequest(object_id=ref.binary(), chunk_size=1 << 20).SerializeToString()
        refused(lambda: list(pull(request, timeout=10)), token_shown=token)
    assert (ray.get(ref) == big).all()  # still in the store
