"""De-duplication of task output lines across workers (pure core, no process or clock)."""

from __future__ import annotations

from microray.core.log_dedup import Deduplicator, canonical


def texts(lines) -> list[str]:
    return [line.render() for line in lines]


def test_numbers_and_spaces_do_not_make_lines_different() -> None:
    assert canonical("step 3 took  0.51s") == canonical("step 12 took 1.5s")
    assert canonical("hello") != canonical("hullo")


def test_a_line_from_ten_workers_is_printed_once_then_counted() -> None:
    dedup = Deduplicator(window_s=5.0)
    printed = []
    for pid in range(100, 110):
        printed += texts(dedup.feed(f"(f pid={pid})", ("10.0.0.1", pid), ["hello"], False, now=1.0))
    assert printed == ["(f pid=100) hello"]
    assert texts(dedup.flush(now=2.0)) == []  # the window has not ended
    assert texts(dedup.flush(now=6.5)) == ["(f pid=109) hello [repeated 9x across cluster]"]
    assert texts(dedup.flush(now=20.0)) == []


def test_one_workers_own_repeats_are_printed_as_they_come() -> None:
    dedup = Deduplicator()
    out = texts(dedup.feed("(f pid=1)", ("a", 1), ["tick 1", "tick 2", "tick 3"], False, now=0.0))
    assert out == ["(f pid=1) tick 1", "(f pid=1) tick 2", "(f pid=1) tick 3"]
    assert texts(dedup.flush(now=100.0)) == []


def test_blank_lines_stderr_and_a_new_window_are_not_folded() -> None:
    dedup = Deduplicator(window_s=5.0)
    assert texts(dedup.feed("(f pid=1)", ("a", 1), ["", "x"], False, now=0.0)) == ["(f pid=1) ", "(f pid=1) x"]
    assert texts(dedup.feed("(f pid=2)", ("a", 2), [""], False, now=0.1)) == ["(f pid=2) "]
    assert texts(dedup.feed("(f pid=2)", ("a", 2), ["x"], True, now=0.2)) == ["(f pid=2) x"]  # stderr
    assert texts(dedup.feed("(f pid=3)", ("a", 3), ["x"], False, now=0.3)) == []
    # the window ended: the count comes first, then the line starts a new window
    assert texts(dedup.feed("(f pid=4)", ("a", 4), ["x"], False, now=9.0)) == [
        "(f pid=3) x [repeated 1x across cluster]", "(f pid=4) x"]


def test_everything_is_flushed_when_the_driver_leaves() -> None:
    dedup = Deduplicator(window_s=5.0)
    dedup.feed("(f pid=1)", ("a", 1), ["bye"], False, now=0.0)
    dedup.feed("(f pid=2, ip=b)", ("b", 2), ["bye"], False, now=0.1)
    assert texts(dedup.flush(now=0.2, everything=True)) == ["(f pid=2, ip=b) bye [repeated 1x across cluster]"]
