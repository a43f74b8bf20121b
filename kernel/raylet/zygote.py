"""The worker fork server.

Started by the raylet before it creates any thread or gRPC object. It imports
what every worker needs once, then forks a worker per request in milliseconds
(no interpreter start, shared pages). Protocol over two pipes, one JSON
object per line:

  raylet -> zygote  {"op": "args", ...}   first line to a spawned zygote: its arguments
                    {"op": "fork", "worker_id": ..., "env": {...}, ...}
  zygote -> raylet  {"op": "ready"}       imports done: a fork takes milliseconds now
                    {"op": "forked", "worker_id": ..., "pid": ...}

Workers are not the zygote's children. Each is forked through a middle process that
exits at once, so the worker is re-parented to the raylet (a child subreaper, see
``process.become_subreaper``): the raylet reaps it and learns how it ended, and the
worker dies with the raylet (``PR_SET_PDEATHSIG``, armed once re-parented), not with
the zygote. A zygote that dies takes no worker with it; the raylet starts another.

The zygote outlives a raylet killed without notice for a moment: the end of its
request pipe tells it so at once, and it removes the node's object-store namespace
(shared memory and spill files) before it leaves, which nobody else would do promptly.
The raylet's own spawn fallback (``spawn_worker``) runs a worker without a zygote.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import sys
import time

from microray import process, proctitle

# The module a worker process runs (its ``run(worker_id, args)``), by name: the raylet
# layer starts the core worker without importing it.
WORKER_MAIN = "microray.core.worker_main"
# a spawned worker's runtime env key (in its environment: it holds the env_vars)
RUNTIME_ENV_VAR = "MICRORAY_WORKER_RUNTIME_ENV"

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
    "microray.core.recovery",
    "microray.core.service",
    "microray.core.submitter",
    "microray.core.task_events",
    "microray.core.task_output",
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
    """The raylet's end of the zygote: send fork requests, read its event lines.

    ``ready`` is True once the zygote said its imports are done (a zygote started by
    fork is ready at once); ``args`` and ``log_path`` start a replacement."""

    def __init__(self, child, to_zygote: int, from_zygote: int, args: dict, log_path: str, ready: bool) -> None:
        self.child = child
        self.args = args
        self.log_path = log_path
        self.ready = ready
        self._to = to_zygote
        self._from = os.fdopen(from_zygote, "rb", buffering=0)
        self._buf = b""

    @property
    def pid(self) -> int:
        return self.child.pid

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

    def close(self) -> None:
        """Close our ends of the pipes (after the zygote exited)."""
        for close in (lambda: os.close(self._to), self._from.close):
            try:
                close()
            except OSError:
                pass

    def terminate(self) -> None:
        self.child.terminate()

    def kill(self) -> None:
        self.child.kill()

    def wait(self, timeout: float | None = None) -> int:
        return self.child.wait(timeout)


def start(args: dict, method: str, log_path: str, *, ready: bool = True) -> ZygoteHandle:
    """Start the zygote by fork (the caller has imported everything already) or spawn.

    ``args``: ``session_dir``, ``node_id`` and ``config_json`` of the node. The zygote
    does not die with the raylet by a signal: it sees its request pipe close, cleans
    up after the raylet and leaves. ``ready=False``: the handle reports ready only once
    the zygote says so (a replacement started while the node serves)."""
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    if method == "fork":
        child = process.fork_child(
            lambda: serve(to_r, from_w, args),
            keep_fds=(to_r, from_w),
            log_path=log_path,
            die_with_parent_=False,
        )
    else:
        # the arguments (the node's config) go through the pipe, never on a command line
        child = process.spawn_child(
            ["-m", "microray.raylet.zygote", str(to_r), str(from_w)],
            pass_fds=(to_r, from_w),
            log_path=log_path,
            embedded=True,
            death_signal=False,
        )
        os.write(to_w, (json.dumps({"op": "args", **args}) + "\n").encode())
    os.close(to_r)
    os.close(from_w)
    return ZygoteHandle(child, to_w, from_r, args, log_path, ready or method == "fork")


def spawn_worker(req: dict, log_path: str, env_vars: dict[str, str] | None = None):
    """Start one worker as a fresh interpreter, a child of this process (the raylet):
    what the raylet does while it has no zygote. ``req`` is a fork request (without
    ``env``; ``env_vars`` go to the child's environment, never its command line)."""
    return process.spawn_child(
        ["-m", "microray.raylet.zygote", "--worker", json.dumps(req)],
        log_path=log_path,
        embedded=True,
        death_signal=False,  # the raylet runs threads: the worker arms it (_tie_to_raylet)
        env_vars=env_vars,
    )


def serve(in_fd: int, out_fd: int, args: dict, pending: bytes = b"") -> None:
    """Fork a worker per request line on ``in_fd`` until it closes (or SIGTERM)."""
    raylet_pid = os.getppid()
    proctitle.set_role("zygote", [])
    _preimport()
    import gc

    # Workers share these objects' pages; a collection would dirty them. freeze() only
    # moves the tracked objects to the permanent generation (no traversal); a collect()
    # first would write to every object's header and copy every page here.
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))

    def send(msg: dict) -> None:
        os.write(out_fd, (json.dumps(msg) + "\n").encode())

    send({"op": "ready"})
    buf = pending
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            if req.get("op") != "fork":
                continue
            pid = _fork_worker(req, args, raylet_pid, (in_fd, out_fd))
            if pid:
                send({"op": "forked", "worker_id": req["worker_id"], "pid": pid})
        chunk = os.read(in_fd, 65536)
        if not chunk:
            break  # the raylet closed the pipe: it is gone
        buf += chunk
    _clean_after_raylet(args, raylet_pid)


def _fork_worker(req: dict, args: dict, raylet_pid: int, close_fds: tuple[int, ...]) -> int:
    """Fork a worker through a middle process that exits at once (the worker is then
    re-parented to the raylet); return the worker's pid (0 when the fork failed)."""
    r, w = os.pipe()
    try:
        middle = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return 0
    if middle == 0:
        code = 0
        try:
            os.close(r)
            pid = os.fork()
            if pid == 0:
                os.close(w)
                for fd in close_fds:
                    os.close(fd)
                _run_worker(req, args, raylet_pid)  # never returns
            os.write(w, str(pid).encode())
        except BaseException:  # noqa: BLE001 -- never return into the zygote's loop
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(middle, 0)
    return int(answer or 0)


def _tie_to_raylet(raylet_pid: int, timeout: float = 30.0) -> None:
    """Wait until this worker is the raylet's child, then die with the raylet.

    A forked worker starts as the child of a middle process that exits at once; it is
    then re-parented to the raylet. Any other parent means the raylet is gone (or is
    not our reaper): the worker leaves rather than outlive its node."""
    first = os.getppid()
    deadline = time.monotonic() + timeout
    while os.getppid() != raylet_pid:
        if os.getppid() != first or time.monotonic() > deadline:
            sys.stderr.write(f"worker {os.getpid()}: the raylet (pid {raylet_pid}) is gone; leaving\n")
            os._exit(1)
        time.sleep(0.0005)
    process.die_with_parent()
    if os.getppid() != raylet_pid:  # the raylet died before the death signal was armed
        os._exit(1)


def _run_worker(req: dict, args: dict, raylet_pid: int) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _tie_to_raylet(raylet_pid)
    os.environ.update(req.get("env") or {})
    spawned_env = os.environ.pop(RUNTIME_ENV_VAR, None)
    if spawned_env:
        req["runtime_env"] = spawned_env
    # a worker of a runtime env: in its unpacked working_dir, its packages first on the
    # path, before any function of the user's is unpickled
    if req.get("cwd"):
        os.chdir(req["cwd"])
    for path in reversed(req.get("sys_path") or ()):
        if path not in sys.path:
            sys.path.insert(0, path)
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
    process.flush_and_exit(code)


def _clean_after_raylet(args: dict, raylet_pid: int) -> None:
    """The raylet closed our pipe: if it died (we were re-parented), remove its node's
    object-store namespace and spill folder, which its own shutdown would have done."""
    deadline = time.monotonic() + 5.0
    while os.getppid() == raylet_pid and time.monotonic() < deadline:
        time.sleep(0.005)  # a dying parent closes its files before we are re-parented
    if os.getppid() == raylet_pid or "config_json" not in args:
        return
    import structlog

    from microray import config as config_mod
    from microray.object_store_access import destroy_namespace, node_namespace

    namespace = node_namespace(raylet_pid, args["node_id"])
    destroy_namespace(config_mod.Config.from_json(args["config_json"]), namespace, args["session_dir"])
    shutil.rmtree(os.path.join(args["session_dir"], "spill", namespace), ignore_errors=True)
    structlog.get_logger(__name__).warning(
        "raylet_died_namespace_removed", raylet_pid=raylet_pid, namespace=namespace
    )


def _read_first_line(fd: int) -> tuple[bytes, bytes]:
    """The first line on ``fd`` and what was read after it."""
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(fd, 65536)
        if not chunk:
            raise SystemExit("the raylet closed the zygote's pipe before sending its arguments")
        buf += chunk
    line, rest = buf.split(b"\n", 1)
    return line, rest


def main() -> None:
    """``python -m microray.raylet.zygote IN_FD OUT_FD`` (arguments come as the first
    line on IN_FD), or ``--worker REQUEST``: run one worker without a zygote."""
    if sys.argv[1] == "--worker":
        req = json.loads(sys.argv[2])
        _run_worker(req, {}, int(req["raylet_pid"]))
    in_fd, out_fd = int(sys.argv[1]), int(sys.argv[2])
    line, rest = _read_first_line(in_fd)
    args = json.loads(line)
    args.pop("op", None)
    serve(in_fd, out_fd, args, rest)


if __name__ == "__main__":
    main()
