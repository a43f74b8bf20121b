"""A head on a store that needs credentials and TLS: etcd with TLS, a client certificate and
user/password auth, and Redis over TLS (``rediss://``) with a password. The cluster runs, the
password shows nowhere (process command lines, the GCS's config answer), and a GCS killed and
restarted on the same store finds its records."""

from __future__ import annotations

import json
import uuid

import psutil
import pytest

import microray as ray
from microray import node

from .helpers import kill9
from .test_head_restart import Counter, inc
from .test_secrets import cluster_config

pytestmark = pytest.mark.slow


def _options(request, kind: str) -> tuple[dict, str]:
    namespace = f"sec-{uuid.uuid4().hex[:8]}"
    if kind == "etcd":
        server = request.getfixturevalue("etcd_secure_server").ensure_running()
        user, password = server.auth
        certs = server.certs
        return {"url": server.url, "namespace": namespace, "user": user, "password": password,
                "ca_file": certs.ca, "cert_file": certs.client_cert, "key_file": certs.client_key}, password  # fmt: skip
    server = request.getfixturevalue("redis_secure_server").ensure_running()
    return {"url": server.plain_url, "password": server.password, "ca_file": server.certs.ca,
            "namespace": namespace}, server.password  # fmt: skip


def _command_lines_with(secret: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if secret in line:
            found.append(f"{proc.info['pid']}: {line[:100]}")
    return found


@pytest.mark.parametrize("kind", ["etcd", "redis"])
def test_head_on_a_tls_store_with_a_password(request, kind, make_cluster):
    options, password = _options(request, kind)
    worker = make_cluster(gcs_store=kind, gcs_store_options=options, namespace="sec")
    head = ray.api._head
    keeper = Counter.options(name="keeper", lifetime="detached").remote(10)
    assert ray.get([keeper.incr.remote(), inc.remote(1)], timeout=60) == [11, 2]

    shown = json.loads(cluster_config(worker.gcs_address, worker.credentials.token))["gcs_store_options"]
    assert shown["password"] == "***" and password not in json.dumps(shown)
    assert _command_lines_with(password) == []

    kill9(head.pids["gcs"])
    node.restart_gcs(head)
    assert _command_lines_with(password) == []
    found = ray.get_actor("keeper", namespace="sec")
    assert found._actor_id == keeper._actor_id
    assert ray.get(found.incr.remote(), timeout=60) == 12
    assert ray.get([inc.remote(i) for i in range(20)], timeout=60) == list(range(1, 21))
