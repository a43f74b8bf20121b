"""What the handlers find on the aiohttp app, and the JSON response helpers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from microray.interfaces.dashboard import DashboardContext

from microray.plugins.dashboard.web.jobs import JobManager
from microray.plugins.dashboard.web.metrics import Metrics
from microray.plugins.dashboard.web.source import StateSource

K_TOKEN = web.AppKey("token", str)
K_SOURCE = web.AppKey("source", StateSource)
K_JOBS = web.AppKey("jobs", JobManager)
K_METRICS = web.AppKey("metrics", Metrics)
K_CONTEXT = web.AppKey("context", DashboardContext)
K_LOOPBACK = web.AppKey("loopback", bool)


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_default, separators=(",", ":"))


def _default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def error(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status=status)


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=dumps({"error": message}), content_type="application/json")
