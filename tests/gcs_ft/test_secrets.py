"""A Redis password stays secret: a real ``redis-server`` that requires one, a cluster on
it, and then the password must be absent from every process's command line (also after
``microray restart-gcs``), from the GCS's answers, from the logs and every session file
but the node's config file (mode 0600, deleted when the node stops), and from what the
GCS recorded in Redis; session folders are 0700, their records and logs 0600."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

import psutil
import pytest

import microray as ray
from microray import rpc, session
from microray.protocol import common_pb2, gcs_pb2_grpc
from microray.testing.servers import RedisServer, running

from .helpers import cli, run_driver, wait_for

pytestmark = pytest.mark.slow  # real-server tests: not in `tox -e fast`

PASSWORD = f"pw-{uuid.uuid4().hex}"
CONFIG_FILE = "config.json"  # the one session file that holds secrets


@pytest.fixture(scope="module")
def locked_redis():
    """A real redis-server that requires ``PASSWORD`` (AUTH)."""
    with running(RedisServer(password=PASSWORD)) as server:
        yield server


def url_without_password(server: RedisServer) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def command_lines_with_password() -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if PASSWORD in line:
            found.append(f"{proc.info['pid']}: {line[:100]}")
    return found


def cluster_config(gcs_address: str, token: str) -> str:
    with rpc.blocking_channel(gcs_address, rpc.Credentials(token)) as channel:
        return gcs_pb2_grpc.GcsStub(channel).GetClusterConfig(common_pb2.Empty(), timeout=30).config_json


def check_session(session_dir: str, root: str) -> None:
    """Modes of the session root, folder and files; the password only in config.json."""
    assert mode(root) == 0o700, oct(mode(root))
    assert os.stat(root).st_uid == os.getuid()
    assert mode(session_dir) == 0o700, oct(mode(session_dir))
    holders = []
    for folder, dirs, files in os.walk(session_dir):
        for name in dirs:
            if name in ("logs", "spill"):
                assert mode(os.path.join(folder, name)) == 0o700, (folder, name)
        for name in files:
            path = os.path.join(folder, name)
            if os.path.dirname(path) == os.path.join(session_dir, "logs") or name in ("address.json", CONFIG_FILE):
                assert mode(path) == 0o600, (path, oct(mode(path)))
            with open(path, "rb") as f:
                if PASSWORD.encode() in f.read():
                    holders.append(os.path.relpath(path, session_dir))
    assert holders in ([], [CONFIG_FILE]), f"the password is in {holders}"
    logs = list(Path(session_dir, "logs").glob("*.log"))
    assert any(p.name.startswith("gcs") for p in logs) and any(p.name.startswith("raylet") for p in logs), logs


def check_store(server: RedisServer, namespace: str) -> None:
    import redis

    with redis.Redis.from_url(server.url) as client:
        keys = list(client.scan_iter(match=f"{namespace}:*"))
        assert keys
        for key in keys:
            kind = client.type(key)
            values = [client.get(key)] if kind == b"string" else list(client.hgetall(key).values()) if kind == b"hash" else []
            for value in values:
                assert PASSWORD.encode() not in (value or b""), key


@pytest.mark.parametrize("given", ["in-url", "option"])
def test_embedded_cluster_keeps_the_password_secret(given, locked_redis, make_cluster):
    namespace = f"sec-{uuid.uuid4().hex[:8]}"
    if given == "in-url":
        options = {"url": locked_redis.url, "namespace": namespace}
    else:
        options = {"url": url_without_password(locked_redis), "password": PASSWORD, "namespace": namespace}
    worker = make_cluster(gcs_store="redis", gcs_store_options=options)

    @ray.remote
    def square(x):
        return x * x

    assert ray.get([square.remote(i) for i in range(10)], timeout=60) == [i * i for i in range(10)]
    answer = cluster_config(worker.gcs_address, worker.credentials.token)
    assert PASSWORD not in answer
    shown = json.loads(answer)["gcs_store_options"]
    if given == "in-url":
        assert shown["url"] == f"redis://:***@127.0.0.1:{locked_redis.port}/0"
    else:
        assert shown["password"] == "***" and shown["url"] == url_without_password(locked_redis)
    assert PASSWORD not in worker.config.to_json()  # the driver's copy came from the raylet
    assert command_lines_with_password() == []
    check_session(worker.session_dir, os.path.dirname(worker.session_dir))
    check_store(locked_redis, namespace)
    session_dir = worker.session_dir
    ray.shutdown()
    assert not os.path.exists(os.path.join(session_dir, CONFIG_FILE))


def test_started_head_keeps_the_password_secret_across_restart_gcs(locked_redis, cli_root):
    namespace = f"sec-{uuid.uuid4().hex[:8]}"
    env = {**cli_root.env, "MICRORAY_GCS_STORE": "redis",
           "MICRORAY_GCS_STORE_OPTIONS": json.dumps({"url": locked_redis.url, "namespace": namespace})}
    started = cli(["start", "--head", "--dashboard", "none"], env)
    assert started.returncode == 0, started.stderr
    handle = cli_root.handle()
    assert command_lines_with_password() == []
    run_driver("""
ray.init(address="auto")
@ray.remote
def square(x):
    return x * x
assert ray.get(square.remote(9), timeout=60) == 81
""", env=env)
    old_gcs = handle.pids["gcs"]
    restarted = cli(["restart-gcs"], env)
    assert restarted.returncode == 0, restarted.stderr
    handle = cli_root.handle()
    assert handle.pids["gcs"] != old_gcs
    assert command_lines_with_password() == []
    assert PASSWORD not in cluster_config(handle.gcs_address, session.read_token(handle.session_dir))
    record = Path(cli_root.root) / "current_cluster"
    assert mode(record) == 0o600 and PASSWORD not in record.read_text()
    check_session(handle.session_dir, cli_root.root)
    check_store(locked_redis, namespace)
    for out in (started, restarted):
        assert PASSWORD not in out.stdout + out.stderr
    stopped = cli(["stop"], env)
    assert stopped.returncode == 0, stopped.stderr
    wait_for(lambda: not os.path.exists(os.path.join(handle.session_dir, CONFIG_FILE)), timeout=10,
             what="the config file to go")


def test_password_given_as_a_flag_stays_out_of_the_node_processes(locked_redis, cli_root):
    """The ``microray start`` command line is the user's, but its node processes, which
    outlive it, must not carry it (they are then started as fresh interpreters)."""
    namespace = f"sec-{uuid.uuid4().hex[:8]}"
    started = cli(["start", "--head", "--gcs-store", "redis", "--dashboard", "none",
                   "--gcs-store-option", f"url={locked_redis.url}", "--gcs-store-option", f"namespace={namespace}"],
                  cli_root.env)
    assert started.returncode == 0, started.stderr
    assert "visible to other users" in started.stderr
    assert PASSWORD not in started.stderr + started.stdout
    handle = cli_root.handle()
    assert handle is not None
    assert command_lines_with_password() == []


def test_bad_secret_options_are_refused_without_showing_them(locked_redis):
    from microray import config as config_mod
    from microray.api import _check_backends
    from microray.exceptions import ConfigError

    cfg = config_mod.resolve({"gcs_store": "redis", "gcs_store_options": {"url": locked_redis.url, "password": 5}})
    with pytest.raises(ConfigError) as err:
        _check_backends(cfg)
    assert "gcs_store_options.password" in str(err.value) and "***" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config_mod.resolve({}, environ={"MICRORAY_GCS_STORE_OPTIONS": f"url={locked_redis.url}"})
    assert PASSWORD not in str(err.value) and "gcs_store_options" in str(err.value)
