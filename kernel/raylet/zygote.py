"""The worker fork server.

Started by the raylet before it creates any thread or gRPC object. It imports
what every worker needs once, then forks a worker per request in milliseconds
(no interpreter start, shared pages). Protocol over its stdin/stdout, one JSON
object per line:

  raylet -> zygote  {"op": "fork", "worker_id": ..., "env": {...}}
  zygote -> raylet  {"op": "forked", "worker_id": ..., "pid": ...}
                    {"op": "exited", "pid": ..., "status": ...}
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no stray workers)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def _preimport() -> None:
    # Everything a worker imports, loaded once here and shared by every fork.
    import cloudpickle  # noqa: F401
    import grpc  # noqa: F401
    import structlog  # noqa: F401

    import microray.core.worker  # noqa: F401
    import microray.core.executor  # noqa: F401
    import microray.api  # noqa: F401


def main() -> None:
    die_with_parent()
    args = json.loads(sys.argv[1])
    _preimport()
    cmd_in = sys.stdin.buffer
    out_fd = os.dup(sys.stdout.fileno())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))

    def send(msg: dict) -> None:
        os.write(out_fd, (json.dumps(msg) + "\n").encode())

    buf = b""
    in_fd = cmd_in.fileno()
    while True:
        ready, _, _ = select.select([in_fd, wake_r], [], [])
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
                    os.close(wake_r)
                    os.close(wake_w)
                    os.close(out_fd)
                    os.close(in_fd)
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    die_with_parent()
                    os.environ.update(req.get("env") or {})
                    from microray.core import worker_main

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
                send({"op": "forked", "worker_id": req["worker_id"], "pid": pid})


if __name__ == "__main__":
    main()
