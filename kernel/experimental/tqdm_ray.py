"""A tqdm-like progress bar that works the same in a driver, a task and an actor
(Ray's ``ray.experimental.tqdm_ray``).

Ray draws the bars of every worker together in the driver's terminal. microray prints
plain progress lines instead (``desc: n/total``) to the process's stderr (in a task or
an actor, that is the worker's ``.err`` file in the session's logs folder): one line when
the bar starts, at most one every ``flush_interval_s`` while it advances, and one when
it closes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

_print_lock = threading.Lock()


def safe_print(*args: Any, **kwargs: Any) -> None:
    """Print without tearing a progress line (Ray's ``tqdm_ray.safe_print``)."""
    stream = kwargs.pop("file", None) or sys.stdout
    with _print_lock:
        stream.write(kwargs.get("sep", " ").join(str(a) for a in args) + kwargs.get("end", "\n"))
        stream.flush()


class tqdm:  # noqa: N801 -- Ray's (and tqdm's) name
    """A progress bar: iterate through it, or call ``update(n)``; ``close()`` at the end."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        desc: str | None = None,
        total: int | None = None,
        unit: str | None = None,
        position: int | None = None,
        flush_interval_s: float | None = None,
        file: Any = None,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self.desc = desc or ""
        self.total = total
        self.unit = unit or "it"
        self.position = position
        self.n = 0
        self._flush_interval_s = 1.0 if flush_interval_s is None else flush_interval_s
        self._file = file
        self._last_flush = 0.0
        self._closed = False
        self._emit()

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""
        if refresh:
            self.refresh()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last_flush >= self._flush_interval_s:
            self._emit()

    def refresh(self) -> None:
        self._emit()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._emit()

    def __iter__(self) -> Iterator[Any]:
        if self._iterable is None:
            raise TypeError("this tqdm was made without an iterable; call update() instead")
        try:
            for item in self._iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "tqdm":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _line(self) -> str:
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        prefix = f"{self.desc}: " if self.desc else ""
        return f"{prefix}{count} {self.unit}" + (" (done)" if self._closed else "")

    def _emit(self) -> None:
        self._last_flush = time.monotonic()
        stream = self._file or sys.stderr
        with _print_lock:
            stream.write(self._line() + "\n")
            stream.flush()


def instance() -> None:
    """Ray's bar manager lives in the driver; microray has none (plain lines instead)."""
    return None


__all__ = ["tqdm", "safe_print"]
