"""``Dashboard``: a web UI and API started on the head node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class DashboardContext:
    """What a dashboard gets to start: where the GCS is, the session folder,
    the cluster token (its gRPC calls carry it, and its mutating endpoints demand it),
    the cluster's ``tls`` config table (for its gRPC channels) and its options.

    ``listen_fd``, when not -1, is a socket the head already bound to ``host:port``
    and put in listening state (so the URL it printed works at once): serve on it
    rather than binding again, or close it."""

    gcs_address: str
    session_dir: str
    token: str
    host: str
    port: int
    options: dict[str, Any]
    listen_fd: int = -1
    tls: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Dashboard(Protocol):
    def start(self, context: DashboardContext) -> str:
        """Start serving; return the URL a user opens. Must not block."""

    def stop(self) -> None:
        """Stop serving and release the port."""
