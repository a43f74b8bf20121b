"""The processes behind a raylet's worker pool: starting workers, keeping a zygote,
reaping workers and remembering how each one ended.

Workers start as forks of the zygote when it is up and ready, else as fresh
interpreters (``zygote.spawn_worker``). Either way they are children of the raylet
(the zygote forks them through a middle process; the raylet is their subreaper), so
the raylet reaps them itself on SIGCHLD and keeps each worker's end ("exited with
code 3", "killed by signal 11 (SIGSEGV)") for the owner that asks
(``GetWorkerExit``). When the zygote dies, no worker dies with it: workers it was
still forking count as lost, new ones are spawned, and a new zygote is started
(after a growing pause when zygotes keep dying young).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog

from microray import rpc
from microray.log import worker_log_path
from microray.process import describe_exit, is_subreaper, pid_alive
from microray.raylet import zygote as zygote_mod

log = structlog.get_logger(__name__)

KEEP_EXITS = 1024  # exit reasons kept (oldest dropped first)
RESTART_PAUSE_S = 1.0  # first pause before restarting a zygote that died young
MAX_RESTART_PAUSE_S = 60.0
YOUNG_S = 10.0  # a zygote that dies sooner than this after its start died young


class WorkerProcesses:
    """Start, reap and describe the worker processes of one raylet; supervise its zygote.

    Callbacks (all called on the event loop):
      ``on_forked(worker_id, pid)``           a requested worker process exists
      ``on_exit(worker_id, pid, reason)``     a worker process ended (``worker_id`` may be
                                              "" for a worker the raylet never heard of)
      ``on_lost(worker_ids)``                 requested workers that will never start (their
                                              zygote died before forking them)
      ``lookup(pid) -> worker_id | None``     a worker known by other means (its registration)
    """

    def __init__(
        self,
        zygote: Any,
        *,
        node_id: str,
        session_dir: str,
        on_forked: Callable[[str, int], None],
        on_exit: Callable[[str, int, str], None],
        on_lost: Callable[[list[str]], None],
        lookup: Callable[[int], str | None],
    ) -> None:
        self.zygote = zygote
        self.node_id = node_id
        self.session_dir = session_dir
        self.raylet_address = ""
        self.io_loop = "auto"
        self.tls: dict = {}  # the cluster's tls table (file paths), for the workers' gRPC
        self.log_level = "info"  # the cluster's log_level, for the workers' logs
        self._on_forked = on_forked
        self._on_exit = on_exit
        self._on_lost = on_lost
        self._lookup = lookup
        self._zygote_args = dict(zygote.args)
        self._zygote_log = zygote.log_path
        self._zygote_started = time.monotonic()
        self._restart_pause = 0.0
        self._restart: asyncio.TimerHandle | None = None
        self._asked: set[str] = set()  # worker ids asked of the zygote, not yet forked
        self._pids: dict[int, str] = {}  # pid -> worker id of every worker we started
        self._spawned: dict[int, Any] = {}  # pid -> Child of workers started by spawn
        self._killed: dict[int, str] = {}  # pid -> why the raylet killed it
        self._zygotes: dict[int, Any] = {zygote.pid: zygote}  # zygote pids not reaped yet
        self._unclaimed: OrderedDict[int, int] = OrderedDict()  # pid -> exit code, before "forked"
        self._reaped: OrderedDict[int, None] = OrderedDict()  # pids reaped lately: never signal them
        self.exits: OrderedDict[str, str] = OrderedDict()  # worker id -> how it ended
        self._waiters: dict[str, list[asyncio.Future]] = {}
        self._pidfds: dict[int, int] = {}  # pid -> pidfd watched on the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        # a worker forked by the zygote is ours only if orphans are re-parented to us
        self._adopts = is_subreaper()
        if not self._adopts:
            log.error("not_a_subreaper", hint="the kernel refused PR_SET_CHILD_SUBREAPER: every worker is spawned")

    # -- life ------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start watching the zygote's pipe on ``loop`` (SIGCHLD belongs to the loop:
        each worker's end is watched through a pidfd instead)."""
        self._loop = loop
        loop.add_reader(self.zygote.fileno(), self.on_zygote_output)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the zygote and every worker process we know (the node is stopping)."""
        loop = self._loop
        if loop is not None and self.zygote is not None:
            loop.remove_reader(self.zygote.fileno())
        for pid in list(self._pidfds):
            self._unwatch(pid)
        if self._restart is not None:
            self._restart.cancel()
        for pid in list(self._pids):
            self.kill(pid, "the node is stopping")
        zygote, self.zygote = self.zygote, None
        if zygote is not None:
            zygote.terminate()
            try:
                zygote.wait(timeout=timeout)
            except Exception:  # noqa: BLE001 -- TimeoutExpired: it goes by force
                zygote.kill()
            zygote.close()

    # -- starting workers --------------------------------------------------------------
    def start(self, worker_id: str, env_vars: dict[str, str], *, runtime_env: str = "", cwd: str | None = None,
              sys_path: tuple[str, ...] = ()) -> None:
        """Start a worker: forked by the zygote when it is ready, else spawned. A worker of
        a runtime env (``runtime_env``, its key) starts in ``cwd`` with ``sys_path`` first
        on its path, before it runs anything of the user's."""
        req: dict[str, Any] = {"op": "fork", "worker_id": worker_id, "env": env_vars,
                               "raylet_address": self.raylet_address, "io_loop": self.io_loop, "log_level": self.log_level,
                               "tls": self.tls}
        if runtime_env:
            req.update(runtime_env=runtime_env, cwd=cwd, sys_path=list(sys_path))
        zygote = self.zygote
        if zygote is not None and zygote.ready and self._adopts:
            try:
                zygote.request(req)
                self._asked.add(worker_id)
                return
            except OSError:  # the zygote is dying: its pipe's end reaches us shortly
                pass
        req.pop("env")
        if runtime_env:  # its env_vars go to the environment, never the command line
            env_vars = {**env_vars, zygote_mod.RUNTIME_ENV_VAR: req.pop("runtime_env")}
        req.update(session_dir=self.session_dir, node_id=self.node_id, raylet_pid=os.getpid())
        # the request is the worker's command line: the token goes in its environment
        # (the worker takes it out at once, so its tasks' subprocesses never see it)
        env_vars = {**env_vars, rpc.TOKEN_ENV: self._zygote_args["token"]}
        try:
            child = zygote_mod.spawn_worker(req, self._zygote_log, env_vars)
        except OSError as exc:
            log.error("worker_spawn_failed", worker_id=worker_id, error=repr(exc))
            self._on_lost([worker_id])
            return
        log.info("worker_spawned", worker_id=worker_id, worker_pid=child.pid, reason="no zygote ready")
        self._spawned[child.pid] = child
        self._forked(worker_id, child.pid)

    def _forked(self, worker_id: str, pid: int) -> None:
        self._reaped.pop(pid, None)  # a reused pid
        self._pids[pid] = worker_id
        self._on_forked(worker_id, pid)
        code = self._unclaimed.pop(pid, None)
        if code is not None:  # it ended before we heard it was forked
            self._ended(pid, code)
        else:
            self._watch(pid)

    def _watch(self, pid: int) -> None:
        """Reap ``pid`` as soon as it ends: its pidfd turns readable on the loop."""
        if self._loop is None:
            return
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # gone already (reaped by ``reap``) or no pidfd: the heartbeat reaps
            self.reap()
            return
        self._pidfds[pid] = fd
        self._loop.add_reader(fd, self.reap)

    def _unwatch(self, pid: int) -> None:
        fd = self._pidfds.pop(pid, None)
        if fd is not None:
            if self._loop is not None:
                self._loop.remove_reader(fd)
            os.close(fd)

    # -- the zygote --------------------------------------------------------------------
    def on_zygote_output(self) -> None:
        zygote = self.zygote
        if zygote is None:
            return
        try:
            events = zygote.read_events()
        except OSError:
            events = None
        if events is None:
            self._zygote_lost(zygote)
            return
        for msg in events:
            op = msg.get("op")
            if op == "forked":
                self._asked.discard(msg["worker_id"])
                self._forked(msg["worker_id"], msg["pid"])
            elif op == "ready" and not zygote.ready:
                zygote.ready = True
                log.info("zygote_ready", zygote_pid=zygote.pid)

    def _zygote_lost(self, zygote: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(zygote.fileno())
        zygote.close()
        self.zygote = None
        self.reap()
        code = zygote.child.returncode
        young = time.monotonic() - self._zygote_started < YOUNG_S
        self._restart_pause = (
            min(max(self._restart_pause * 2, RESTART_PAUSE_S), MAX_RESTART_PAUSE_S) if young else 0.0
        )
        log.warning(
            "zygote_exited",
            node_id=self.node_id,
            zygote_pid=zygote.pid,
            reason=describe_exit(code) if code is not None else "unknown",
            restart_in_s=self._restart_pause,
            hint="running workers are not affected; new workers are spawned until a new zygote is ready",
        )
        lost, self._asked = sorted(self._asked), set()
        self._restart = self._loop.call_later(self._restart_pause, self._start_zygote)
        if lost:
            self._on_lost(lost)

    def _start_zygote(self) -> None:
        assert self._loop is not None
        self._restart = None
        try:
            zygote = zygote_mod.start(self._zygote_args, "spawn", self._zygote_log, ready=False)
        except OSError as exc:
            self._restart_pause = min(max(self._restart_pause * 2, RESTART_PAUSE_S), MAX_RESTART_PAUSE_S)
            log.error("zygote_start_failed", error=repr(exc), retry_in_s=self._restart_pause)
            self._restart = self._loop.call_later(self._restart_pause, self._start_zygote)
            return
        self.zygote = zygote
        self._zygotes[zygote.pid] = zygote
        self._zygote_started = time.monotonic()
        self._loop.add_reader(zygote.fileno(), self.on_zygote_output)
        log.info("zygote_restarted", node_id=self.node_id, zygote_pid=zygote.pid)

    # -- ends ------------------------------------------------------------------------
    def kill(self, pid: int, why: str) -> None:
        """SIGKILL a worker process that still runs, noting why (for its exit reason).
        A pid we reaped already is left alone (it may belong to another process now)."""
        if pid in self._reaped or not pid_alive(pid):
            return  # ended already: keep the real cause
        self._killed[pid] = why
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def reap(self) -> None:
        """Collect every ended child (workers, zygotes, orphans re-parented to us); called
        when a watched worker ends and on every heartbeat."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            self._unwatch(pid)
            self._reaped[pid] = None
            while len(self._reaped) > KEEP_EXITS:
                self._reaped.popitem(last=False)
            zygote = self._zygotes.pop(pid, None)
            if zygote is not None:
                _record_returncode(zygote.child, code)
                continue
            child = self._spawned.pop(pid, None)
            if child is not None:
                _record_returncode(child, code)
            if pid in self._pids or self._lookup(pid):
                self._ended(pid, code)
            else:  # a worker whose "forked" line is still on its way, or a stray orphan
                self._unclaimed[pid] = code
                while len(self._unclaimed) > KEEP_EXITS:
                    self._unclaimed.popitem(last=False)

    def _ended(self, pid: int, code: int) -> None:
        worker_id = self._pids.pop(pid, None) or self._lookup(pid) or ""
        reason = describe_exit(code)
        why = self._killed.pop(pid, None)
        if why and code == -signal.SIGKILL:
            reason += f", sent by the raylet ({why})"
        if worker_id:
            if code != 0:
                self._note_in_worker_log(worker_id, pid, reason)
            self.exits[worker_id] = reason
            while len(self.exits) > KEEP_EXITS:
                self.exits.popitem(last=False)
            for fut in self._waiters.pop(worker_id, []):
                if not fut.done():
                    fut.set_result(reason)
        self._on_exit(worker_id, pid, reason)

    def _note_in_worker_log(self, worker_id: str, pid: int, reason: str) -> None:
        """Append how the worker ended to its ``.err`` log: a process killed outright (or
        that called ``os._exit``) cannot say so itself."""
        path = worker_log_path(os.path.join(self.session_dir, "logs"), worker_id, "err")
        try:
            with open(path, "a") as err:
                err.write(f"[raylet] worker {worker_id} (pid {pid}) {reason}\n")
        except OSError:
            pass

    async def exit_reason(self, worker_id: str, wait_s: float) -> str:
        """How ``worker_id`` ended, waiting up to ``wait_s`` for it to end; "" if it did not."""
        reason = self.exits.get(worker_id)
        if reason is not None or wait_s <= 0:
            return reason or ""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(worker_id, []).append(fut)
        try:
            return await asyncio.wait_for(fut, wait_s)
        except asyncio.TimeoutError:
            return ""
        finally:
            waiters = self._waiters.get(worker_id)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[worker_id]

    def worker_pids(self) -> list[int]:
        return list(self._pids)


def _record_returncode(child: Any, code: int) -> None:
    """We reaped ``child``: tell its handle (and its Popen), which can no longer wait."""
    child.returncode = code
    popen = getattr(child, "_popen", None)
    if popen is not None:
        popen.returncode = code
