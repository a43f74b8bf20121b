"""TLS (the ``tls`` config key): a cluster with a self-signed certificate runs tasks and
actors; a plaintext client is refused even with the right token, and with
``require_client_cert`` a client without a certificate is refused too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

import microray as ray
from microray import rpc
from microray.protocol import common_pb2, gcs_pb2_grpc

from .conftest import channel, cluster_token

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the test certificate"),
]


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> dict[str, str]:
    """A self-signed certificate for 127.0.0.1 / localhost, made here with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    key, crt = folder / "node.key", folder / "node.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=60,
    )
    return {"cert_file": str(crt), "key_file": str(key), "ca_file": str(crt)}


@ray.remote
def square(x: int) -> int:
    return x * x


@ray.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self) -> int:
        self.n += 1
        return self.n


def _gcs_nodes(ch) -> int:
    return len(gcs_pb2_grpc.GcsStub(ch).GetAllNodes(common_pb2.Empty(), timeout=10).nodes)


def test_a_tls_cluster_runs_tasks_and_refuses_plaintext(make_cluster, cert):
    make_cluster(num_cpus=2, tls=cert)
    assert ray.get([square.remote(i) for i in range(10)]) == [i * i for i in range(10)]
    counter = Counter.remote()
    assert ray.get([counter.add.remote() for _ in range(3)]) == [1, 2, 3]
    me = ray.api._worker
    token = cluster_token()
    with rpc.blocking_channel(me.gcs_address, rpc.Credentials(token, cert)) as ch:
        assert _gcs_nodes(ch) == 1  # TLS and the token: served
    for address in (me.gcs_address, me.raylet_address, me.address):
        with channel(address, token) as ch:  # plaintext, with the right token
            with pytest.raises(grpc.RpcError) as info:
                _gcs_nodes(ch)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    with rpc.blocking_channel(me.gcs_address, rpc.Credentials("wrong-token", cert)) as ch:
        with pytest.raises(grpc.RpcError) as info:
            _gcs_nodes(ch)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # TLS does not replace the token


def test_require_client_cert_refuses_a_client_without_one(make_cluster, cert):
    make_cluster(num_cpus=1, tls={**cert, "require_client_cert": True})
    assert ray.get(square.remote(7)) == 49
    me = ray.api._worker
    server_only = {k: v for k, v in cert.items() if k != "require_client_cert"}
    with rpc.blocking_channel(me.gcs_address, rpc.Credentials(cluster_token(), server_only)) as ch:
        with pytest.raises(grpc.RpcError) as info:
            _gcs_nodes(ch)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    with rpc.blocking_channel(me.gcs_address, me.credentials) as ch:
        assert _gcs_nodes(ch) == 1


def test_tls_files_that_cannot_be_read_are_named(tmp_path, cert):
    creds = rpc.Credentials("t", {**cert, "key_file": str(tmp_path / "missing.key")})
    with pytest.raises(OSError, match="tls.key_file .*missing.key"):
        creds.server_credentials()
