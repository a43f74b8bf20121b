"""Two plugins registering one name in one family fail, naming both providers."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from thirdparty_dists import Sites, run_probe
from microray.exceptions import PluginError
from microray.hookspecs import hookimpl
from microray.plugin_manager import MicrorayPluginManager
from microray.registrations import DashboardRegistration, SchedulingPolicyRegistration

pytestmark = pytest.mark.slow  # chaos, browser, real-server and heavy-I/O tests: not in `tox -e fast`


class _Provides:
    """A plugin object registering one scheduling policy called ``policy``."""

    def __init__(self, policy: str) -> None:
        self.policy = policy

    @hookimpl
    def microray_scheduling_policies(self) -> Iterable[SchedulingPolicyRegistration]:
        return [SchedulingPolicyRegistration(name=self.policy, factory=object)]


def test_two_code_plugins_with_one_name() -> None:
    manager = MicrorayPluginManager(autoload=False)
    manager.register(_Provides("twin"), name="first_provider")
    manager.register(_Provides("twin"), name="second_provider")
    with pytest.raises(PluginError) as info:
        manager.select("scheduling_policy", "hybrid")
    text = str(info.value)
    assert text.startswith("scheduling_policy name 'twin' is registered twice: ")
    assert "'first_provider'" in text and "'second_provider'" in text
    assert text.index("first_provider") < text.index("second_provider")


def test_a_plugin_reusing_a_builtin_name_names_the_builtin() -> None:
    manager = MicrorayPluginManager(autoload=False)
    manager.register(_Provides("hybrid"), name="impostor")
    with pytest.raises(PluginError) as info:
        manager.select("scheduling_policy", "spread")
    text = str(info.value)
    assert "'hybrid' is registered twice" in text
    assert "entry point 'scheduling' (microray built-in)" in text and "'impostor'" in text


def test_same_name_in_different_families_is_fine() -> None:
    class Dash:
        @hookimpl
        def microray_dashboards(self) -> Iterable[DashboardRegistration]:
            return [DashboardRegistration(name="twin", factory=object)]

    manager = MicrorayPluginManager(autoload=False)
    manager.register(_Provides("twin"), name="policy_provider")
    manager.register(Dash(), name="dashboard_provider")
    assert manager.select("scheduling_policy", "twin").factory is object
    assert manager.select("dashboard", "twin").factory is object


def test_two_installed_distributions_with_one_name(sites: Sites) -> None:
    report = run_probe("scheduling_policy", "hybrid", paths=[sites.main, sites.dup])
    assert report["selected"] is None
    error = report["error"]
    assert "scheduling_policy name 'third_party' is registered twice" in error
    assert "entry point 'my_policy' (mr-thirdparty-policy)" in error
    assert "entry point 'dup_policy' (mr-dup-policy)" in error
