"""Contract test suites, one per plugin interface.

A backend author subclasses one and provides a single fixture::

    from microray.testing.contracts import GcsStoreContract

    class TestMyStore(GcsStoreContract):
        @pytest.fixture
        def store(self):
            ...  # yield a fresh, empty GcsStore

Our own tests run the same classes over every shipped backend.
"""

from __future__ import annotations

import importlib
from typing import Any

_CONTRACTS = {
    "GcsStoreContract": "microray.testing.contracts.gcs_store",
    "ObjectStoreContract": "microray.testing.contracts.object_store",
    "SchedulingPolicyContract": "microray.testing.contracts.scheduling_policy",
}

__all__ = list(_CONTRACTS)


def __getattr__(name: str) -> Any:
    if name in _CONTRACTS:
        return getattr(importlib.import_module(_CONTRACTS[name]), name)
    raise AttributeError(name)
