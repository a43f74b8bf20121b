"""Fixtures of the dashboard tests. ``dash``: one cluster with the ``web`` dashboard per
test module (with the workload of ``support.run_workload``), stopped when the module ends."""

from __future__ import annotations

import pytest

import microray as ray

from .support import Dash, run_workload, start_dashboard_cluster


@pytest.fixture(scope="module")
def dash() -> Dash:
    d = start_dashboard_cluster()
    try:
        run_workload(d)
        yield d
    finally:
        d.refs.clear()
        ray.shutdown()
