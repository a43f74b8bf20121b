"""Small actor classes that tests in several folders use, undecorated: a test makes them
remote itself (``Counter = ray.remote(common_actors.Counter)``), and driver programs run as
subprocesses import them as ``tests.common_actors``. This module is pickled by value, so
workers and restarted actors never need to import it."""

from __future__ import annotations

import os
import sys

import cloudpickle


class Counter:
    """Counts calls to ``incr`` from ``start``; ``pid`` names the process holding it."""

    def __init__(self, start: int = 0) -> None:
        self.n = start

    def incr(self) -> int:
        self.n += 1
        return self.n

    def pid(self) -> int:
        return os.getpid()


class Holder:
    """Holds one value."""

    def __init__(self, value: object) -> None:
        self.value = value

    def get(self) -> object:
        return self.value


cloudpickle.register_pickle_by_value(sys.modules[__name__])
