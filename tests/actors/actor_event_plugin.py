"""A test plugin: records every actor lifecycle event the GCS reports.

Registered with ``init(plugins=["tests.actors.actor_event_plugin"])``; the GCS calls
``microray_actor_state_changed`` (from a side thread) and this appends the event as
one JSON line to the file named by ``TEST_ACTOR_EVENTS_FILE`` (not ``MICRORAY_*``:
those names are read as config keys).
"""

from __future__ import annotations

import json
import os
import threading
import time

from microray.hookspecs import hookimpl

ENV = "TEST_ACTOR_EVENTS_FILE"
_lock = threading.Lock()


@hookimpl
def microray_actor_state_changed(actor):
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({**actor, "recorded_at": time.time(), "recorder_pid": os.getpid()}, default=str) + "\n"
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
