"""The kernel decides by a backend's declared capabilities, never by its name.

Two GCS stores built on the in-memory store, neither called ``memory``: ``keeper``
declares ``persistence``, ``volatile`` does not. What the kernel does with a store
(run a restarted head on the recorded config, allow ``microray restart-gcs``) follows
the capability.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from microray import cli, node, session
from microray.backends.gcs.memory import MemoryGcsStore
from microray.config import Config
from microray.gcs.server import T_META, cluster_config
from microray.hookspecs import hookimpl
from microray.plugin_manager import get_plugin_manager, reset_plugin_manager
from microray.registrations import GcsStoreRegistration


class _Stores:
    @hookimpl
    def microray_gcs_stores(self) -> list[GcsStoreRegistration]:
        return [
            GcsStoreRegistration(name="keeper", factory=MemoryGcsStore, capabilities=frozenset({"persistence"})),
            GcsStoreRegistration(name="volatile", factory=MemoryGcsStore),
        ]


@pytest.fixture
def custom_stores() -> Iterator[None]:
    reset_plugin_manager()
    get_plugin_manager().register(_Stores(), name="custom-gcs-stores")
    yield
    reset_plugin_manager()


def _config_after_restart(store_name: str) -> Config:
    """A head on ``store_name`` that finds a config recorded by an earlier head."""

    async def run() -> Config:
        store = MemoryGcsStore()
        recorded = Config(gcs_store=store_name, num_cpus=7)
        await store.put(T_META, b"config", recorded.to_json().encode())
        return await cluster_config(store, Config(gcs_store=store_name, num_cpus=3))

    return asyncio.run(run())


def test_restarted_head_runs_recorded_config_only_with_persistence(custom_stores: None) -> None:
    assert _config_after_restart("keeper").num_cpus == 7
    assert _config_after_restart("volatile").num_cpus == 3


def test_restart_gcs_refused_without_persistence(
    custom_stores: None, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    handle = node.NodeHandle(
        gcs_address="127.0.0.1:1", raylet_address="127.0.0.1:2", node_id="n", session_dir=str(tmp_path),
        store_namespace="ns", pids={"gcs": 0},
        gcs_argv=["--config-file", session.write_node_config(str(tmp_path), Config(gcs_store="volatile"))],
    )
    monkeypatch.setattr(node, "current_cluster", lambda root: handle)
    result = CliRunner().invoke(cli.cli, ["restart-gcs"])
    assert result.exit_code != 0
    assert "'volatile' is not persistent" in result.output
    assert "persistence" in result.output
