"""gRPC plumbing shared by every process: server and channel options, channel reuse."""

from __future__ import annotations

import grpc
import grpc.aio

MAX_MESSAGE = 512 * 1024 * 1024

OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.so_reuseport", 0),
    # a restarted GCS (or any peer) is found again within about a second
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def make_server() -> grpc.aio.Server:
    return grpc.aio.server(options=OPTIONS)


def bind(server: grpc.aio.Server, host: str, port: int) -> int:
    """Bind ``host:port`` (port 0: any free port) and return the port."""
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind gRPC server to {host}:{port} (port in use?)")
    return bound


class ChannelPool:
    """One aio channel per address, for the event loop that created the pool."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def get(self, address: str) -> grpc.aio.Channel:
        ch = self._channels.get(address)
        if ch is None:
            ch = grpc.aio.insecure_channel(address, options=OPTIONS)
            self._channels[address] = ch
        return ch

    def drop(self, address: str) -> None:
        self._channels.pop(address, None)

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for ch in channels.values():
            try:
                await ch.close(grace=None)
            except Exception:  # noqa: BLE001 -- closing at shutdown
                pass


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
    )
