"""``describe_exit``: how a process ended, in the words a worker's crash error uses."""

from __future__ import annotations

import signal

from microray.process import describe_exit


def test_exit_codes():
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(3) == "exited with code 3"


def test_signals_are_named():
    assert describe_exit(-signal.SIGKILL) == "killed by signal 9 (SIGKILL)"
    assert describe_exit(-signal.SIGSEGV) == "killed by signal 11 (SIGSEGV)"
    assert describe_exit(-signal.SIGBUS) == f"killed by signal {int(signal.SIGBUS)} (SIGBUS)"


def test_an_unknown_signal_number_still_reads():
    assert describe_exit(-200) == "killed by signal 200"
