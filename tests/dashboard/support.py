"""Helpers of the dashboard and browser tests: a real embedded cluster with the ``web``
dashboard, a workload to show in it (tasks, a failing task, a named actor, a stored
object), a small HTTP client and polling with deadlines."""

from __future__ import annotations

import contextlib
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

import microray as ray
from microray.testing import processes

N_TASKS = 12


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s. A
    connection error (the dashboard not serving yet) counts as "not yet"."""
    return processes.wait_for(
        predicate, timeout, interval, what, retry_on=(urllib.error.URLError, ConnectionError, OSError)
    )


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Dash:
    """A running cluster with its dashboard, and what the tests ran on it."""

    url: str
    token: str
    session_dir: str
    context: Any
    init_stderr: str = ""
    refs: dict[str, Any] = field(default_factory=dict)

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Reply(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.read(), dict(exc.headers))

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def get_json(self, path: str) -> Any:
        reply = self.get(path)
        assert reply.status == 200, (path, reply.status, reply.body[:500])
        return reply.json()

    def post(self, path: str, body: Any = None, token: str | None = None, **kw: Any) -> Reply:
        return self.request("POST", path, body if body is not None else {}, token=token, **kw)


def start_dashboard_cluster(**kwargs: Any) -> Dash:
    if ray.is_initialized():
        ray.shutdown()
    kwargs.setdefault("num_cpus", 2)
    kwargs.setdefault("dashboard", "web")
    kwargs.setdefault("dashboard_port", 0)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        ctx = ray.init(**kwargs)
    session = ray.api._worker.session_dir
    token = (Path(session) / "cluster_token").read_text().strip()
    d = Dash(url=f"http://{ctx.dashboard_url}", token=token, session_dir=session, context=ctx, init_stderr=err.getvalue())
    wait_for(lambda: d.get("/api/v0/cluster").status == 200, what="the dashboard to serve")
    return d


@ray.remote
def square(x: int) -> int:
    return x * x


@ray.remote
def explode() -> None:
    raise ValueError("kaboom from the dashboard test")


@ray.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n


def run_workload(d: Dash) -> None:
    assert ray.get([square.remote(i) for i in range(N_TASKS)]) == [i * i for i in range(N_TASKS)]
    with pytest.raises(Exception, match="kaboom"):
        ray.get(explode.remote())
    counter = Counter.options(name="dash_counter").remote()
    assert ray.get(counter.incr.remote()) == 1
    d.refs["counter"] = counter
    d.refs["blob"] = ray.put(b"x" * 300_000)
    # the task history reaches the GCS in batches: wait until it holds what we ran
    wait_for(lambda: d.get_json("/api/v0/tasks?name=square&state=FINISHED")["total"] >= N_TASKS
             and d.get_json("/api/v0/tasks?state=FAILED")["total"] >= 1
             and d.get_json("/api/v0/tasks?name=Counter.incr&state=FINISHED")["total"] >= 1,
             what="the task history to hold the workload")


__all__ = ["Dash", "N_TASKS", "Reply", "start_dashboard_cluster", "wait_for", "run_workload"]


@pytest.fixture(scope="module")
def dash() -> Any:
    """One cluster with the ``web`` dashboard per test module, with ``run_workload`` done;
    stopped when the module ends. Used as a fixture by the dashboard and browser tests."""
    d = start_dashboard_cluster()
    try:
        run_workload(d)
        yield d
    finally:
        d.refs.clear()
        ray.shutdown()
