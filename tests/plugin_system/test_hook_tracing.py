"""Hooks are called through pluggy's call path: hook tracing sees every one of them,
and a raising observer neither stops the other observers nor reaches the caller."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from microray.hookspecs import hookimpl
from microray.plugin_manager import MicrorayPluginManager


class _Recorder:
    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []

    @hookimpl
    def microray_node_added(self, node: dict[str, Any]) -> None:
        self.nodes.append(node)


class _Raiser:
    @hookimpl
    def microray_node_added(self, node: dict[str, Any]) -> None:
        raise RuntimeError("observer broke")


def test_trace_shows_registration_and_observer_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICRORAY_TRACE_HOOKS", "1")
    pm = MicrorayPluginManager(autoload=False)
    recorder = _Recorder()
    pm.register(_Raiser(), name="raiser")
    pm.register(recorder, name="recorder")
    with capture_logs() as logs:
        assert "memory" in pm.names("gcs_store")  # builds the registry: registration hooks
        pm.notify("microray_node_added", node={"node_id": "n1"})
    traced = [e for e in logs if e["event"] == "hook_called"]
    hooks = {e["hook"] for e in traced}
    assert {"microray_gcs_stores", "microray_node_added"} <= hooks, hooks
    observer_calls = {tuple(e["plugins"]): e["raised"] for e in traced if e["hook"] == "microray_node_added"}
    assert observer_calls == {("raiser",): True, ("recorder",): False}
    # the raising observer was logged, and the other one still heard of the node
    assert recorder.nodes == [{"node_id": "n1"}]
    failed = [e for e in logs if e["event"] == "observer_failed"]
    assert [e["plugin"] for e in failed] == ["raiser"]


def test_no_trace_without_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MICRORAY_TRACE_HOOKS", raising=False)
    pm = MicrorayPluginManager(autoload=False)
    with capture_logs() as logs:
        pm.names("gcs_store")
        pm.notify("microray_node_added", node={"node_id": "n1"})
    assert not [e for e in logs if e["event"] == "hook_called"]


def test_observer_registered_later_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-plugin callers are rebuilt when the set of implementations changes."""
    pm = MicrorayPluginManager(autoload=False)
    first, second = _Recorder(), _Recorder()
    pm.register(first, name="first")
    pm.notify("microray_node_added", node={"n": 1})
    pm.register(second, name="second")
    pm.notify("microray_node_added", node={"n": 2})
    assert first.nodes == [{"n": 1}, {"n": 2}]
    assert second.nodes == [{"n": 2}]
