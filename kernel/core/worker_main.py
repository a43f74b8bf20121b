"""Entry point of a worker process (forked by the zygote, or spawned by the raylet)."""

from __future__ import annotations

import faulthandler
import json
import os
import sys
from typing import Any

import structlog

from microray import log as log_setup


def _redirect_output(logs: str, worker_id: str) -> None:
    for fd, suffix in ((1, "out"), (2, "err")):
        f = os.open(log_setup.worker_log_path(logs, worker_id, suffix), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)


def run(worker_id: str, args: dict[str, Any]) -> None:
    logs = os.path.join(args["session_dir"], "logs")
    _redirect_output(logs, worker_id)
    # a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL) leaves the Python stack of
    # every thread in the worker's .err log before the process dies
    faulthandler.enable(file=sys.stderr, all_threads=True)
    log_setup.configure(level=args.get("log_level", "info"), log_file=os.path.join(logs, f"worker-{worker_id[:12]}.log"))
    structlog.contextvars.bind_contextvars(component="worker", worker_id=worker_id)
    from microray import rpc
    from microray.core.worker import WORKER, CoreWorker

    # the cluster token: from the zygote (its raylet's), or, for a worker the raylet
    # spawned, from the environment -- taken out of it, so no task's subprocess sees it
    token = os.environ.pop(rpc.TOKEN_ENV, None)
    token = args.get("token") or token
    credentials = rpc.Credentials(token or "", args.get("tls") or {})
    # the worker makes itself the process's current one (core.context): the API calls
    # of its tasks go through it
    cw = CoreWorker(WORKER, args["raylet_address"], worker_id=worker_id, io_loop=args.get("io_loop", "auto"),
                    credentials=credentials)
    if args.get("runtime_env"):  # the tasks it runs submit theirs in it too (as in Ray)
        cw.job_runtime_env = json.loads(args["runtime_env"])
    structlog.get_logger(__name__).info("worker_started", pid=os.getpid())
    cw.executor.run_forever()
