"""``/metrics`` read by what reads it in production: a real Prometheus server (the Debian
``prometheus`` package, which ``.ci/run`` installs) scrapes a head with the cluster token
as its bearer credentials, and PromQL over its HTTP API returns the tasks the test ran
and the bytes it put in the object store, and follows them when the objects are freed."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

import microray as ray
from microray.testing.servers import free_port

from .support import Dash, start_dashboard_cluster, wait_for

pytestmark = pytest.mark.slow

N_TASKS = 25
N_OBJECTS = 3
OBJECT_BYTES = 4 * 1024 * 1024
PROMETHEUS = shutil.which("prometheus")


@ray.remote
def inc(x: int) -> int:
    return x + 1


@pytest.fixture(scope="module")
def cluster() -> Iterator[Dash]:
    d = start_dashboard_cluster()
    try:
        yield d
    finally:
        d.refs.clear()
        ray.shutdown()


@pytest.fixture
def prometheus(cluster: Dash, tmp_path: Path) -> Iterator[str]:
    if PROMETHEUS is None:
        pytest.skip("no prometheus binary on PATH: `apt-get install -y prometheus` (.ci/run installs it)")
    target = urllib.parse.urlsplit(cluster.url).netloc
    data_dir = tmp_path / "prometheus-data"
    config = tmp_path / "prometheus.yml"
    config.write_text(textwrap.dedent(f"""
        global:
          scrape_interval: 1s
          scrape_timeout: 1s
        scrape_configs:
          - job_name: microray
            metrics_path: /metrics
            authorization:
              type: Bearer
              credentials: {json.dumps(cluster.token)}
            static_configs:
              - targets: [{json.dumps(target)}]
    """))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _query(url, 'up{job="microray"}') == [1.0], timeout=60,
                 what="Prometheus to scrape the head's /metrics successfully")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def _query(base: str, promql: str) -> list[float]:
    """The values of an instant PromQL query over Prometheus's HTTP API (``/api/v1/query``)."""
    with urllib.request.urlopen(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}",
                                timeout=10) as resp:
        reply: dict[str, Any] = json.loads(resp.read())
    assert reply["status"] == "success", reply
    return [float(r["value"][1]) for r in reply["data"]["result"]]


def test_prometheus_scrapes_tasks_and_object_store(cluster: Dash, prometheus: str) -> None:
    assert ray.get([inc.remote(i) for i in range(N_TASKS)]) == [i + 1 for i in range(N_TASKS)]
    refs = [ray.put(bytes([i]) * OBJECT_BYTES) for i in range(N_OBJECTS)]
    stored = N_OBJECTS * OBJECT_BYTES
    # what the head reports first (task events and heartbeats arrive in batches) ...
    wait_for(lambda: cluster.get_json("/api/v0/tasks?state=FINISHED")["total"] == N_TASKS,
             timeout=60, what="the GCS task history to hold the tasks")
    wait_for(lambda: cluster.get_json("/api/v0/nodes")["nodes"][0]["object_store_used"] >= stored,
             timeout=60, what="the node table to show the stored objects")
    # ... then what Prometheus scraped from it
    wait_for(lambda: _query(prometheus, 'sum(microray_tasks{state="FINISHED"})') == [float(N_TASKS)],
             timeout=60, what=f"Prometheus to see {N_TASKS} finished tasks")
    used = wait_for(lambda: (v := _query(prometheus, "sum(microray_object_store_used_bytes)")) and v[0] >= stored
                    and v, timeout=60, what="Prometheus to see the stored objects")
    assert stored <= used[0] < stored + 1024 * 1024, used
    capacity = _query(prometheus, "sum(microray_object_store_capacity_bytes)")
    assert capacity and capacity[0] >= used[0]
    assert _query(prometheus, 'microray_nodes{state="ALIVE"}') == [1.0]
    # freed objects leave the store, and the next scrapes say so
    del refs
    wait_for(lambda: (v := _query(prometheus, "sum(microray_object_store_used_bytes)")) and v[0] < OBJECT_BYTES,
             timeout=60, what="Prometheus to see the object store emptied")
    assert _query(prometheus, 'sum(microray_tasks{state="FINISHED"})') == [float(N_TASKS)]
