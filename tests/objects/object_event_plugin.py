"""A test plugin that meters object events: every ``microray_object_*`` observer call
is appended as one JSON line to the file named by ``$TEST_OBJECT_EVENTS_FILE``.

The variable has no ``MICRORAY_`` prefix: those are parsed as config keys. Nothing is
written when it is unset, so the plugin is harmless in other tests of the session
(a plugin module stays registered in the process once a cluster named it).
"""

from __future__ import annotations

import os

from microray.hookspecs import hookimpl
from microray.testing.event_files import append_event

EVENTS_ENV = "TEST_OBJECT_EVENTS_FILE"


def _write(event: str, obj: dict) -> None:
    append_event(EVENTS_ENV, {"event": event, "pid": os.getpid(), **obj})


@hookimpl
def microray_object_created(obj: dict) -> None:
    _write("created", obj)


@hookimpl
def microray_object_spilled(obj: dict) -> None:
    _write("spilled", obj)


@hookimpl
def microray_object_restored(obj: dict) -> None:
    _write("restored", obj)


@hookimpl
def microray_object_freed(obj: dict) -> None:
    _write("freed", obj)
