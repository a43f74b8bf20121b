"""The object manager's data path: an object's bytes over a plain TCP connection, from the
holder's store mapping straight into the puller's store buffer.

A pull starts with the ``Pull`` gRPC call (checked like every call to the raylet). When
the holder offers the data path, it answers that call with a one-time ticket and the
port of its ``DataServer``; the puller connects there, presents the ticket and receives
the object's bytes with ``recv_into`` into the buffer it ``create``d in its store. The
holder sends from the view of its store with ``sendall``. So no byte is copied in user
space on either side (Python gRPC copies a message several times on each side, which
capped transfers at a third of what the socket carries here). A ticket is 16 random
bytes, valid for one object, once, and only for ``TICKET_TTL_S``; the data server reads
nothing else from a connection. Both sides run the socket I/O on threads (it releases
the GIL), never on the raylet's event loop.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)

TICKET_BYTES = 16
TICKET_TTL_S = 30.0  # a ticket not presented by then is dropped
ACCEPT_POLL_S = 0.5  # how often the accept thread checks that the server is still open
SEND_STALL_S = 30.0  # a puller that has not taken a whole chunk within this has failed (its machine may be gone)


@dataclass
class _Ticket:
    view: memoryview
    chunk: int
    deadline: float
    loop: asyncio.AbstractEventLoop
    claimed: asyncio.Future
    done: asyncio.Future


class DataServer:
    """Serves objects' bytes to connections that present a ticket from ``issue``.

    ``on_chunk(nbytes)`` is called (from a sending thread) after each chunk is sent;
    ``chunk_delay`` pauses before each chunk (tests)."""

    def __init__(self, ip: str, on_chunk: Callable[[int], None], chunk_delay: float = 0.0) -> None:
        self.sock = socket.create_server((ip, 0))
        self.sock.settimeout(ACCEPT_POLL_S)
        self.port = self.sock.getsockname()[1]
        self.on_chunk = on_chunk
        self.chunk_delay = chunk_delay
        self.tickets: dict[bytes, _Ticket] = {}
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._accept_loop, name="microray-object-data", daemon=True)
        self.thread.start()

    def issue(self, view: memoryview, chunk: int) -> tuple[bytes, asyncio.Future, asyncio.Future]:
        """A ticket for ``view`` (event loop thread), and two futures of the loop: the
        ticket was presented; the bytes were sent (result: None or the error)."""
        loop = asyncio.get_running_loop()
        ticket = secrets.token_bytes(TICKET_BYTES)
        t = _Ticket(view, chunk, time.monotonic() + TICKET_TTL_S, loop, loop.create_future(), loop.create_future())
        with self.lock:
            self.tickets[ticket] = t
        return ticket, t.claimed, t.done

    def revoke(self, ticket: bytes) -> None:
        with self.lock:
            self.tickets.pop(ticket, None)

    def close(self) -> None:
        self.closed = True
        with self.lock:
            self.tickets.clear()
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept_loop(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), name="microray-object-send", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5.0)
                ticket = _recv_exactly(conn, TICKET_BYTES)
            except OSError:
                return
            with self.lock:
                t = self.tickets.pop(ticket, None)
            if t is None or time.monotonic() > t.deadline:
                return  # unknown, used or expired: say nothing
            _resolve(t.loop, t.claimed, None)
            error: BaseException | None = None
            try:
                conn.settimeout(SEND_STALL_S)  # else a vanished puller holds this thread and the view for good
                view, chunk = t.view, t.chunk
                for off in range(0, view.nbytes, chunk):
                    if self.chunk_delay:
                        time.sleep(self.chunk_delay)
                    piece = view[off:off + chunk]
                    conn.sendall(piece)
                    self.on_chunk(piece.nbytes)
            except OSError as exc:
                error = exc
            finally:
                t.view = None  # type: ignore[assignment]  # the store's view goes with its last reference
            _resolve(t.loop, t.done, error)


def _resolve(loop: asyncio.AbstractEventLoop, fut: asyncio.Future, value: Any) -> None:
    def set_() -> None:
        if not fut.done():
            fut.set_result(value)

    try:
        loop.call_soon_threadsafe(set_)
    except RuntimeError:  # the loop is closed: the raylet is stopping
        pass


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        got = conn.recv(n - len(data))
        if not got:
            raise ConnectionError("closed before the ticket")
        data += got
    return bytes(data)


def receive_into(address: tuple[str, int], ticket: bytes, buf: memoryview, chunk: int,
                 on_chunk: Callable[[], None], stall_s: float) -> int:
    """Connect to a ``DataServer``, present ``ticket`` and fill ``buf`` with the object's
    bytes (a thread: blocking I/O). ``on_chunk()`` after each ``chunk`` bytes. Raises
    ``OSError`` (``ConnectionError`` when the stream ends early, ``TimeoutError`` after
    ``stall_s`` without a byte)."""
    size = buf.nbytes
    with socket.create_connection(address, timeout=stall_s) as conn:
        conn.sendall(ticket)
        off = counted = 0
        while off < size:
            n = conn.recv_into(buf[off:], min(size - off, chunk))
            if n == 0:
                raise ConnectionError(f"the holder's stream ended after {off} of {size} bytes")
            off += n
            reached = off // chunk if off < size else -(-size // chunk)
            while counted < reached:
                counted += 1
                on_chunk()
    return off
