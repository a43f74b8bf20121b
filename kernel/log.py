"""structlog configuration for microray's entry points.

Only entry points (``init``, the node daemons, the CLI) call ``configure``;
library modules just do ``log = structlog.get_logger(__name__)``. Files get JSON
lines; a terminal gets the console renderer. A warning (or worse) that repeats
is logged once, then once per ``REPEAT_WINDOW_S`` with the count of the repeats
left out (``RepeatLimiter``).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}

REPEAT_WINDOW_S = 5.0   # an identical warning is logged at most once per this many seconds
_REPEAT_KEYS_KEPT = 1000
_DIGITS = re.compile(r"\d+")
_SUMMARY = "_repeat_summary"  # marks a count logged at exit: passed through as is


class RepeatLimiter:
    """A structlog processor that rate-limits identical warnings.

    Events below ``warning`` pass untouched. A warning is identical to an earlier one when
    its level, event name and fields are the same, numbers in them aside (a port or a
    pid in an error text does not make a new warning). The first one is logged; the
    repeats within ``window_s`` of it are counted and dropped; the next one after the
    window is logged with ``repeated=N`` and ``in_last_s=T`` (the repeats left out, and
    over how long), and starts a new window. ``flush()`` logs the counts still pending
    (at process exit).
    """

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock=time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self._lock = threading.Lock()
        # key -> [window start, repeats dropped, level, last event dict]
        self._seen: OrderedDict[tuple, list] = OrderedDict()

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if _LEVELS.get(method_name, logging.INFO) < logging.WARNING:
            return event_dict
        if event_dict.pop(_SUMMARY, False):
            return event_dict
        key = (method_name, _DIGITS.sub("#", repr(sorted(event_dict.items(), key=lambda kv: kv[0]))))
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.window_s:
                seen[1] += 1
                seen[3] = dict(event_dict)
                raise structlog.DropEvent
            if seen is not None and seen[1]:
                event_dict["repeated"] = seen[1]
                event_dict["in_last_s"] = round(now - seen[0], 1)
            self._seen[key] = [now, 0, method_name, dict(event_dict)]
            self._seen.move_to_end(key)
            if len(self._seen) > _REPEAT_KEYS_KEPT:
                self._seen.popitem(last=False)
        return event_dict

    def flush(self) -> None:
        """Log, once, the count of every warning whose repeats were left out."""
        now = self.clock()
        with self._lock:
            pending = [v for v in self._seen.values() if v[1]]
            self._seen.clear()
        logger = structlog.get_logger(__name__)
        for start, count, level, last in pending:
            fields = {k: v for k, v in last.items() if k != "event"}
            fields.update(repeated=count, in_last_s=round(now - start, 1))
            fields[_SUMMARY] = True
            getattr(logger, level, logger.warning)(last.get("event", ""), **fields)


_limiter: RepeatLimiter | None = None


@atexit.register
def _flush_repeats() -> None:
    if _limiter is not None:
        try:
            _limiter.flush()
        except Exception:  # noqa: BLE001 -- logging at exit must never fail the exit
            pass


def worker_log_path(logs: str, worker_id: str, suffix: str) -> str:
    """A worker's log file in the session's ``logs`` folder: ``worker-<id[:12]>.<suffix>``;
    ``log`` holds its events, ``out`` and ``err`` its stdout and stderr (tracebacks,
    fatal-signal stacks, and the raylet's note of how it ended)."""
    return os.path.join(logs, f"worker-{worker_id[:12]}.{suffix}")


def configure(
    *,
    level: str = "info",
    log_file: str | os.PathLike | None = None,
    console: TextIO | None = None,
    console_level: str | None = None,
) -> None:
    """Send log events as JSON lines to ``log_file`` and, if ``console`` is given,
    pretty-printed to it (at ``console_level``, default ``level``)."""
    file_level = _LEVELS.get(level, logging.INFO)
    con_level = _LEVELS.get(console_level or level, logging.INFO)
    file_handle = None
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        # this user's only (0600): a log names addresses, ids and paths of the session
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        file_handle = os.fdopen(fd, "a", buffering=1)  # noqa: SIM115 -- lives for the process
    json_renderer = structlog.processors.JSONRenderer()
    console_renderer = structlog.dev.ConsoleRenderer(colors=console is not None and console.isatty())
    pid = os.getpid()
    global _limiter
    if _limiter is not None:
        _limiter.flush()
    _limiter = RepeatLimiter()

    def emit(logger, method_name, event_dict):
        lvl = _LEVELS.get(method_name, logging.INFO)
        if file_handle is not None and lvl >= file_level:
            line = json_renderer(logger, method_name, {"process": pid, **event_dict})
            file_handle.write((line if isinstance(line, str) else line.decode()) + "\n")
        if console is not None and lvl >= con_level:
            try:
                console.write(console_renderer(logger, method_name, dict(event_dict)) + "\n")
            except ValueError:  # console closed at interpreter exit
                pass
        raise structlog.DropEvent

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _limiter,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            emit,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min(file_level, con_level)),
        cache_logger_on_first_use=False,
    )


def configure_for_console(level: str = "warning") -> None:
    """A CLI command or a driver without a session yet: console only."""
    configure(level=level, console=sys.stderr)
