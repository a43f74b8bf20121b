"""An unknown backend name is ONE ``PluginError`` that says everything useful."""

from __future__ import annotations

import re
from typing import Any

import pytest

from thirdparty_dists import Sites, run_probe
from microray.exceptions import PluginError
from microray.plugin_manager import MicrorayPluginManager


@pytest.fixture(scope="module")
def typo(sites: Sites) -> dict[str, Any]:
    """Select 'third_party' misspelt, with a broken third-party plugin installed."""
    return run_probe("scheduling_policy", "third_partty", paths=[sites.main])


def test_it_is_one_plugin_error(typo: dict[str, Any]) -> None:
    assert typo["selected"] is None
    assert typo["error_type"] == "PluginError"
    assert typo["error"].count("unknown ") == 1


def test_names_the_family_and_the_name(typo: dict[str, Any]) -> None:
    assert typo["error"].startswith("unknown scheduling_policy 'third_partty'")


def test_lists_the_available_names(typo: dict[str, Any]) -> None:
    match = re.search(r"available: ([^;]*);", typo["error"])
    assert match, typo["error"]
    assert match.group(1).split(", ") == ["hybrid", "random", "same_ep_name", "spread", "third_party"]


def test_suggests_the_closest_name(typo: dict[str, Any]) -> None:
    assert "did you mean 'third_party'?" in typo["error"]


def test_names_failed_entry_points_with_their_exception(typo: dict[str, Any]) -> None:
    assert (
        "plugin 'broken' from entry point 'broken' (mr-broken-plugin) failed to load: "
        "ImportError: mr_broken_plugin needs libfrobnicate, which is not installed"
    ) in typo["error"]
    assert "plugin 'raising_hook' from entry point 'raising_hook' (mr-raising-hook)" in typo["error"]


def test_no_suggestion_when_nothing_is_close(sites: Sites) -> None:
    report = run_probe("dashboard", "zzzzzz", paths=[sites.main])
    assert report["error"].startswith("unknown dashboard 'zzzzzz'; available: ")
    assert "did you mean" not in report["error"]


def test_in_process_builtin_typo(fresh_plugin_manager: None) -> None:
    manager = MicrorayPluginManager(autoload=False)
    with pytest.raises(PluginError) as info:
        manager.select("scheduling_policy", "hybird")
    text = str(info.value)
    assert text.startswith("unknown scheduling_policy 'hybird'; available: hybrid, random, spread")
    assert "did you mean 'hybrid'?" in text
    assert isinstance(info.value, LookupError)


def test_unknown_family_lists_the_families() -> None:
    manager = MicrorayPluginManager(autoload=False)
    with pytest.raises(PluginError, match=r"unknown plugin family 'scheduler'; expected one of: gcs_store, "):
        manager.select("scheduler", "hybrid")
