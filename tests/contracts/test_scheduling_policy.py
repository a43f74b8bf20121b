"""Run ``SchedulingPolicyContract`` over every shipped policy and the contrib example.

The shipped policies are obtained the way the runtime obtains them: by name
through the process-wide plugin manager, their options validated against the
registration. The contrib example is registered the way a user enables it —
as a plugin module named in config.
"""

from __future__ import annotations

import pytest

from microray.plugin_manager import MicrorayPluginManager, get_plugin_manager
from microray.registrations import Registration
from microray.testing.contracts import SchedulingPolicyContract

SHIPPED = ["hybrid", "spread", "random"]
EXAMPLE_MODULE = "microray.contrib.example_policy"


def _build(registration: Registration, **options: object) -> object:
    return registration.factory(**registration.validate_options("scheduling_policy", options))


@pytest.fixture(params=SHIPPED)
def shipped_registration(request: pytest.FixtureRequest) -> Registration:
    return get_plugin_manager().select("scheduling_policy", request.param)


class TestShippedPolicies(SchedulingPolicyContract):
    @pytest.fixture
    def policy(self, shipped_registration: Registration) -> object:
        return _build(shipped_registration)

    @pytest.fixture
    def capabilities(self, shipped_registration: Registration) -> frozenset[str]:
        return shipped_registration.capabilities


class TestSeededRandomPolicy(SchedulingPolicyContract):
    @pytest.fixture
    def policy(self) -> object:
        return _build(get_plugin_manager().select("scheduling_policy", "random"), seed=7)


class TestHybridWithoutThreshold(SchedulingPolicyContract):
    """``spread_threshold = 0``: every node above it, pure least-utilized choice."""

    @pytest.fixture
    def policy(self) -> object:
        registration = get_plugin_manager().select("scheduling_policy", "hybrid")
        return _build(registration, spread_threshold=0.0, avoid_gpu_nodes=False)

    @pytest.fixture
    def capabilities(self) -> frozenset[str]:
        return frozenset({"deterministic"})


@pytest.fixture(scope="module")
def example_registration() -> Registration:
    manager = MicrorayPluginManager(extra_modules=[EXAMPLE_MODULE])
    return manager.select("scheduling_policy", "least_loaded")


class TestContribLeastLoaded(SchedulingPolicyContract):
    @pytest.fixture(params=[False, True], ids=["plain", "prefer_local"])
    def policy(self, example_registration: Registration, request: pytest.FixtureRequest) -> object:
        return _build(example_registration, prefer_local=request.param)

    @pytest.fixture
    def capabilities(self, example_registration: Registration) -> frozenset[str]:
        return example_registration.capabilities


def test_every_shipped_policy_is_covered() -> None:
    """A policy added to the built-in plugin must be added to SHIPPED above."""
    manager = get_plugin_manager()
    builtin = {
        name
        for name, found in manager.registry["scheduling_policy"].items()
        if "built-in" in found.source
    }
    assert builtin == set(SHIPPED)
