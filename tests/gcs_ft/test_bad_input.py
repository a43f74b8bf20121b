"""Bad store settings fail fast and clearly: an unreachable server (with the URL and the
connection error, within seconds, leaving no process behind), a store holding another
schema version, an unknown option."""

from __future__ import annotations

import time

import pytest

import microray as ray
from microray import node
from microray.exceptions import ConfigError, RaySystemError
from microray.gcs.server import SCHEMA_VERSION

from .helpers import assert_no_leaks, cli, processes_with_env, raw_put, schema_key, wait_for

pytestmark = pytest.mark.slow  # chaos, browser, real-server and heavy-I/O tests: not in `tox -e fast`

UNREACHABLE = {
    "redis": ("url", "redis://127.0.0.1:1/0"),
    "etcd": ("url", "http://127.0.0.1:1"),
}


@pytest.mark.parametrize("kind", ["redis", "etcd"])
def test_unreachable_store_fails_init_within_seconds(make_cluster, kind):
    option, url = UNREACHABLE[kind]
    t0 = time.monotonic()
    with pytest.raises(RaySystemError) as info:
        make_cluster(gcs_store=kind, gcs_store_options={option: url})
    elapsed = time.monotonic() - t0
    message = str(info.value)
    assert elapsed < 15, f"init took {elapsed:.1f}s to fail"
    assert url in message, message
    assert "unavailable" in message and ("refused" in message.lower() or "connect" in message.lower()), message
    assert not ray.is_initialized() and ray.api._head is None
    assert_no_leaks(timeout=10)


def test_unreachable_store_fails_cli_start(cli_root):
    t0 = time.monotonic()
    result = cli(["start", "--head", "--gcs-store=redis", "--gcs-store-option", "url=redis://127.0.0.1:1/0",
                  "--num-cpus", "1"], cli_root.env)
    elapsed = time.monotonic() - t0
    assert result.returncode != 0, result.stdout
    assert "redis://127.0.0.1:1/0" in result.stderr and "refused" in result.stderr.lower(), result.stderr
    assert elapsed < 20, f"'microray start' took {elapsed:.1f}s to fail"
    assert node.current_cluster(cli_root.root) is None
    wait_for(lambda: not processes_with_env("MICRORAY_SESSION_ROOT", cli_root.root), timeout=10,
             what="no process of the head that failed to start")


@pytest.mark.parametrize("stored", [99, 1])  # a newer microray's namespace; one with pickled actor records
def test_store_with_another_schema_version_is_refused(make_cluster, store, stored):
    kind = store.name
    raw_put(kind, store.server.url, schema_key(kind, store.options["namespace"]), str(stored).encode())
    with pytest.raises(RaySystemError) as info:
        make_cluster(gcs_store=kind, gcs_store_options=store.options)
    message = str(info.value)
    assert f"holds GCS schema version {stored}," in message, message
    assert f"uses schema version {SCHEMA_VERSION};" in message, message
    assert store.options["namespace"] in message, message
    assert not ray.is_initialized()
    assert_no_leaks(timeout=10)


@pytest.mark.parametrize("kind", ["redis", "etcd"])
def test_unknown_store_option_is_rejected_naming_it(make_cluster, cli_root, kind):
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as info:
        make_cluster(gcs_store=kind, gcs_store_options={"urll": "x"})
    assert "urll" in str(info.value), str(info.value)
    assert time.monotonic() - t0 < 5
    assert ray.api._head is None
    result = cli(["start", "--head", "--gcs-store", kind, "--gcs-store-option", "namespcae=x"], cli_root.env)
    assert result.returncode != 0 and "namespcae" in result.stderr, result.stderr
    assert node.current_cluster(cli_root.root) is None
