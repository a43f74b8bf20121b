"""Several clusters on one Redis / etcd: each ``namespace`` option is a cluster of its own,
and two clusters running at the same time never see each other's keys."""

from __future__ import annotations

import pytest

import json
import os

import common_actors
import microray as ray
from microray.protocol import gcs_pb2
from microray.util.state import list_actors, list_jobs, list_nodes

from .helpers import raw_keys, read_marker, start_driver, store_prefix


pytestmark = pytest.mark.slow  # chaos, browser, real-server and heavy-I/O tests: not in `tox -e fast`

OTHER_CLUSTER = """
import json
from microray.protocol import gcs_pb2

opts = json.loads(os.environ["FT_OPTS"])
ray.init(num_cpus=1, include_dashboard=False, namespace="tenant", gcs_store=os.environ["FT_STORE"],
         gcs_store_options=opts)
w = ray.api._worker

from tests.common_actors import Holder as _Holder
Holder = ray.remote(_Holder)

def kv_get(key):
    r = w.call(w.gcs.KvGet, gcs_pb2.KvGetRequest(ns="tenant_kv", key=key))
    return r.value.decode() if r.found else None

# what the first cluster wrote is not here
try:
    ray.get_actor("shared-name")
    print("SEEN_ACTOR", flush=True)
except ValueError:
    pass
seen_kv = kv_get(b"shared-key")
# the same names are free in this cluster
h = Holder.options(name="shared-name", lifetime="detached").remote("B")
assert ray.get(h.get.remote(), timeout=60) == "B"
w.call(w.gcs.KvPut, gcs_pb2.KvPutRequest(ns="tenant_kv", key=b"shared-key", value=b"B"))
print("READY", json.dumps({"kv": seen_kv, "job": w.job_id, "node": w.node_id, "cluster": w.cluster_id,
                           "actor": h._actor_id}), flush=True)
sys.stdin.readline()  # the test checks the first cluster while this one runs
assert ray.get(ray.get_actor("shared-name").get.remote(), timeout=60) == "B"
assert kv_get(b"shared-key") == "B"
print("DONE", flush=True)
ray.shutdown()
"""


Holder = ray.remote(common_actors.Holder)


def _kv(worker, key: bytes) -> str | None:
    reply = worker.call(worker.gcs.KvGet, gcs_pb2.KvGetRequest(ns="tenant_kv", key=key))
    return reply.value.decode() if reply.found else None


def test_two_clusters_on_one_server_never_see_each_other(make_cluster, store):
    opts_a, opts_b = store.fresh(), store.fresh()
    worker = make_cluster(gcs_store=store.name, gcs_store_options=opts_a, namespace="tenant")
    holder = Holder.options(name="shared-name", lifetime="detached").remote("A")
    assert ray.get(holder.get.remote(), timeout=60) == "A"
    worker.call(worker.gcs.KvPut, gcs_pb2.KvPutRequest(ns="tenant_kv", key=b"shared-key", value=b"A"))

    other = start_driver(OTHER_CLUSTER, env={"FT_STORE": store.name, "FT_OPTS": json.dumps(opts_b)})
    try:
        seen = json.loads(read_marker(other, "READY", timeout=120))
        # cluster B saw none of A's data, and wrote its own under the same names
        assert seen["kv"] is None
        assert seen["cluster"] != worker.cluster_id
        # ... which A does not see either, while both run
        assert _kv(worker, b"shared-key") == "A"
        found = ray.get_actor("shared-name")
        assert found._actor_id == holder._actor_id != seen["actor"]
        assert ray.get(found.get.remote(), timeout=60) == "A"
        assert seen["actor"] not in {a["actor_id"] for a in list_actors()}
        assert seen["node"] not in {n["node_id"] for n in list_nodes()}
        assert [n["node_id"] for n in list_nodes()] == [worker.node_id]
        jobs = list_jobs()
        assert [j["driver_pid"] for j in jobs] == [os.getpid()]
        assert seen["job"] == jobs[0]["job_id"]  # each cluster counts its jobs from 1
        other.stdin.write("go\n")
        other.stdin.flush()
        read_marker(other, "DONE", timeout=60)
        assert other.wait(60) == 0, other.stderr.read()[-3000:]
    finally:
        if other.poll() is None:
            other.kill()
            other.wait(10)
        other.stdout.close()
        other.stderr.close()
        other.stdin.close()
    # on the server: each cluster's keys under its own prefix, none outside the two
    keys_a = raw_keys(store.name, store.server.url, store_prefix(store.name, opts_a["namespace"]))
    keys_b = raw_keys(store.name, store.server.url, store_prefix(store.name, opts_b["namespace"]))
    assert keys_a and keys_b and not set(keys_a) & set(keys_b)
    # after B is gone its data stays in its namespace, A's stays in A's
    assert _kv(worker, b"shared-key") == "A"
    assert ray.get(ray.get_actor("shared-name").get.remote(), timeout=60) == "A"

