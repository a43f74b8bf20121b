"""Processes in tests of a real cluster: polling with deadlines, leak checks, driver scripts.

``wait_for``                  poll a predicate until it is truthy; fail after a deadline.
``pid_alive``                 whether a process runs (a zombie counts as gone).
``stray_processes``           processes microray started that are still alive.
``zygote_pids`` / ``worker_pids``
                              the zygote(s) and the worker processes of a raylet.
``assert_no_stray_processes`` wait until there are none; fail naming them.
``run_driver`` / ``start_driver`` / ``read_marker``
                              a driver program (``import microray as ray`` + a body) in a
                              fresh interpreter, and reading what it prints.
``session_processes`` / ``kill_session_process``
                              a session's node processes by role (gcs, raylet, zygote,
                              worker, dashboard), wherever they hang; SIGKILL one of them.

Where microray's processes are is kernel knowledge, kept here with the kernel: an embedded
node's GCS, raylet, zygote and workers are forked by the *launcher*, which is double-forked
and so not a child of the test process. A leak check therefore looks below the test process
and below the launcher, and leaves the launcher itself alone (it lives as long as the
driver). Tests of microray and of a plugin that starts processes use the same check.

Only the standard library and psutil are imported; nothing here needs pytest.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import psutil

__all__ = [
    "assert_no_stray_processes",
    "descendants",
    "describe",
    "driver_env",
    "kill_session_process",
    "launcher_pid",
    "node_process_candidates",
    "pid_alive",
    "read_marker",
    "run_driver",
    "session_processes",
    "start_driver",
    "stray_processes",
    "wait_for",
    "worker_pids",
    "zygote_pids",
]


# -- polling -------------------------------------------------------------------------------------
def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "",
    *,
    retry_on: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; raise
    ``AssertionError`` naming ``what`` and the last result after ``timeout`` seconds.

    An exception of a type in ``retry_on`` (e.g. a server still restarting) counts as a
    falsy result; any other exception propagates at once."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except retry_on as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate!r} (last: {last!r})")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie counts as gone. (Asked of psutil, not of
    ``microray.process``, so that a test does not check microray with microray.)"""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- leak checks ---------------------------------------------------------------------------------
def launcher_pid() -> int | None:
    """The pid of this process's launcher, if it has one."""
    from microray import process

    launcher = process._launcher
    return launcher.pid if launcher is not None else None


def descendants() -> set[int]:
    """The pids of every process below this one now (take it before a cluster starts: what
    is in it, such as another suite's store server, is not the cluster's)."""
    try:
        return {c.pid for c in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return set()


def node_process_candidates() -> list[psutil.Process]:
    """Our descendants plus the launcher's: the launcher is double-forked (not our child),
    so the GCS, raylet, zygote and workers of an embedded node hang below it."""
    out = []
    try:
        out.extend(psutil.Process().children(recursive=True))
    except psutil.Error:
        pass
    pid = launcher_pid()
    if pid is not None:
        try:
            out.extend(psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            pass
    return out


def stray_processes(
    baseline: Collection[int] = frozenset(), ignore_names: Collection[str] = ()
) -> list[psutil.Process]:
    """Live (non-zombie) ``node_process_candidates`` but the launcher, the pids in
    ``baseline`` (see ``descendants``) and programs named in ``ignore_names`` (the
    basename of ``argv[0]``, e.g. ``redis-server`` started by a session fixture)."""
    keep = launcher_pid()
    out = []
    for child in node_process_candidates():
        if child.pid == keep or child.pid in baseline:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if ignore_names:
                argv0 = os.path.basename((child.cmdline() or [""])[0]).split(" ")[0]
                if argv0 in ignore_names:
                    continue
        except psutil.NoSuchProcess:
            continue
        out.append(child)
    return out


def _is_zygote(proc: psutil.Process) -> bool:
    """A zygote writes its output to ``logs/zygote-*.err`` (a spawned worker does too until
    it opens its own logs, but its command line says ``--worker``)."""
    try:
        out = os.readlink(f"/proc/{proc.pid}/fd/1")
        return os.path.basename(out).startswith("zygote-") and "--worker" not in proc.cmdline()
    except (OSError, psutil.Error):
        return False


def _live_children(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return []
    out = []
    for child in children:
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.Error:
            continue
    return out


def zygote_pids(raylet_pid: int) -> list[int]:
    """The live zygote process(es) of the raylet ``raylet_pid`` (its children)."""
    return [p.pid for p in _live_children(raylet_pid) if _is_zygote(p)]


def worker_pids(raylet_pid: int) -> list[int]:
    """The live worker processes of the raylet ``raylet_pid``: its children but the zygote
    (workers forked by the zygote are re-parented to the raylet)."""
    return [p.pid for p in _live_children(raylet_pid) if not _is_zygote(p)]


def describe(procs: Iterable[psutil.Process]) -> list[str]:
    """``"<pid> ppid=<ppid> <command line>"`` of each process, for a failure message."""
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid} ppid={p.ppid()} {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            out.append(f"{p.pid} (gone)")
    return out


def assert_no_stray_processes(
    baseline: Collection[int] = frozenset(),
    ignore_names: Collection[str] = (),
    timeout: float = 20.0,
    message: str = "processes left after shutdown",
) -> None:
    """Wait up to ``timeout`` seconds for ``stray_processes(baseline, ignore_names)`` to be
    empty; else raise ``AssertionError("<message>: [<describe(...)>]")``."""
    try:
        wait_for(lambda: not stray_processes(baseline, ignore_names), timeout=timeout,
                 what="node processes to exit")
    except AssertionError:
        raise AssertionError(f"{message}: {describe(stray_processes(baseline, ignore_names))}") from None


# -- a session's processes by role ---------------------------------------------------------------
SESSION_ROLES = ("gcs", "raylet", "zygote", "worker", "dashboard")


def _stderr_path(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/2")
    except OSError:
        return ""


def session_processes(session_dir: str | os.PathLike) -> dict[str, list[psutil.Process]]:
    """The live processes of a session's node by role (``SESSION_ROLES``), found wherever
    they hang in the process tree: a ``microray start`` head's processes are re-parented to
    init, and so are the orphans of a killed raylet.

    A role is told by where the process's stderr goes: every node process writes it to
    ``<session_dir>/logs/<role>[-<id>].err`` (``gcs.err``, ``raylet.err``,
    ``zygote-<node>.err``, ``worker-<id>.err``, ``dashboard.err``). A worker started a
    moment ago still writes to the zygote's file: it counts as a worker when its command
    line says so (spawned) or its parent is a zygote (the middle process of a fork); a
    forked worker not yet in its own files may still be listed as a zygote for a moment,
    which is why ``kill_session_process`` takes the oldest. Linux only (``/proc``)."""
    logs = os.path.join(os.path.realpath(session_dir), "logs") + os.sep
    found: dict[int, tuple[str, psutil.Process]] = {}
    for proc in psutil.process_iter():
        path = _stderr_path(proc.pid)
        if not path.startswith(logs):
            continue
        role = os.path.basename(path).split(".", 1)[0].split("-", 1)[0]
        if role not in SESSION_ROLES:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            continue
        found[proc.pid] = (role, proc)
    out: dict[str, list[psutil.Process]] = {role: [] for role in SESSION_ROLES}
    for pid, (role, proc) in found.items():
        if role == "zygote":
            try:
                parent = proc.ppid()
            except psutil.NoSuchProcess:
                continue
            if found.get(parent, ("",))[0] == "zygote" or not _is_zygote(proc):
                role = "worker"
        out[role].append(proc)
    return out


def kill_session_process(
    session_dir: str | os.PathLike, role: str, pid: int | None = None, timeout: float = 15.0
) -> int:
    """SIGKILL one live process of ``role`` in the session (``pid`` if given, which must
    have that role; else the oldest) and wait until it is gone; return its pid. Fails
    naming the session's processes when there is no such process."""
    if role not in SESSION_ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {SESSION_ROLES}")
    procs = session_processes(session_dir)
    candidates = [p for p in procs[role] if pid is None or p.pid == pid]
    if not candidates:
        listing = {r: [p.pid for p in ps] for r, ps in procs.items()}
        what = f"{role} with pid {pid}" if pid is not None else f"live {role}"
        raise AssertionError(f"no {what} in session {session_dir}; its processes by role: {listing}")

    def created(p: psutil.Process) -> float:
        try:
            return p.create_time()
        except psutil.NoSuchProcess:
            return float("inf")

    victim = min(candidates, key=created)
    try:
        victim.kill()
    except psutil.NoSuchProcess:
        pass
    wait_for(lambda: not pid_alive(victim.pid), timeout=timeout, what=f"the killed {role} (pid {victim.pid}) to exit")
    return victim.pid


# -- driver programs -----------------------------------------------------------------------------
def driver_env(extra: Mapping[str, str] | None = None, path: Sequence[str | os.PathLike] = ()) -> dict[str, str]:
    """This process's environment for a driver: ``path`` put first on ``PYTHONPATH``,
    without ``MICRORAY_ADDRESS`` (a driver names its cluster itself), plus ``extra``."""
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("MICRORAY_ADDRESS", None)
    env.update(extra or {})
    return env


def driver_code(body: str) -> str:
    """``body`` (dedented) after ``import os, sys, time`` and ``import microray as ray``."""
    return "import os, sys, time\nimport microray as ray\n" + textwrap.dedent(body)


def run_driver(body: str, env: Mapping[str, str], timeout: float, cwd: str | os.PathLike) -> subprocess.CompletedProcess:
    """Run ``driver_code(body)`` in a fresh interpreter with ``env`` (see ``driver_env``);
    fail with its stdout and the end of its stderr on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, "-c", driver_code(body)], env=dict(env), capture_output=True, text=True,
        timeout=timeout, cwd=str(cwd),
    )
    assert proc.returncode == 0, f"driver failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def start_driver(body: str, env: Mapping[str, str], cwd: str | os.PathLike, stdin: bool = False) -> subprocess.Popen:
    """Start ``driver_code(body)`` with piped stdout and stderr (and stdin if asked), for a
    test that reads its output line by line (``read_marker``)."""
    return subprocess.Popen(
        [sys.executable, "-c", driver_code(body)], env=dict(env), stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(cwd),
    )


def read_marker(proc: subprocess.Popen, marker: str, timeout: float, stream: Any = None) -> str:
    """Read ``proc``'s stdout (or ``stream``) until a line starting with ``marker`` and return
    the rest of that line. After ``timeout`` seconds or at the end of the output, kill
    ``proc`` and fail with what it printed."""
    stream = stream or proc.stdout
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(marker):
            return line[len(marker):].strip()
    proc.kill()
    _, err = proc.communicate(timeout=10)
    raise AssertionError(f"driver never printed {marker!r}; stdout={''.join(seen)!r} stderr={(err or '')[-4000:]!r}")
