"""The core worker's event loop thread ("microray-io") and the ways onto it.

gRPC's asyncio objects belong to the loop that runs them, so every call and stream of a
core worker is made on this loop; user threads reach it through ``run`` (wait for a
coroutine), ``spawn`` (fire one) and ``call_in_loop`` (run a function there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from microray.rpc import invoke_logged, new_event_loop

# the last session's event loop (kind, loop), stopped but open, for the next one
_spare_loop: tuple[str, asyncio.AbstractEventLoop] | None = None


def _take_spare_loop(kind: str) -> asyncio.AbstractEventLoop:
    """The previous session's loop when it is of ``kind``, else a new one."""
    global _spare_loop
    spare, _spare_loop = _spare_loop, None
    if spare is not None and spare[0] == kind and not spare[1].is_closed() and not spare[1].is_running():
        return spare[1]
    return new_event_loop(kind)


class IoLoop:
    """An event loop running on its own daemon thread for one session."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.loop = _take_spare_loop(kind)
        # the loop's default executor (observer hooks) is this session's own: the loop
        # outlives the session, and a loop's shutdown_default_executor() is final
        self.hooks_executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="microray-hooks")
        self.loop.set_default_executor(self.hooks_executor)
        self.thread = threading.Thread(target=self._run, name="microray-io", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        """Run a coroutine on the loop from a user thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start a coroutine on the loop without waiting (from any thread)."""
        if threading.current_thread() is self.thread:
            self.loop.create_task(coro)
        else:
            asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop: now when called there, else soon."""
        if threading.current_thread() is self.thread:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def call_nowait(self, method: Callable[..., Any], request: Any, timeout: float | None = 30) -> None:
        """Fire a unary gRPC call from any thread; errors are logged, not raised."""
        self.spawn(invoke_logged(method, request, timeout))

    def stop_soon(self) -> None:
        """Stop the loop without waiting (a session that failed to start)."""
        self.loop.call_soon_threadsafe(self.loop.stop)

    def stop(self) -> bool:
        """Stop the loop and wait for its thread (and for running observer hooks, up to
        2 s). True when the thread ended: the loop is then kept for the next session."""
        global _spare_loop
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        deadline = time.monotonic() + 2  # a hook still running is given this long
        for t in list(getattr(self.hooks_executor, "_threads", ())):
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.thread.is_alive():
            return False
        # The loop is kept, stopped but open, for this process's next session. Closing
        # it is not safe: grpc.aio's process-wide poller may still deliver completions
        # of this session's calls to it ("Event loop is closed" from the next session's
        # loop); a new loop per session leaked its epoll fd and self-pipe instead.
        _spare_loop = (self.kind, self.loop)
        return True
