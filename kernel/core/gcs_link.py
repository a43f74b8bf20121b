"""A core worker's link to the GCS: unary calls that ride out a GCS restart, and (in a
driver) the watch that tells the user, rather than hanging, when the GCS is gone for good
or came back without the cluster's state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import grpc
import structlog

from microray.config import Config
from microray.core.io_loop import IoLoop
from microray.exceptions import GcsUnavailableError, RaySystemError
from microray.protocol import common_pb2
from microray.rpc import ChannelPool, invoke

log = structlog.get_logger(__name__)


class GcsHost(Protocol):
    """What the link reads from its core worker (at use: they are dropped at shutdown)."""

    gcs: Any  # GcsStub
    gcs_address: str
    channels: ChannelPool
    config: Config
    cluster_id: str


class GcsLink:
    def __init__(self, host: GcsHost, io: IoLoop, on_lost: Callable[[BaseException], None]) -> None:
        self.host = host
        self.io = io
        self.on_lost = on_lost  # fail the work that waits on the GCS
        self.error: BaseException | None = None
        self.suspect = False  # the connection broke: check the cluster id before the next call
        self._tasks: list[asyncio.Task[None]] = []

    def call(self, method: Callable[..., Any], request: Any, timeout: float | None = None) -> Any:
        """A unary GCS call from a user thread. The call object is created on the io
        loop (gRPC's asyncio objects belong to the loop that runs them). It waits out a
        restarting GCS for up to ``gcs_rpc_timeout_s``, then raises GcsUnavailableError."""
        if self.error is not None:
            raise self.error
        limit = self.host.config.gcs_rpc_timeout_s if timeout is None else timeout
        try:
            if self.suspect:
                self.io.run(self._verify(limit))
            return self.io.run(invoke(method, request, limit))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise GcsUnavailableError(
                    f"the GCS at {self.host.gcs_address} did not answer within {limit:.0f}s "
                    f"({exc.code().name}: {exc.details()})"
                ) from None
            raise

    # -- the watch (drivers) ----------------------------------------------------
    async def start_watch(self) -> None:
        """Start watching (on the io loop)."""
        loop = self.io.loop
        self._tasks = [loop.create_task(self._monitor()), loop.create_task(self._watch_channel())]

    async def _watch_channel(self) -> None:
        """Mark the GCS suspect the moment its connection breaks, so that the first call
        after a restart checks the cluster id instead of trusting an empty GCS's answer
        (the 1 s monitor below may not have looked yet)."""
        channel = self.host.channels.get(self.host.gcs_address)
        state = channel.get_state(try_to_connect=False)
        while self.error is None:
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=False)
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.IDLE,
                         grpc.ChannelConnectivity.SHUTDOWN):
                self.suspect = True

    async def _verify(self, timeout: float) -> None:
        """Wait for the GCS (up to ``timeout``) and make sure it still runs our cluster."""
        reply = await invoke(self.host.gcs.GetClusterConfig, common_pb2.Empty(), timeout)
        self._check_cluster_id(reply.cluster_id)
        if self.error is not None:
            raise self.error
        self.suspect = False

    async def _monitor(self) -> None:
        """Tell the user, not hang, when the GCS is gone for good or came back empty."""
        unreachable_since: float | None = None
        host = self.host
        while self.error is None:
            await asyncio.sleep(1.0)
            try:
                reply = await host.gcs.GetClusterConfig(common_pb2.Empty(), timeout=2)
            except grpc.aio.AioRpcError as exc:
                now = time.monotonic()
                limit = host.config.gcs_rpc_timeout_s
                if unreachable_since is None:
                    unreachable_since = now
                    log.warning("gcs_unreachable", gcs=host.gcs_address, error=exc.code().name)
                elif now - unreachable_since > limit:
                    self._failed(GcsUnavailableError(
                        f"the GCS at {host.gcs_address} has been unreachable for "
                        f"{now - unreachable_since:.0f}s (gcs_rpc_timeout_s={limit})"
                    ))
                continue
            if unreachable_since is not None:
                log.info("gcs_reachable_again", gcs=host.gcs_address, after_s=round(time.monotonic() - unreachable_since, 2))
                unreachable_since = None
            self._check_cluster_id(reply.cluster_id)

    def _check_cluster_id(self, cluster_id: str) -> None:
        """A GCS with another cluster id lost the cluster's state: fail, naming the cause."""
        host = self.host
        if cluster_id != host.cluster_id and self.error is None:
            self._failed(RaySystemError(
                f"the GCS at {host.gcs_address} restarted without the cluster's state "
                f"(cluster id {host.cluster_id} -> {cluster_id}); with gcs_store="
                f"{host.config.gcs_store!r} nothing survives a GCS restart. Use a durable "
                "GCS store (redis, etcd) for a head that survives its own restart."
            ))

    def _failed(self, error: BaseException) -> None:
        self.error = error
        log.error("gcs_lost", error=str(error))
        self.on_lost(error)
