"""structlog configuration for microray's entry points.

Only entry points (``init``, the node daemons, the CLI) call ``configure``;
library modules just do ``log = structlog.get_logger(__name__)``. Files get JSON
lines; a terminal gets the console renderer.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


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
        file_handle = open(log_file, "a", buffering=1)  # noqa: SIM115 -- lives for the process
    json_renderer = structlog.processors.JSONRenderer()
    console_renderer = structlog.dev.ConsoleRenderer(colors=console is not None and console.isatty())
    pid = os.getpid()

    def emit(logger, method_name, event_dict):
        lvl = _LEVELS.get(method_name, logging.INFO)
        if file_handle is not None and lvl >= file_level:
            file_handle.write(json_renderer(logger, method_name, {"process": pid, **event_dict}) + "\n")
        if console is not None and lvl >= con_level:
            try:
                console.write(console_renderer(logger, method_name, dict(event_dict)) + "\n")
            except ValueError:  # console closed at interpreter exit
                pass
        raise structlog.DropEvent

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
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
