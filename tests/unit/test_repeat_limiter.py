"""``microray.log.RepeatLimiter``: identical warnings become one line plus a count."""

from __future__ import annotations

import pytest
import structlog

from microray.log import RepeatLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(limiter: RepeatLimiter, level: str, event: str, **fields) -> dict | None:
    try:
        return limiter(None, level, {"event": event, **fields})
    except structlog.DropEvent:
        return None


def test_repeats_within_the_window_are_dropped_and_counted_on_the_next_line():
    clock = Clock()
    lim = RepeatLimiter(window_s=5.0, clock=clock)
    first = run(lim, "warning", "lease_request_failed", error="UNAVAILABLE")
    assert first == {"event": "lease_request_failed", "error": "UNAVAILABLE"}
    for _ in range(509):
        clock.now += 0.005
        assert run(lim, "warning", "lease_request_failed", error="UNAVAILABLE") is None
    clock.now = 105.5
    summary = run(lim, "warning", "lease_request_failed", error="UNAVAILABLE")
    assert summary is not None
    assert summary["repeated"] == 509 and summary["in_last_s"] == 5.5
    # a new window starts: the next repeat is dropped again, and its count starts at 0
    clock.now += 1
    assert run(lim, "warning", "lease_request_failed", error="UNAVAILABLE") is None
    clock.now += 5
    assert run(lim, "warning", "lease_request_failed", error="UNAVAILABLE")["repeated"] == 1


def test_numbers_do_not_make_a_warning_new_but_other_text_does():
    lim = RepeatLimiter(window_s=5.0, clock=Clock())
    assert run(lim, "warning", "x", details="ipv4:127.0.0.1:44929 refused")
    assert run(lim, "warning", "x", details="ipv4:127.0.0.1:51111 refused") is None
    assert run(lim, "warning", "x", details="stream removed")
    assert run(lim, "warning", "y", details="stream removed")
    assert run(lim, "error", "x", details="stream removed")


@pytest.mark.parametrize("level", ["debug", "info"])
def test_events_below_warning_are_never_limited(level):
    lim = RepeatLimiter(window_s=5.0, clock=Clock())
    for _ in range(3):
        assert run(lim, level, "task_started") == {"event": "task_started"}


def test_flush_logs_each_pending_count_once(capsys):
    from microray import log as log_setup

    clock = Clock()
    log_setup.configure(level="info", console=__import__("sys").stderr)
    try:
        lim = log_setup._limiter
        lim.clock = clock
        logger = structlog.get_logger("test")
        for _ in range(4):
            logger.warning("gcs_unreachable", error="UNAVAILABLE")
        clock.now += 1
        lim.flush()
        lim.flush()  # nothing pending any more
    finally:
        structlog.reset_defaults()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "gcs_unreachable" in ln]
    assert len(lines) == 2, lines
    assert "repeated=3" in lines[1] and "in_last_s=1.0" in lines[1]
