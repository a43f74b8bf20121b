"""The object manager's data path (``microray.raylet.object_sockets``) with real sockets in
this process: a ticket gets the object's bytes once; anything else gets nothing."""

from __future__ import annotations

import asyncio
import socket

import pytest

from microray.raylet.object_sockets import DataServer, receive_into


def _present(port: int, ticket: bytes) -> bytes:
    """Connect, present ``ticket``, and read what the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(ticket)
        out = bytearray()
        while chunk := s.recv(65536):
            out += chunk
        return bytes(out)


def test_a_ticket_gets_the_bytes_once_and_nothing_else_gets_any():
    data = bytes(range(256)) * 4000  # 1,024,000 bytes

    async def main() -> None:
        sent: list[int] = []
        server = DataServer("127.0.0.1", sent.append)
        loop = asyncio.get_running_loop()
        try:
            ticket, claimed, done = server.issue(memoryview(data), 300_000)
            # a wrong ticket, and a short one: the connection closes without a byte
            assert await loop.run_in_executor(None, _present, server.port, b"\0" * 16) == b""
            assert await loop.run_in_executor(None, _present, server.port, ticket[:8]) == b""
            assert not claimed.done()
            buf = bytearray(len(data))
            chunks: list[int] = []
            n = await loop.run_in_executor(None, receive_into, ("127.0.0.1", server.port), ticket,
                                           memoryview(buf), 300_000, lambda: chunks.append(1), 10.0)
            assert n == len(data) and bytes(buf) == data
            assert await claimed is None and await done is None
            assert sent == [300_000, 300_000, 300_000, 124_000] and len(chunks) == 4
            # used once: the same ticket again gets nothing
            assert await loop.run_in_executor(None, _present, server.port, ticket) == b""
            # a revoked ticket gets nothing either
            other, _, _ = server.issue(memoryview(data), 300_000)
            server.revoke(other)
            assert await loop.run_in_executor(None, _present, server.port, other) == b""
        finally:
            server.close()

    asyncio.run(main())


def test_a_stream_that_ends_early_is_an_error_naming_how_far_it_got():
    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def short_server() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(16)
                conn.sendall(b"y" * 1000)

        loop = asyncio.get_running_loop()
        serving = loop.run_in_executor(None, short_server)
        buf = memoryview(bytearray(5000))
        with pytest.raises(ConnectionError, match="after 1000 of 5000 bytes"):
            await loop.run_in_executor(None, receive_into, ("127.0.0.1", port), b"t" * 16, buf, 4096,
                                       lambda: None, 10.0)
        await serving
        listener.close()

    asyncio.run(main())
