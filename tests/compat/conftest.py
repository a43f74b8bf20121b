"""Fixtures for the Ray-compatibility tests: the integration tests' real embedded
clusters (``cluster``, ``make_cluster``, ``no_cluster``), with their leak checks.

These tests check behaviour Ray documents, one point each, with our own programs."""

from __future__ import annotations

from integration.conftest import (  # noqa: F401 -- fixtures, shared with tests/integration
    _module_cluster_guard,
    _outside_processes,
    cluster,
    make_cluster,
    no_cluster,
)
