"""The ``web`` dashboard: an aiohttp server on a thread of the dashboard process.

``WebDashboard.start(context)`` builds the app, serves it on the socket the head
bound (or binds ``host:port`` itself) and returns the URL; ``stop()`` stops the jobs
it runs and the server. Security: every request that is not GET/HEAD/OPTIONS needs
the cluster token (``Authorization: Bearer <token>`` or ``X-Microray-Token``); no
response carries it; a server bound to a loopback address only answers requests
whose Host is a loopback name (no DNS rebinding); pages get a strict CSP and no
Referer, so a token in the address bar never leaves the page.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from microray.interfaces.dashboard import DashboardContext

from microray.plugins.dashboard.web import api, detail
from microray.plugins.dashboard.web.jobs import JobManager
from microray.plugins.dashboard.web.keys import (
    K_CONTEXT, K_JOBS, K_LOOPBACK, K_METRICS, K_SOURCE, K_TOKEN, error,
)
from microray.plugins.dashboard.web.metrics import Metrics
from microray.plugins.dashboard.web.source import StateSource

log = structlog.get_logger(__name__)

STATIC = Path(__file__).parent / "static"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

def token_ok(request: web.Request) -> bool | None:
    """True: the right token; False: a wrong one; None: none given."""
    given = request.headers.get("X-Microray-Token")
    auth = request.headers.get("Authorization", "")
    if given is None and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if not given:
        return None
    return hmac.compare_digest(given.encode(), request.app[K_TOKEN].encode())


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.app[K_LOOPBACK] and _host_name(request.host or "") not in ("127.0.0.1", "localhost", "::1"):
        return error(421, "this dashboard listens on a loopback address; open it as 127.0.0.1 or localhost")
    if request.method not in SAFE_METHODS:
        ok = token_ok(request)
        if ok is None:
            return error(401, "this endpoint needs the cluster token: send 'Authorization: Bearer <token>' "
                              "or 'X-Microray-Token: <token>' (`microray token` prints it on the head machine)")
        if not ok:
            return error(403, "wrong cluster token")
    t0 = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException:
        raise
    except api.StateUnavailable as exc:
        response = error(503, str(exc))
    except Exception as exc:  # noqa: BLE001 -- an API error is a JSON 500, logged
        log.warning("dashboard_handler_failed", path=request.path, error=repr(exc))
        response = error(500, f"{type(exc).__name__}: {exc}")
    finally:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        request.app[K_METRICS].http.labels(route, request.method).observe(time.perf_counter() - t0)
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(context: DashboardContext, source: StateSource, jobs: JobManager, metrics: Metrics) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=1024 * 1024)
    app[K_TOKEN] = context.token
    app[K_SOURCE] = source
    app[K_JOBS] = jobs
    app[K_METRICS] = metrics
    app[K_CONTEXT] = context
    app[K_LOOPBACK] = _is_loopback(context.host)
    api.add_routes(app)
    detail.add_routes(app)

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC, follow_symlinks=False, append_version=False)
    return app


class WebDashboard:
    """The ``web`` dashboard plugin object (``factory(**options)``)."""

    def __init__(self) -> None:
        self.url = ""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self, context: DashboardContext) -> str:
        self._thread = threading.Thread(target=self._run, args=(context,), name="dashboard-web", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self, context: DashboardContext) -> None:
        try:
            asyncio.run(self._main(context))
        except BaseException as exc:  # noqa: BLE001 -- handed to start()
            self._error = exc
        finally:
            self._started.set()

    async def _main(self, context: DashboardContext) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        metrics = Metrics()
        source = StateSource(context.gcs_address, metrics.observe_rpc, token=context.token, tls=context.tls)

        def mirror(sid: str, value: bytes | None) -> None:
            from microray.protocol import gcs_pb2

            if value is None:  # the job was deleted
                source.pool.submit(lambda: source.client().gcs.KvDel(
                    gcs_pb2.KvDelRequest(ns="job", key=sid.encode()), timeout=5))
                return
            source.pool.submit(lambda: source.client().gcs.KvPut(
                gcs_pb2.KvPutRequest(ns="job", key=sid.encode(), value=value, overwrite=True), timeout=5))

        jobs = JobManager(context.session_dir, context.gcs_address, mirror=mirror, token=context.token)
        app = build_app(context, source, jobs, metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        if context.listen_fd >= 0:
            sock = socket.socket(fileno=context.listen_fd)
            site: web.BaseSite = web.SockSite(runner, sock)
            host, port = sock.getsockname()[:2]
        else:
            site = web.TCPSite(runner, context.host, context.port)
            host, port = context.host, context.port
        await site.start()
        if context.listen_fd < 0 and port == 0:
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        shown = context.host if context.host not in ("0.0.0.0", "::") else host
        self.url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
        upkeep = asyncio.get_running_loop().create_task(_upkeep(jobs))
        log.info("web_dashboard_serving", url=self.url, pid=os.getpid())
        self._started.set()
        await self._stop.wait()
        upkeep.cancel()
        await asyncio.get_running_loop().run_in_executor(None, jobs.stop_all)
        await runner.cleanup()
        await source.close()


async def _upkeep(jobs: JobManager) -> None:
    while True:
        await asyncio.sleep(0.2)
        try:
            jobs.poll()
        except Exception as exc:  # noqa: BLE001 -- keep polling
            log.warning("job_poll_failed", error=repr(exc))
