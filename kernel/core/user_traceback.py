"""The traceback of a task's error as its author wants it: from the first frame of user
code on, as Ray shows it. microray's own frames that lead into the user's function (the
executor) are left out; the whole traceback is logged at debug level."""

from __future__ import annotations

import os
import traceback
from types import TracebackType

import structlog

log = structlog.get_logger(__name__)

_KERNEL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # microray's own files


def _is_kernel(tb: TracebackType) -> bool:
    return tb.tb_frame.f_code.co_filename.startswith(_KERNEL_DIR)


def format_user_traceback(exc: BaseException) -> str:
    """``exc`` with its chain, formatted without the leading microray frames (all of them
    are kept when the error arose in microray itself, before user code ran)."""
    tb = exc.__traceback__
    first = tb
    while first is not None and _is_kernel(first):
        first = first.tb_next
    if first is None or first is tb:
        return "".join(traceback.format_exception(exc))
    log.debug("task_error_traceback", traceback="".join(traceback.format_exception(exc)))
    return "".join(traceback.format_exception(type(exc), exc, first))


__all__ = ["format_user_traceback"]
