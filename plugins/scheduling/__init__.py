"""The built-in scheduling policies: ``hybrid`` (default), ``spread``, ``random``.

Registered through the ``microray`` entry point ``scheduling`` like any
third-party plugin. Every policy honours the request's strategy first
(``"DEFAULT"``, ``"SPREAD"``, node affinity; see ``strategies``) and then
applies its own logic. The policy modules are pure Python with no dependency
beyond the kernel, so importing them eagerly here keeps ``import microray`` light.
"""

from __future__ import annotations

from collections.abc import Iterable

from microray.hookspecs import hookimpl
from microray.plugins.scheduling import hybrid, random, spread
from microray.registrations import SchedulingPolicyRegistration

__all__ = ["microray_scheduling_policies"]

#: Capabilities every shipped policy has: it honours these strategies.
_STRATEGIES = frozenset({"node_affinity", "spread_strategy"})


@hookimpl
def microray_scheduling_policies() -> Iterable[SchedulingPolicyRegistration]:
    """Return the ``hybrid``, ``spread`` and ``random`` registrations."""
    return [
        SchedulingPolicyRegistration(
            name="hybrid",
            factory=hybrid.HybridPolicy,
            description="Ray's default: pack onto the local node until spread_threshold, "
            "then the least utilized node",
            capabilities=_STRATEGIES | {"deterministic"},
            options=hybrid.OPTIONS,
        ),
        SchedulingPolicyRegistration(
            name="spread",
            factory=spread.SpreadPolicy,
            description="round-robin over the nodes where the request fits",
            capabilities=_STRATEGIES,
        ),
        SchedulingPolicyRegistration(
            name="random",
            factory=random.RandomPolicy,
            description="a node chosen uniformly among those where the request fits",
            capabilities=_STRATEGIES,
            options=random.OPTIONS,
        ),
    ]
