"""Starting the processes of a node: by fork (fast, shares imported modules) or by spawn.

``fork`` is the default: the GCS and raylet (and through the raylet, the zygote and
workers) are forks of a *launcher* that already imported everything, so they are
serving within milliseconds and share their module pages (a small summed PSS).

A process may only be forked while nothing but its main thread runs: a fork copies
locks held mid-operation by other threads, and gRPC's core (threads Python cannot
see, epoll instances a child must not share) breaks in the child. So the launcher is
a fork of the driver only when ``fork_hazards()`` finds nothing (checked from what
is really there, ``/proc/self/task``); otherwise -- the driver used gRPC itself,
started threads, or loaded a library that did (OpenBLAS) -- the launcher is a fresh
interpreter that imports the node modules once and forks from there. ``spawn``
starts every node process as a fresh interpreter. Config key ``start_method``.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

import structlog

from microray import fork_safety

log = structlog.get_logger(__name__)

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no stray processes)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class Child:
    """A started process: ``pid``, ``poll``, ``wait``, ``terminate``, ``kill`` (like Popen)."""

    def __init__(self, pid: int, popen: subprocess.Popen | None = None) -> None:
        self.pid = pid
        self._popen = popen
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self._popen is not None:
            self.returncode = self._popen.poll()
            return self.returncode
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self._popen is not None:
            self.returncode = self._popen.wait(timeout)
            return self.returncode
        return _poll_until_exit(self, timeout)

    def _signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


def fork_child(
    target: Callable[[], object],
    *,
    keep_fds: Sequence[int] = (),
    log_path: str | None = None,
    die_with_parent_: bool = True,
    new_session: bool = False,
) -> Child:
    """Fork and run ``target()`` in the child, which then exits (never returns)."""
    pid = os.fork()
    if pid:
        return Child(pid)
    code = 1
    try:
        if new_session:
            os.setsid()
        if die_with_parent_:
            die_with_parent()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        if log_path is not None:
            out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.close(out)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        _close_fds_except(set(keep_fds))
        result = target()
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 -- report and exit, never return into the parent's code
        import traceback

        traceback.print_exc()
    finally:
        flush_and_exit(code)


def flush_and_exit(code: int) -> NoReturn:
    """End this process now with ``code``, after flushing what it printed; no ``atexit``
    handler and no caller's ``finally`` runs (a forked child must never return)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 -- a closed stream must not keep the process alive
        pass
    os._exit(code)


def _close_fds_except(keep: set[int]) -> None:
    try:
        fds = [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def spawn_child(
    argv: Sequence[str],
    *,
    pass_fds: Sequence[int] = (),
    log_path: str,
    embedded: bool,
    death_signal: bool = True,
    env_vars: dict[str, str] | None = None,
) -> Child:
    """Start a fresh interpreter running ``argv`` (after ``python``).

    An embedded child dies with this process (``PR_SET_PDEATHSIG``, armed between fork
    and exec) unless ``death_signal`` is False: a parent that runs other threads may
    not run Python code there, so such a child arms the signal itself (see
    ``die_with_parent``). ``env_vars`` are added to the child's environment."""
    env = dict(os.environ)
    env.pop("MICRORAY_ADDRESS", None)
    env.update(env_vars or {})
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as err:
        popen = subprocess.Popen(
            [sys.executable, *argv],
            pass_fds=tuple(pass_fds),
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            start_new_session=not embedded,
            env=env,
            preexec_fn=die_with_parent if embedded and death_signal else None,
        )
    return Child(popen.pid, popen)


class _LauncherChild:
    """A process forked by the launcher: not our child, so poll through /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not pid_alive(self.pid):
            self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        return _poll_until_exit(self, timeout)

    def terminate(self) -> None:
        _kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        _kill(self.pid, signal.SIGKILL)


# a started node process: a child of ours, or one the launcher forked
StartedProcess = Child | _LauncherChild


def _wait_pidfd(pid: int, timeout: float | None) -> None:
    """Sleep until process ``pid`` exits (its pidfd turns readable) or ``timeout`` passes;
    returns at once where pidfds are not available. The caller checks which it was."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # gone already, or no pidfd (old kernel, not Linux)
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` (any process, not only a child) is gone within ``timeout``
    seconds: woken by its exit (a pidfd), not by polling, where the kernel can."""
    deadline = time.monotonic() + timeout
    if pid_alive(pid):
        _wait_pidfd(pid, timeout)
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)  # exited, not reaped yet; or no pidfd
    return True


def _poll_until_exit(child: StartedProcess, timeout: float | None) -> int:
    """``child.wait`` for a process we cannot wait on directly: wait for its exit (a pidfd),
    then poll it, backing off from 1 ms to 50 ms, until it is gone;
    ``subprocess.TimeoutExpired`` after ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if child.poll() is None:
        _wait_pidfd(child.pid, timeout)
    delay = 0.001
    while (code := child.poll()) is None:
        if deadline is not None and time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(str(child.pid), timeout or 0.0)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return code


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def report_start_failure(ready_fd: int | None, exc: BaseException) -> None:
    """Tell whoever started this node process, and waits on ``ready_fd`` for its ready
    line, why it failed to start: one ``ERROR <type>: <message>`` line instead."""
    if ready_fd is None:
        return
    try:
        os.write(ready_fd, f"ERROR {type(exc).__name__}: {exc}\n".encode())
    except OSError:
        pass


PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (``PR_SET_CHILD_SUBREAPER``):
    a process whose parent dies is re-parented to us instead of to init, so we can
    ``waitpid`` it and learn how it ended. False when the kernel refuses."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except OSError:
        return False


def is_subreaper() -> bool:
    """Whether this process adopts its orphaned descendants (see ``become_subreaper``)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        flag = ctypes.c_int(0)
        return libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0 and flag.value != 0
    except OSError:
        return False


def describe_exit(code: int) -> str:
    """How a process ended, from ``os.waitstatus_to_exitcode``'s value: ``"exited with
    code 3"`` or ``"killed by signal 11 (SIGSEGV)"`` (a negative code is a signal)."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"killed by signal {-code}"
    return f"killed by signal {-code} ({name})"


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


class Launcher:
    """A clean process that forks node processes on request.

    Forking a process with threads (gRPC's core, a thread pool) is unsafe, and a
    driver that called ``init``/``shutdown`` once has such threads. So the first
    ``init`` makes a launcher: a fork of the driver while the driver is still clean
    (sharing its imported modules), else a fresh interpreter that imports ``preload``
    itself; later inits ask the same launcher, so every init starts in milliseconds.
    It leaves when the driver does (its socket closes) or ``idle_s`` after the
    driver's last node stopped. ``how`` is ``"forked"`` or ``"spawned"``, ``reason``
    why it had to be spawned.
    """

    def __init__(self, idle_s: float = 5.0, preload: Sequence[str] = ()) -> None:
        import socket

        self.reason = "; ".join(fork_safety.fork_hazards())
        if not self.reason:
            for name in preload:  # forks of the launcher share these pages with the driver
                importlib.import_module(name)
            self.reason = "; ".join(fork_safety.fork_hazards())
        parent, child = socket.socketpair()
        self._popen: subprocess.Popen | None = None
        if self.reason:
            log.debug("launcher_spawned", reason=self.reason)
            self.how = "spawned"
            self.pid = self._spawn(child, idle_s, preload)
        else:
            self.how = "forked"
            self.pid = self._fork(parent, child, idle_s, preload)
        child.close()
        self.sock = parent
        self.lock = threading.Lock()
        import atexit

        atexit.register(stop_launcher)

    def _fork(self, parent, child, idle_s: float, preload: Sequence[str]) -> int:
        r, w = os.pipe()
        _freeze_shared_objects()
        pid = os.fork()
        if pid == 0:
            # Double fork: the launcher is not our child, so when it leaves (idle, or
            # when our socket closes because we died) init reaps it and no zombie of
            # it lingers under the driver.
            parent.close()
            os.close(r)
            try:
                grandchild = os.fork()
            except OSError:
                os._exit(1)
            if grandchild:
                os.write(w, str(grandchild).encode())
                os._exit(0)
            os.close(w)
            os._exit(_run_launcher(child, idle_s, preload))
        os.close(w)
        os.waitpid(pid, 0)
        with os.fdopen(r, "rb") as pipe:
            return int(pipe.read().decode() or "0")

    def _spawn(self, child, idle_s: float, preload: Sequence[str]) -> int:
        env = dict(os.environ)
        env.pop("MICRORAY_ADDRESS", None)
        # no preexec_fn (unsafe with threads running): the launcher leaves when its
        # socket to us closes, and its children die with it
        # with the driver's import path (its script's folder, test roots...): the node's
        # workers, forks of this launcher, must find what the driver's functions import
        self._popen = subprocess.Popen(
            [sys.executable, "-c", "from microray.process import launcher_main; launcher_main()",
             str(child.fileno()), repr(idle_s), json.dumps(sys.path), *preload],
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
        )
        return self._popen.pid

    @staticmethod
    def _serve(sock, idle_s: float) -> None:
        import pickle
        import socket

        children: list[int] = []
        idle_since = time.monotonic()
        while True:
            ready, _, _ = select.select([sock], [], [], 1.0)
            if not ready:
                # no node of this driver is running: leave after a grace period (a
                # driver that inits again soon still finds us; none is left behind)
                children = [pid for pid in children if pid_alive(pid)]
                if children:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > idle_s:
                    return
                continue
            try:
                # an 8-byte length (with the fds), then the pickled request of that length:
                # a request carries the node's config, which can be far larger than one
                # datagram-sized read (a node with thousands of custom resources)
                header, fds, _flags, _addr = socket.recv_fds(sock, 8, 4)
                if len(header) < 8:
                    return
                msg = _recv_exactly(sock, int.from_bytes(header, "big"))
            except OSError:
                return
            if msg is None:
                return
            req = pickle.loads(msg)
            mod_name, func_name = req["target"].split(":")
            func = getattr(importlib.import_module(mod_name), func_name)
            # fd numbers differ in this process: "{fd0}" in argv names the first passed fd
            names = {f"{{fd{i}}}": str(fd) for i, fd in enumerate(fds)}
            argv = [names.get(a, a) for a in req["argv"]]
            kwargs = req["kwargs"]
            child = fork_child(
                lambda: func(argv, **kwargs),
                keep_fds=tuple(fds),
                log_path=req["log_path"],
                die_with_parent_=True,
            )
            for fd in fds:
                os.close(fd)
            children.append(child.pid)
            sock.sendall(str(child.pid).encode().ljust(16))

    def launch(self, target: str, argv: list[str], kwargs: dict, log_path: str, fds: Sequence[int]) -> _LauncherChild:
        import pickle
        import socket

        with self.lock:
            payload = pickle.dumps(dict(target=target, argv=argv, kwargs=kwargs, log_path=log_path))
            socket.send_fds(self.sock, [len(payload).to_bytes(8, "big")], list(fds))
            self.sock.sendall(payload)
            reply = b""
            while len(reply) < 16:
                chunk = self.sock.recv(16 - len(reply))
                if not chunk:
                    raise OSError("the microray launcher process exited")
                reply += chunk
        return _LauncherChild(int(reply.strip()))

    def alive(self) -> bool:
        if self._popen is not None and self._popen.poll() is not None:
            return False  # a spawned launcher is our child: poll() reaps it
        return pid_alive(self.pid)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes from a stream socket, or None when it closes first."""
    parts = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _run_launcher(sock, idle_s: float, preload: Sequence[str]) -> int:
    """Be a launcher: import ``preload``, then fork node processes on request until
    ``sock`` closes or ``idle_s`` passed with none running. Returns the exit code."""
    from microray import proctitle

    proctitle.set_role("launcher", [])
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
        for name in preload:
            importlib.import_module(name)
        # forks share these objects' pages; a collection would dirty them. No
        # collect() first: it writes to every object's header, copying the pages
        gc.freeze()
        Launcher._serve(sock, idle_s)
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        return 1
    return 0


def launcher_main() -> None:
    """Entry of a spawned launcher:
    ``python -c '...launcher_main()' SOCKET_FD IDLE_S SYS_PATH_JSON MODULE...``."""
    import socket

    fd, idle_s, path, *preload = sys.argv[1:]
    driver_path = json.loads(path)
    sys.path[:] = driver_path + [p for p in sys.path if p not in driver_path]
    sys.exit(_run_launcher(socket.socket(fileno=int(fd)), float(idle_s), preload))


_launcher: Launcher | None = None


# whether this process froze its objects for a forked launcher (``_freeze_shared_objects``)
_froze_gc = False


def _freeze_shared_objects() -> None:
    """Keep the pages this driver shares with a forked launcher shared.

    The launcher, and through it every node process and worker, is a fork of this
    process and shares the pages of every object it has now. A full cycle collection
    here writes to each tracked object's header and so would copy those pages into
    this process (about 8 MB with the node modules loaded). ``gc.freeze()`` moves the
    objects of this moment out of the collector's reach; reference counting still frees
    them as usual, only cycles among them wait until ``_unfreeze_shared_objects`` (when
    the launcher is gone). A program that froze objects itself is left as it is."""
    global _froze_gc
    if not _froze_gc and gc.get_freeze_count() == 0:
        gc.freeze()
        _froze_gc = True


def _unfreeze_shared_objects() -> None:
    global _froze_gc
    if _froze_gc:
        gc.unfreeze()
        _froze_gc = False


def stop_launcher() -> None:
    """End the launcher (at interpreter exit; it also dies with its parent)."""
    global _launcher
    _unfreeze_shared_objects()
    if _launcher is not None:
        _kill(_launcher.pid, signal.SIGKILL)
        if _launcher._popen is not None:
            _launcher._popen.wait()
        else:
            try:
                os.waitpid(_launcher.pid, 0)
            except ChildProcessError:
                pass
        _launcher.sock.close()
        _launcher = None


_launcher_args: tuple[float, tuple[str, ...]] = (5.0, ())


def launcher(idle_s: float | None = None, preload: Sequence[str] | None = None) -> Launcher:
    """The driver's launcher, made on first use (and again if it left): a fork of this
    process when ``fork_hazards()`` finds nothing, else a fresh interpreter. ``preload``
    names the modules node processes run (imported once, before any fork); it leaves
    ``idle_s`` seconds after the last node it started has stopped. Arguments not given
    are those of the last call."""
    global _launcher, _launcher_args
    _launcher_args = (
        _launcher_args[0] if idle_s is None else idle_s,
        _launcher_args[1] if preload is None else tuple(preload),
    )
    if _launcher is None or not _launcher.alive():
        if _launcher is not None:
            stop_launcher()  # reap it and close our end
        _launcher = Launcher(*_launcher_args)
    return _launcher
