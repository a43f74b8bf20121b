"""Event files for test plugins: a plugin running in a cluster's processes appends what it
saw as JSON lines to a file the test names in an environment variable; the test reads them.

The variable should not start with ``MICRORAY_`` (those names are read as config keys).
Nothing is written while it is unset, so a plugin stays harmless in other tests of the
session (a plugin module stays registered in a process once a cluster named it).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from typing import Any


def name_session_file(env: str, prefix: str) -> str:
    """Point ``$env`` (unless already set) at ``events.jsonl`` in a new temporary folder,
    removed when this process exits (its forks leave with ``os._exit`` and keep it), and
    return the file's path. Call it at collection time, before any cluster starts: node
    processes inherit the environment of the process that forks their launcher."""
    if env not in os.environ:
        folder = tempfile.mkdtemp(prefix=prefix)
        owner = os.getpid()

        def remove() -> None:
            if os.getpid() == owner:
                shutil.rmtree(folder, ignore_errors=True)

        atexit.register(remove)
        os.environ[env] = os.path.join(folder, "events.jsonl")
    return os.environ[env]


def append_event(env: str, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to the file named by ``$env`` (nothing when it is
    unset). One ``O_APPEND`` write a line: lines from several threads and processes never mix."""
    path = os.environ.get(env)
    if not path:
        return
    data = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_events(path: str) -> list[dict[str, Any]]:
    """The records appended to ``path`` so far, oldest first ([] before the first)."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def read_log_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON records of a process's log file, passing over the lines that are not JSON
    (a traceback, a line a crash cut short)."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
