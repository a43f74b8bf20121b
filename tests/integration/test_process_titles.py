"""Every process of a cluster says what it is in ps/top (its command line and name), and a
worker says what it runs; task errors show the user's file, line and source, not
microray's frames."""

from __future__ import annotations

import inspect
import os

import psutil
import pytest

import microray as ray
from microray.testing.processes import session_processes, wait_for

@ray.remote
class Gate:  # holds tasks and calls running until the test has looked at their workers
    def __init__(self):
        self.open = False

    def release(self):
        self.open = True

    def is_open(self):
        return self.open


@ray.remote
def f(gate):
    while not ray.get(gate.is_open.remote()):
        pass
    return os.getpid()


@ray.remote
class Counter:
    def pid(self):
        return os.getpid()

    def inc(self, gate):
        while not ray.get(gate.is_open.remote()):
            pass
        return 1


def _title(pid: int) -> str:
    return " ".join(psutil.Process(pid).cmdline()).strip()


def test_each_process_shows_its_role(cluster) -> None:
    gate = Gate.remote()
    counter = Counter.remote()
    counter_pid = ray.get(counter.pid.remote())
    assert ray.get(gate.is_open.remote()) is False
    wait_for(lambda: _title(counter_pid) == "microray::Counter", what="the idle actor's title")
    running = f.remote(gate)
    calling = counter.inc.remote(gate)
    try:
        def titles() -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for role, procs in session_processes(cluster.session_dir).items():
                for proc in procs:
                    try:
                        out.setdefault(role, set()).add(" ".join(proc.cmdline()).split(" ")[0])
                    except psutil.Error:
                        continue
            return out

        def shown() -> dict[str, set[str]] | None:
            now = titles()
            workers = now.get("worker", set())
            return now if {"microray::f", "microray::Counter.inc"} <= workers else None

        now = wait_for(shown, timeout=60, what="the running task's and actor call's titles")
        assert now["gcs"] == {"microray-gcs"}
        assert now["raylet"] == {"microray-raylet"}
        assert now["zygote"] == {"microray-zygote"}
        assert now.get("dashboard", {"microray-dashboard"}) == {"microray-dashboard"}
        assert now["worker"] <= {"microray::f", "microray::Counter.inc", "microray::Gate", "microray::Gate.is_open",
                                 "microray::IDLE", "microray::Counter"}
        assert psutil.Process(counter_pid).name().startswith("microray::Count")  # comm: 15 characters
        for role in ("gcs", "raylet"):
            (proc,) = session_processes(cluster.session_dir)[role]
            assert proc.name() == f"microray-{role}"
    finally:
        ray.get(gate.release.remote())
    ray.get([running, calling])
    wait_for(lambda: _title(counter_pid) == "microray::Counter", what="the actor's title after the call")


def _raise_in_user_code():
    raise ValueError("bad input")


@ray.remote
def boom():
    _raise_in_user_code()


def test_task_error_shows_the_users_file_line_and_source(cluster) -> None:
    with pytest.raises(ValueError) as info:
        ray.get(boom.remote())
    text = str(info.value)
    here = os.path.abspath(__file__)
    line = inspect.getsourcelines(boom._function)[1] + 2 if hasattr(boom, "_function") else None
    assert f'File "{here}"' in text, text
    assert "in boom\n    _raise_in_user_code()" in text, text
    assert 'raise ValueError("bad input")' in text, text
    if line is not None:
        assert f'line {line}, in boom' in text, text
    assert "microray" not in text.replace(here, ""), text  # no executor or other kernel frame
    assert "<dynamic-code>" not in text
