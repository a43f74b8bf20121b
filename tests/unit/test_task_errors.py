"""A task's exception reaches the caller as a RayTaskError with its traceback text,
whatever the exception: one whose __init__ takes other arguments than its args, one
that cannot be pickled, one whose class the caller cannot load."""

from __future__ import annotations

import sys
import threading
import traceback
import types

import pytest

from microray import serialization
from microray.exceptions import RayTaskError


class TwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


class HoldsALock(Exception):
    def __init__(self):
        super().__init__("an error holding a lock")
        self.lock = threading.Lock()


class BadReduce(Exception):
    def __reduce__(self):
        raise RuntimeError("no pickling today")


def _task_error(exc: BaseException) -> RayTaskError:
    try:
        raise exc
    except BaseException as raised:  # noqa: BLE001
        return RayTaskError("f", traceback.format_exc(), raised, 1234, "127.0.0.1")


def _travel(err: RayTaskError) -> RayTaskError:
    value, is_error = serialization.deserialize(serialization.serialize_error(err).to_bytes())
    assert is_error and isinstance(value, RayTaskError)
    return value


def test_exception_with_a_two_argument_init_arrives_whole() -> None:
    got = _travel(_task_error(TwoArgs("first", "second")))
    assert isinstance(got.cause, TwoArgs) and got.cause.args == ("first",) and got.cause.b == "second"
    err = got.as_instanceof_cause()
    assert isinstance(err, TwoArgs) and isinstance(err, RayTaskError)
    assert err.b == "second"  # the cause's attributes read through
    assert "TwoArgs in f() (pid=1234" in str(err) and "TwoArgs: first" in str(err)
    assert "Traceback (most recent call last)" in str(err)
    # and it travels again (a task that re-raises what it got)
    again = _travel(err).as_instanceof_cause()
    assert isinstance(again, TwoArgs) and again.b == "second"


def test_exception_whose_reduce_raises_travels_by_its_state() -> None:
    err = _travel(_task_error(BadReduce("odd one"))).as_instanceof_cause()
    assert isinstance(err, BadReduce) and err.cause.args == ("odd one",)


def test_unpicklable_exception_arrives_as_its_name_and_traceback() -> None:
    got = _travel(_task_error(HoldsALock()))
    assert got.cause is None and got.cause_name == "HoldsALock"
    assert got.as_instanceof_cause() is got
    text = str(got)
    assert "HoldsALock in f()" in text and "an error holding a lock" in text and "Traceback" in text


def test_cause_whose_class_the_caller_cannot_load() -> None:
    module = types.ModuleType("gone_before_get")
    exec("class Vanishing(Exception):\n    pass\n", module.__dict__)
    sys.modules["gone_before_get"] = module
    try:
        data = serialization.serialize_error(_task_error(module.Vanishing("see you"))).to_bytes()
    finally:
        del sys.modules["gone_before_get"]
    got, _ = serialization.deserialize(data)
    assert isinstance(got, RayTaskError) and got.cause is None and got.cause_name == "Vanishing"
    assert "see you" in str(got)
