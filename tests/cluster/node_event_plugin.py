"""A test plugin: records every node the GCS adds or removes.

Registered with the head's ``plugins=["tests.cluster.node_event_plugin"]``; the GCS calls
``microray_node_added`` / ``microray_node_removed`` (from a side thread) and this appends
the event as one JSON line to the file named by ``TEST_NODE_EVENTS_FILE``.
"""

from __future__ import annotations

import json
import os
import threading
import time

from microray.hookspecs import hookimpl

ENV = "TEST_NODE_EVENTS_FILE"
_lock = threading.Lock()


def _record(kind: str, node: dict) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"hook": kind, **node, "recorded_at": time.time(), "recorder_pid": os.getpid()}) + "\n"
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@hookimpl
def microray_node_added(node):
    _record("microray_node_added", node)


@hookimpl
def microray_node_removed(node):
    _record("microray_node_removed", node)


def read_events(path: str) -> list[dict]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
