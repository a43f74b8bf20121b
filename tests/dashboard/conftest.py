"""Fixtures of the dashboard tests. ``dash``: one cluster with the ``web`` dashboard per
test module (with the workload of ``support.run_workload``), stopped when the module ends."""

from __future__ import annotations

from .support import dash  # noqa: F401 -- the fixture
