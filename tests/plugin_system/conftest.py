"""Fixtures for the plugin-system tests (helpers live in ``thirdparty_dists``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from microray.plugin_manager import reset_plugin_manager
from thirdparty_dists import Sites, build_sites


@pytest.fixture(scope="session")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Sites:
    """Installed test distributions (built once per session)."""
    return build_sites(tmp_path_factory.mktemp("thirdparty"))


@pytest.fixture
def fresh_plugin_manager() -> Iterator[None]:
    """Forget the process-wide plugin manager before and after the test."""
    reset_plugin_manager()
    yield
    reset_plugin_manager()
