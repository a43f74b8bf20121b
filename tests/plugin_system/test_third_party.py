"""Third-party plugins found through their entry points, with no code change."""

from __future__ import annotations

import pytest

from thirdparty_dists import Sites, run_probe

pytestmark = pytest.mark.slow  # chaos, browser, real-server and heavy-I/O tests: not in `tox -e fast`


def test_third_party_policy_is_discovered_through_its_entry_point(sites: Sites) -> None:
    report = run_probe("scheduling_policy", "third_party", paths=[sites.main])
    assert report["error"] is None
    assert report["selected"] == {
        "name": "third_party",
        "factory_module": "mr_thirdparty_policy",
        "description": "first fit, from a third party",
    }
    assert report["source"] == "entry point 'my_policy' (mr-thirdparty-policy)"
    # The built-ins are still there beside it.
    names = {(row["family"], row["name"]) for row in report["describe"]}
    assert {("scheduling_policy", n) for n in ("hybrid", "spread", "random", "third_party")} <= names


def test_not_installed_means_not_found(sites: Sites) -> None:
    report = run_probe("scheduling_policy", "third_party")
    assert report["selected"] is None
    assert "unknown scheduling_policy 'third_party'" in report["error"]


def test_broken_entry_point_is_skipped_and_logged(sites: Sites) -> None:
    report = run_probe("scheduling_policy", "hybrid", paths=[sites.main])
    assert report["error"] is None and report["selected"]["name"] == "hybrid"
    failed = {f["name"]: f for f in report["failed"]}
    assert failed["broken"]["source"] == "entry point 'broken' (mr-broken-plugin)"
    assert failed["broken"]["error"] == (
        "ImportError: mr_broken_plugin needs libfrobnicate, which is not installed"
    )
    warnings = [e for e in report["logs"] if e["event"] == "plugin_load_failed"]
    assert [(e["plugin"], e["log_level"]) for e in warnings] == [("broken", "warning")]
    assert "libfrobnicate" in warnings[0]["error"]


def test_raising_registration_hook_is_skipped_and_reported(sites: Sites) -> None:
    report = run_probe("scheduling_policy", "third_party", paths=[sites.main])
    assert report["selected"]["name"] == "third_party"
    failed = {f["name"]: f for f in report["failed"]}
    assert failed["raising_hook"]["error"] == (
        "microray_scheduling_policies() raised RuntimeError: mr_raising_hook lost its config"
    )
    assert any(e["event"] == "plugin_hook_failed" for e in report["logs"])


def test_entry_point_named_like_a_builtin_does_not_shadow_it(sites: Sites) -> None:
    report = run_probe("scheduling_policy", "same_ep_name", paths=[sites.main])
    assert report["selected"]["factory_module"] == "mr_same_ep_name"
    assert report["source"] == "entry point 'scheduling' (mr-same-ep-name)"
    builtin = run_probe("scheduling_policy", "hybrid", paths=[sites.main])
    assert builtin["source"] == "entry point 'scheduling' (microray built-in)"


def test_disable_autoload_keeps_only_builtins(sites: Sites) -> None:
    env = {"MICRORAY_DISABLE_PLUGIN_AUTOLOAD": "1"}
    report = run_probe("scheduling_policy", "third_party", paths=[sites.main], env=env)
    assert report["autoload"] is False
    assert report["selected"] is None
    assert "unknown scheduling_policy 'third_party'" in report["error"]
    # Nothing third-party was even imported, so nothing failed.
    assert report["failed"] == []
    assert "broken" not in report["error"]
    assert {row["name"] for row in report["describe"] if row["family"] == "scheduling_policy"} == {
        "hybrid", "spread", "random",
    }
    builtin = run_probe("scheduling_policy", "hybrid", paths=[sites.main], env=env)
    assert builtin["selected"]["name"] == "hybrid"


def test_disable_autoload_does_not_drop_config_named_modules(sites: Sites) -> None:
    report = run_probe(
        "scheduling_policy", "third_party", paths=[sites.main],
        env={"MICRORAY_DISABLE_PLUGIN_AUTOLOAD": "true"}, extra_modules=["mr_thirdparty_policy"],
    )
    assert report["selected"]["name"] == "third_party"
    assert report["source"] == "module 'mr_thirdparty_policy' (config)"
