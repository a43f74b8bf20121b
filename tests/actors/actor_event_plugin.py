"""A test plugin: records every actor lifecycle event the GCS reports.

Registered with ``init(plugins=["tests.actors.actor_event_plugin"])``; the GCS calls
``microray_actor_state_changed`` (from a side thread) and this appends the event as
one JSON line to the file named by ``TEST_ACTOR_EVENTS_FILE`` (not ``MICRORAY_*``:
those names are read as config keys).
"""

from __future__ import annotations

import os
import time

from microray.hookspecs import hookimpl
from microray.testing.event_files import append_event

ENV = "TEST_ACTOR_EVENTS_FILE"


@hookimpl
def microray_actor_state_changed(actor):
    append_event(ENV, {**actor, "recorded_at": time.time(), "recorder_pid": os.getpid()})
