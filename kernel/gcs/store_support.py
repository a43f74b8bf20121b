"""Helpers for writing a GCS store backend: ``microray.gcs.store_support``.

The stores that ship with microray (``memory``, ``redis``, ``etcd``) use them, and a
third-party store may too, so that every store checks table and namespace names and
key/value types the same way and words the same errors the same way (the contract suite in
``microray.testing.contracts`` checks that behaviour, not these helpers).

Importing this module imports no client library and no RPC stack, so a backend can use it
at module level and ``import microray`` stays light.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from microray.exceptions import GcsUnavailableError
from microray.registrations import OptionSpec

log = structlog.get_logger(__name__)

__all__ = [
    "NAME_PATTERN",
    "Backoff",
    "as_bytes",
    "check_name",
    "close_in_loop",
    "schema_mismatch",
    "timeout_options",
]

#: What a table or namespace name may be: 1-200 ASCII letters, digits, ``_``, ``.`` or ``-``.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid GCS ``kind`` (``"table"``, ``"namespace"``) name;
    raise ``ValueError`` saying what is allowed if not."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"GCS {kind} name {name!r} must be 1-200 ASCII letters, digits, '_', '.' or '-'"
        )
    return name


def as_bytes(value: Any, what: str) -> bytes:
    """``value`` as ``bytes`` (a ``bytearray`` or ``memoryview`` is copied); raise
    ``TypeError`` naming ``what`` (``"key"``, ``"value"``, ...) for anything else."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"GCS {what} must be bytes, not {type(value).__name__}")


def schema_mismatch(where: str, stored: int, expected: int) -> str:
    """The ``ConfigError`` message of ``check_schema`` when ``where`` (the store and
    namespace, e.g. ``"redis GCS store redis://h:6379/0 namespace 'prod'"``) holds another
    schema version than this microray's."""
    return (
        f"{where} holds GCS schema version {stored}, but this microray uses schema version "
        f"{expected}; upgrade/downgrade microray to match, migrate the data, or use a fresh "
        "namespace (gcs_store_options.namespace)"
    )


def timeout_options(
    connect: float = 3.0, request: float = 10.0, retry: float = 5.0
) -> dict[str, OptionSpec]:
    """The ``connect_timeout``, ``request_timeout`` and ``retry_timeout`` options of a store
    that talks to a server, with these defaults (seconds)."""
    return {
        "connect_timeout": OptionSpec(float, "Seconds to open a connection", default=connect, parse=float),
        "request_timeout": OptionSpec(float, "Seconds one request may take", default=request, parse=float),
        "retry_timeout": OptionSpec(
            float, "Seconds to keep retrying before GcsUnavailableError", default=retry, parse=float
        ),
    }


async def close_in_loop(
    loop: asyncio.AbstractEventLoop | None, close: Callable[[], Awaitable[Any]], backend: str
) -> None:
    """Await ``close()`` (a client's or channel's close) if the running loop is ``loop``, the
    one the client was made in; a client of another, finished loop cannot be closed from here
    and is left to the garbage collector. An error while closing a broken connection is
    logged, not raised."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not loop:
        return
    try:
        await close()
    except Exception as exc:  # noqa: BLE001 -- closing a broken connection
        log.debug("gcs_store_close_error", backend=backend, error=str(exc))


class Backoff:
    """Bounded retrying for a store that talks to a server: pauses that double from
    50 ms to 500 ms, and ``GcsUnavailableError`` once ``retry_timeout`` seconds have
    passed since the first failure. ``where`` names the store in the error (e.g.
    ``"redis GCS store at redis://h:6379/0"``). A long-lived caller (a watch) calls
    ``reset()`` after each success."""

    def __init__(self, retry_timeout: float, backend: str, where: str) -> None:
        self.retry_timeout = retry_timeout
        self.backend = backend
        self.where = where
        self.reset()

    def reset(self) -> None:
        self.failing_since: float | None = None
        self.failures = 0
        self.delay = 0.05

    async def pause(self, what: str, error: str) -> None:
        """After ``what`` failed with ``error``: wait before the next try, or raise
        ``GcsUnavailableError`` saying what failed, how often, for how long and the last
        error, when the retry time is used up."""
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        self.failures += 1
        elapsed = now - self.failing_since
        if elapsed >= self.retry_timeout:
            raise GcsUnavailableError(
                f"{self.where} is unavailable: {what} failed {self.failures} times over "
                f"{elapsed:.1f}s; last error: {error}"
            )
        log.debug("gcs_store_retry", backend=self.backend, op=what, attempt=self.failures, error=error)
        await asyncio.sleep(min(self.delay, self.retry_timeout - elapsed))
        self.delay = min(self.delay * 2, 0.5)
