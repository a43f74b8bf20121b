"""Embedded test clusters for a test folder's fixtures: one cluster shared by the tests of a
module, clusters of a test's own, each stopped with a leak check.

A conftest builds one ``EmbeddedClusters`` and turns its generators into fixtures::

    clusters = EmbeddedClusters(shared={"num_cpus": 2}, check_leaks=my_leak_check)

    @pytest.fixture(scope="module")
    def _module_guard():
        yield from clusters.module_guard()

    @pytest.fixture
    def cluster(_module_guard):
        return clusters.shared_cluster()

    @pytest.fixture
    def make_cluster(_module_guard):
        yield from clusters.per_test()
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from microray.testing.processes import descendants


@dataclass
class StartedCluster:
    """What a test learns about a cluster it started: the init arguments, the processes that
    were ours before it started (not leaks), and what ``describe`` made of it."""

    kwargs: dict[str, Any]
    baseline: frozenset[int]
    info: Any = None
    context: Any = None  # what ``microray.init`` returned


class EmbeddedClusters:
    """Starts ``microray.init`` clusters for tests and stops them with a leak check.

    ``shared``: the init arguments of the module-shared cluster. ``defaults``: arguments every
    cluster gets unless the test gives them. ``describe(started)``: what ``shared_cluster()``
    and ``make_cluster(...)`` return (default: the ``StartedCluster``). ``check_leaks(started)``
    runs after every stop (``started`` is None when the cluster was not started here)."""

    def __init__(
        self,
        *,
        shared: dict[str, Any],
        check_leaks: Callable[[StartedCluster | None], None],
        defaults: dict[str, Any] | None = None,
        describe: Callable[[StartedCluster], Any] | None = None,
    ) -> None:
        self.shared = dict(shared)
        self.defaults = dict(defaults or {})
        self.check_leaks = check_leaks
        self.describe = describe or (lambda started: started)
        self.current: StartedCluster | None = None

    def start(self, **kwargs: Any) -> Any:
        import microray as ray

        if ray.is_initialized():
            self.stop()
        for key, value in self.defaults.items():
            kwargs.setdefault(key, value)
        started = StartedCluster(kwargs, frozenset(descendants()))
        started.context = ray.init(**kwargs)
        started.info = self.describe(started)
        self.current = started
        return started.info

    def stop(self) -> None:
        """Shut the running cluster down (collecting garbage first, so refs held only by
        cycles are released), then check for leaks."""
        import microray as ray

        started, self.current = self.current, None
        gc.collect()
        ray.shutdown()
        self.check_leaks(started)

    def stop_quietly(self) -> None:
        """Shut down whatever runs, without a leak check (a cluster that is not ours, or one
        a test already found broken)."""
        import microray as ray

        self.current = None
        if ray.is_initialized():
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001 -- best effort: the test's own failure matters more
                pass

    def running(self) -> bool:
        import microray as ray

        return ray.is_initialized() or self.current is not None

    def module_guard(self) -> Iterator[None]:
        """Body of a module-scoped fixture: shuts down a cluster another folder left running
        (its leaks are that folder's business), and stops, with a leak check, whatever is
        still running when the module ends."""
        self.stop_quietly()
        yield
        if self.running():
            self.stop()

    def shared_cluster(self) -> Any:
        """The module's shared cluster, started (again) when none with ``shared`` runs."""
        import microray as ray

        current = self.current
        wanted = {**self.defaults, **self.shared}
        if current is None or current.kwargs != wanted or not ray.is_initialized():
            return self.start(**self.shared)
        return current.info

    def per_test(self) -> Iterator[Callable[..., Any]]:
        """Body of a ``make_cluster`` fixture: yields ``make(**init_kwargs)``; a cluster
        made by the test is stopped (and leak-checked) when the test ends."""
        made: list[Any] = []

        def make(**kwargs: Any) -> Any:
            made.append(self.start(**kwargs))
            return made[-1]

        yield make
        if made and self.running():
            self.stop()
