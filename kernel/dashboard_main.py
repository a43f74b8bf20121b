"""The dashboard process: runs the configured dashboard plugin on the head node.

Started by ``start_head`` like the GCS and the raylet (``main(argv)`` with a
``--ready-fd`` that gets the URL line once serving, or ``ERROR ...``). The head
binds the listening socket itself and passes it as ``--listen-fd``, so the URL
that ``init()`` prints is valid before this process has finished importing its
web server. The session token is read from ``--token-file`` (never argv).

With ``dashboard_on_demand`` (the default) the process reports ready and then
only waits for the first connection on that socket (the head has checked the
dashboard's name and options already) before it sets up logging and imports and
starts the dashboard: an idle cluster nobody looks
at does not carry a web server (about 15 MB with aiohttp), and the connection
waits in the socket's backlog meanwhile (~0.3 s). Nothing is lost by starting
late: the charts' history is kept by the GCS.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import threading

import structlog

from microray import config as config_mod
from microray import log as log_setup
from microray import proctitle, session
from microray.process import report_start_failure

log = structlog.get_logger(__name__)


def _serve(args: argparse.Namespace, cfg: config_mod.Config) -> None:
    from microray.interfaces.dashboard import DashboardContext
    from microray.plugin_manager import get_plugin_manager

    reg = get_plugin_manager(cfg.plugins).select("dashboard", cfg.dashboard)
    options = reg.validate_options("dashboard", cfg.dashboard_options)
    with open(args.token_file) as f:
        token = f.read().strip()
    context = DashboardContext(
        gcs_address=args.gcs_address,
        session_dir=args.session_dir,
        token=token,
        host=args.host,
        port=args.port,
        options=options,
        listen_fd=args.listen_fd,
        tls=dict(cfg.tls),
    )
    dashboard = reg.factory(**options)
    url = dashboard.start(context)
    # until here SIGTERM ends the process at once (nothing to clean up yet); from now on
    # it stops the dashboard cleanly (its jobs, its server)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    _restore_priority()
    log.info("dashboard_started", url=url, backend=cfg.dashboard)
    _report_ready(args, url or "-")
    stop.wait()
    dashboard.stop()
    log.info("dashboard_stopped")


def _report_ready(args: argparse.Namespace, line: str) -> None:
    if args.ready_fd is not None:
        os.write(args.ready_fd, f"{line}\n".encode())
        os.close(args.ready_fd)
        args.ready_fd = None


def _wait_readable(fd: int) -> None:
    """Block until the listening socket ``fd`` has a connection waiting (SIGTERM ends us)."""
    while True:
        try:
            readable, _, _ = select.select([fd], [], [])
        except InterruptedError:
            continue
        if readable:
            return


NICE_WHILE_STARTING = 10
_started_priority = 0


def _restore_priority() -> None:
    """Back to the priority we started with, where the OS lets us (raising needs CAP_SYS_NICE)."""
    try:  # the nice value is per thread on Linux: every thread started meanwhile too
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, _started_priority)
        except OSError:
            log.debug("dashboard_priority_kept", thread=tid)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="microray-dashboard")
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--config-file", required=True, help="the node's config.json (0600; holds secrets)")
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8265)
    parser.add_argument("--listen-fd", type=int, default=-1)
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)
    proctitle.set_role("dashboard", argv)
    # start (import the web server, bind, first samples) at low priority: on a small machine
    # the driver's first task must not wait for the dashboard's imports
    global _started_priority
    _started_priority = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, _started_priority + NICE_WHILE_STARTING)
    except OSError:
        pass
    session.hold(args.session_dir)
    cfg = session.read_node_config(args.config_file)
    if cfg.dashboard_on_demand and args.listen_fd >= 0:
        # the head checked the dashboard's name and options already; wait before doing
        # anything else, so a waiting dashboard holds next to nothing of its own
        _report_ready(args, "on-demand")
        _wait_readable(args.listen_fd)
    log_setup.configure(level=cfg.log_level, log_file=os.path.join(args.session_dir, "logs", "dashboard.log"))
    structlog.contextvars.bind_contextvars(component="dashboard")
    if cfg.dashboard_on_demand and args.listen_fd >= 0:
        _restore_priority()  # someone is waiting for the page: start at full speed
        log.info("dashboard_first_connection")
    try:
        _serve(args, cfg)
    except Exception as exc:  # noqa: BLE001 -- report the cause to whoever started us
        log.error("dashboard_failed", error=f"{type(exc).__name__}: {exc}")
        report_start_failure(args.ready_fd, exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
