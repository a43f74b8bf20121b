"""The dashboard starts on demand: the head listens on its port from the start, but the
dashboard process imports its web server only at the first connection; the charts'
history is the GCS's, so it covers the time before that."""

from __future__ import annotations

import time

import pytest

import microray as ray
from microray.util.state import StateClient

from .support import Dash, start_dashboard_cluster, wait_for


def _serving(pid: int) -> bool:
    """Has the process loaded aiohttp (a compiled extension of it shows in its maps)?"""
    with open(f"/proc/{pid}/maps") as f:
        return "/aiohttp/" in f.read()


@pytest.fixture
def idle_head():
    ray.shutdown()
    ctx = ray.init(num_cpus=2, dashboard="web", dashboard_port=0)
    yield ctx
    ray.shutdown()


def test_the_dashboard_waits_for_its_first_connection_and_misses_no_history(idle_head):
    pid = ray.api._head.pids["dashboard"]

    @ray.remote
    def one() -> int:
        return 1

    assert sum(ray.get([one.remote() for _ in range(20)], timeout=60)) == 20
    gcs = StateClient(ray.api._worker.gcs_address)
    try:
        # the GCS samples the cluster itself, the dashboard never having run
        wait_for(lambda: gcs.timeseries()["samples"][-1]["finished_total"] >= 20, what="the GCS to sample the tasks")
    finally:
        gcs.close()
    assert not _serving(pid), "the dashboard imported its web server with nobody connected"
    started_at = time.time()
    d = Dash(url=f"http://{idle_head.dashboard_url}", token="", session_dir="", context=idle_head)
    data = wait_for(lambda: d.get_json("/api/v0/timeseries"), what="the first page")  # starts it
    assert _serving(pid)
    assert ray.api._head.pids["dashboard"] == pid  # the same process, now serving
    before = [s for s in data["samples"] if s["time"] < started_at]
    assert before, "no sample from before the dashboard started"
    assert max(s["finished_total"] for s in data["samples"]) >= 20
    assert data["period_s"] == pytest.approx(1.0)


def test_dashboard_on_demand_false_serves_without_a_connection():
    ray.shutdown()
    try:
        ray.init(num_cpus=2, dashboard="web", dashboard_port=0, dashboard_on_demand=False)
        pid = ray.api._head.pids["dashboard"]
        wait_for(lambda: _serving(pid), timeout=60, what="the dashboard to load its server unasked")
    finally:
        ray.shutdown()


def test_an_unknown_dashboard_option_still_fails_at_init():
    ray.shutdown()
    with pytest.raises(Exception) as info:
        ray.init(num_cpus=2, dashboard="web", dashboard_options={"sample_period_s": 2.0})
    assert "sample_period_s" in str(info.value)
    assert not ray.is_initialized()


def test_started_dashboard_fixture_serves():
    d = start_dashboard_cluster()
    try:
        assert _serving(ray.api._head.pids["dashboard"])
        assert d.get_json("/api/v0/cluster")["nodes"]["alive"] == 1
    finally:
        ray.shutdown()
