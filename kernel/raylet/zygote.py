"""The worker fork server.

Started by the raylet before it creates any thread or gRPC object. It imports
what every worker needs once, then forks a worker per request in milliseconds
(no interpreter start, shared pages). Protocol over two pipes, one JSON
object per line:

  raylet -> zygote  {"op": "fork", "worker_id": ..., "env": {...}}
  zygote -> raylet  {"op": "forked", "worker_id": ..., "pid": ...}
                    {"op": "exited", "pid": ..., "status": ...}
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import sys

from microray import process

# The module a worker process runs (its ``run(worker_id, args)``), by name: the raylet
# layer starts the core worker without importing it.
WORKER_MAIN = "microray.core.worker_main"

# Everything a worker imports, including what a core worker loads lazily (submitter,
# executor, actor calls, the public API its tasks call), by name.
WORKER_MODULES = (
    "concurrent.futures.thread",
    "queue",
    "cloudpickle",
    "grpc",
    "structlog",
    "microray.actor",
    "microray.api",
    "microray.core.actor_connection",
    "microray.core.executor",
    "microray.core.service",
    "microray.core.submitter",
    "microray.core.task_events",
    "microray.core.worker",
    WORKER_MAIN,
    "microray.remote_function",
    "microray.runtime_context",
)


def _preimport() -> None:
    """Load everything a worker imports, once here, so every fork shares it.

    Called in both start modes: a forking raylet has the common modules already, but
    not those a core worker loads lazily (submitter, executor, actor calls, ...). A
    module first imported in a worker costs every worker its load (and, with
    PYTHONDONTWRITEBYTECODE, its compile): ~40 ms of CPU each, measured."""
    for name in WORKER_MODULES:
        importlib.import_module(name)


class ZygoteHandle:
    """The raylet's end of the zygote: send fork requests, read its event lines."""

    def __init__(self, child, to_zygote: int, from_zygote: int) -> None:
        self.child = child
        self._to = to_zygote
        self._from = os.fdopen(from_zygote, "rb", buffering=0)
        self._buf = b""

    def request(self, req: dict) -> None:
        os.write(self._to, (json.dumps(req) + "\n").encode())

    def fileno(self) -> int:
        return self._from.fileno()

    def read_events(self) -> list[dict] | None:
        """Events available now; None when the zygote has exited."""
        chunk = os.read(self._from.fileno(), 65536)
        if not chunk:
            return None
        self._buf += chunk
        events = []
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            events.append(json.loads(line))
        return events

    def terminate(self) -> None:
        self.child.terminate()

    def kill(self) -> None:
        self.child.kill()

    def wait(self, timeout: float | None = None) -> int:
        return self.child.wait(timeout)


def start(args: dict, method: str, log_path: str) -> ZygoteHandle:
    """Start the zygote by fork (the caller has imported everything already) or spawn."""
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    if method == "fork":
        child = process.fork_child(
            lambda: serve(to_r, from_w, args),
            keep_fds=(to_r, from_w),
            log_path=log_path,
        )
    else:
        child = process.spawn_child(
            ["-m", "microray.raylet.zygote", json.dumps(args), str(to_r), str(from_w)],
            pass_fds=(to_r, from_w),
            log_path=log_path,
            embedded=True,
        )
    os.close(to_r)
    os.close(from_w)
    return ZygoteHandle(child, to_w, from_r)


def serve(in_fd: int, out_fd: int, args: dict) -> None:
    process.die_with_parent()
    _preimport()
    import gc

    # Workers share these objects' pages; a collection would dirty them. freeze() only
    # moves the tracked objects to the permanent generation (no traversal); a collect()
    # first would write to every object's header and copy every page here.
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))

    def send(msg: dict) -> None:
        os.write(out_fd, (json.dumps(msg) + "\n").encode())

    buf = b""
    while True:
        try:
            ready, _, _ = select.select([in_fd, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 512)
        while True:  # reap every exited child
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            send({"op": "exited", "pid": pid, "status": os.waitstatus_to_exitcode(status)})
        if in_fd in ready:
            chunk = os.read(in_fd, 65536)
            if not chunk:
                return  # the raylet is gone
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                if req.get("op") != "fork":
                    continue
                pid = os.fork()
                if pid == 0:
                    for fd in (wake_r, wake_w, out_fd, in_fd):
                        os.close(fd)
                    _run_worker(req, args)
                send({"op": "forked", "worker_id": req["worker_id"], "pid": pid})


def _run_worker(req: dict, args: dict) -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    process.die_with_parent()
    os.environ.update(req.get("env") or {})
    worker_main = importlib.import_module(WORKER_MAIN)

    code = 0
    try:
        worker_main.run(req["worker_id"], {**args, **req})
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        code = 1
    os._exit(code)


def main() -> None:
    serve(int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[1]))


if __name__ == "__main__":
    main()
