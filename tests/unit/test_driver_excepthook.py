"""The driver's ``sys.excepthook`` (api._DriverExceptHook): an uncaught exception that ends
the script records how the job ends (FAILED; KeyboardInterrupt: STOPPED) for the
disconnect at exit, and the hook it replaced still prints the traceback."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from microray import api
from microray.core import context


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch):
    seen: list[type] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, e, tb: seen.append(t))
    monkeypatch.delattr(sys, "ps1", raising=False)
    worker = SimpleNamespace(job_end=None)
    monkeypatch.setattr(context, "worker", worker)
    api._DriverExceptHook.install()
    api._DriverExceptHook.install()  # once only, however often init runs
    assert isinstance(sys.excepthook, api._DriverExceptHook)
    assert not isinstance(sys.excepthook.previous, api._DriverExceptHook)
    return worker, seen


def test_an_uncaught_exception_fails_the_job_and_is_still_printed(driver) -> None:
    worker, seen = driver
    sys.excepthook(ZeroDivisionError, ZeroDivisionError("the model diverged"), None)
    assert worker.job_end == ("FAILED", "the driver raised ZeroDivisionError: the model diverged")
    assert seen == [ZeroDivisionError]


def test_ctrl_c_stops_the_job(driver) -> None:
    worker, seen = driver
    sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)
    assert worker.job_end == ("STOPPED", "the driver was interrupted (KeyboardInterrupt)")
    assert seen == [KeyboardInterrupt]


def test_at_an_interactive_prompt_nothing_is_recorded(driver, monkeypatch: pytest.MonkeyPatch) -> None:
    worker, seen = driver
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    sys.excepthook(ValueError, ValueError("typo"), None)
    assert worker.job_end is None and seen == [ValueError]
