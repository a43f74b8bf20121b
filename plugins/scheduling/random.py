"""``random``: a node chosen uniformly among those where the request fits now.

Like Ray's ``RandomSchedulingPolicy``. The candidates are ordered by node id
before drawing, so a policy built with the same ``seed`` makes the same
sequence of choices for the same sequence of requests and cluster views.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from microray.interfaces.scheduling import ClusterView, SchedulingRequest
from microray.plugins.scheduling.strategies import StrategyAwarePolicy, fitting_nodes
from microray.registrations import OptionSpec

__all__ = ["RandomPolicy", "OPTIONS"]


def _parse_seed(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer seed, got {value!r}")
    return value


OPTIONS: Mapping[str, OptionSpec] = {
    "seed": OptionSpec(
        (int, type(None)),
        "seed of the policy's random generator (unset: seeded from the OS)",
        default=None,
        parse=_parse_seed,
    ),
}


class RandomPolicy(StrategyAwarePolicy):
    """Uniform choice among fitting nodes; ``seed`` makes it reproducible."""

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self.seed = _parse_seed(seed)
        self._rng = random.Random(self.seed)

    def select_default(self, request: SchedulingRequest, cluster: ClusterView) -> str | None:
        """A uniformly random fitting node, or None when none fits."""
        candidates = fitting_nodes(request, cluster)
        if not candidates:
            return None
        return self._rng.choice(candidates).node_id
