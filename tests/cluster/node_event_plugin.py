"""A test plugin: records every node the GCS adds or removes.

Registered with the head's ``plugins=["tests.cluster.node_event_plugin"]``; the GCS calls
``microray_node_added`` / ``microray_node_removed`` (from a side thread) and this appends
the event as one JSON line to the file named by ``TEST_NODE_EVENTS_FILE``.
"""

from __future__ import annotations

import os
import time

from microray.hookspecs import hookimpl
from microray.testing.event_files import append_event

ENV = "TEST_NODE_EVENTS_FILE"


def _record(kind: str, node: dict) -> None:
    append_event(ENV, {"hook": kind, **node, "recorded_at": time.time(), "recorder_pid": os.getpid()})


@hookimpl
def microray_node_added(node):
    _record("microray_node_added", node)


@hookimpl
def microray_node_removed(node):
    _record("microray_node_removed", node)
