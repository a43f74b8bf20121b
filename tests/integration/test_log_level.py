"""The resolved log_level holds in every process of the cluster: driver, GCS, raylet
and workers write no event below it to their logs."""

from __future__ import annotations


import pytest
import structlog

import microray as ray
from microray.testing.event_files import read_log_records
from microray.testing.processes import wait_for

pytestmark = pytest.mark.timeout(120)


@ray.remote
def log_both(tag: str) -> int:
    log = structlog.get_logger("user_task")
    log.info("user_info_event", tag=tag)
    log.warning("user_warning_event", tag=tag)
    return 1


def test_log_level_warning_applies_to_workers_gcs_and_raylet(make_cluster):
    info = make_cluster(num_cpus=1, log_level="warning")
    assert ray.get(log_both.remote("probe-1"), timeout=60) == 1

    def worker_log_with_the_warning():
        for path in info.logs.glob("worker-*.log"):
            records = read_log_records(path)
            if any(r.get("event") == "user_warning_event" and r.get("tag") == "probe-1" for r in records):
                return records
        return None

    records = wait_for(worker_log_with_the_warning, timeout=30, what="the task's warning in its worker's log")
    events = {r.get("event") for r in records}
    assert "user_info_event" not in events
    assert "worker_started" not in events  # the worker's own info events are held back too
    for pattern in ("worker-*.log", "raylet-*.log", "gcs.log"):
        for path in info.logs.glob(pattern):
            below = [r for r in read_log_records(path) if r.get("level") in ("debug", "info")]
            assert not below, f"{path.name} has events below 'warning': {below[:3]}"


def test_log_level_info_keeps_info_events(make_cluster):
    info = make_cluster(num_cpus=1)
    assert ray.get(log_both.remote("probe-2"), timeout=60) == 1

    def info_event_logged():
        for path in info.logs.glob("worker-*.log"):
            if any(r.get("event") == "user_info_event" and r.get("tag") == "probe-2" for r in read_log_records(path)):
                return True
        return False

    wait_for(info_event_logged, timeout=30, what="the task's info event in its worker's log")
