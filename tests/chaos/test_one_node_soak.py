"""One node under a mixed workload while its processes are killed, one kind after another.

A head started with ``microray start --head`` (2 CPUs, a 100 MB object store, no dashboard;
its own ``MICRORAY_SESSION_ROOT`` in a tmp folder) serves a *checked* driver that runs rounds
of a mixed workload: tasks with dependencies, an actor with state, and 24 objects of 4 MiB
held at once (more than the store: they spill), read back by the driver and by tasks.
Every answer of every round is compared with the value it must have. While a round runs,
the test SIGKILLs, in turn:

1. drivers: two other drivers, one looping over batches of tasks with an actor and an
   object in the store, one holding a task that never ends (their answers are not checked;
   the killed driver's actor and the worker running its task must exit);
2. a nested-task owner: the worker running a task of the checked driver that has submitted
   nested tasks and waits for them (the task is retried; its answer must be right);
3. a task worker running a task of the checked driver (retried; its answer must be right);
4. the zygote: the node must go on (a new zygote starts), the checked driver's actor keeps
   its process and its state, and a new actor (a new worker process) can still start;
5. the raylet. On one node, killing the raylet kills the node: what this test expects is
   that the node's zygote and workers die with it, that ``microray stop`` then leaves
   nothing behind (no process, no /dev/shm entry of the node's store namespace, no spill
   file), and that ``microray start --head`` gives a fresh node on which a round of the
   workload is right again. microray does not restart a raylet in place, so the test does
   not wait for one; the checked driver of the killed node is killed too, unchecked.

Kinds 1-4 run ``CYCLES`` times on the same head and the same checked driver (whose actor
must keep its process and its count through all of them); the raylet kill comes last.

After each kill, with the victims gone and the round answered, every lease must come back:
``available_resources() == cluster_resources()`` within ``LEASE_DEADLINE`` seconds (asked by
the checked driver, which then holds no lease). After the last ``microray stop`` no process
of any of the test's sessions, no /dev/shm entry of their namespaces and no spill file may
be left.

A failed check is collected, not raised at once, so one run names everything that is wrong;
when a failure leaves the node unusable (leases lost, the node dead, the driver stuck), the
test stops the head, checks what the stop left behind, and starts a new head for the next
kind of kill. The test fails at the end with every failed check, each naming its phase.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from microray.testing.processes import (
    describe,
    driver_code,
    kill_session_process,
    pid_alive,
    read_marker,
    session_processes,
    wait_for,
)

from .drivers import BUSY, CHECKED, HOLDING

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

NUM_CPUS = 2
STORE_BYTES = 100_000_000
OBJ_BYTES = 4 * 1024 * 1024
N_OBJECTS = 24             # 96 MiB held at once: over the store's spill threshold
ROUND_S = 40.0             # a round of the checked driver gives up after this long
LEASE_DEADLINE = 10.0      # "within a few seconds"; the GCS sees a node's resources per heartbeat
CYCLES = 2                 # times the driver, nested owner, task worker and zygote kills are run
EXIT_DEADLINE = 15.0       # for killed processes and their dependants to be gone
START_TIMEOUT = 90.0       # a CLI command or a driver's start, on 2 busy cores


def _cli_argv() -> list[str]:
    exe = Path(sys.executable).with_name("microray")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "microray.cli"]


def _files_under(path: Path) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(path) for f in files]


def _shm_entries(namespace: str) -> list[str]:
    try:
        return [n for n in os.listdir("/dev/shm") if namespace in n]
    except OSError:
        return []


def expected_round(seed: int, rounds_before: int, held: str | None, new_actor: bool) -> dict[str, Any]:
    """The answers a round of ``drivers.CHECKED`` must give (``rounds_before``: rounds the
    same driver answered before, which its actor counted)."""
    def read(i: int) -> list[int]:
        fill = (seed + i) % 251
        return [fill, fill, fill * OBJ_BYTES]

    out: dict[str, Any] = {
        "deps": sum((seed + i) ** 2 + (seed + i + 1) ** 2 for i in range(5)),
        "counter": [3 * rounds_before + k for k in (1, 2, 3)],
        "driver_reads": [read(i) for i in range(N_OBJECTS)],
        "task_reads": [read(i) for i in range(0, N_OBJECTS, 4)],
    }
    if held == "task":
        out["held"] = seed * seed
    elif held == "nested":
        out["held"] = sum(i * i for i in range(4))
    if new_actor:
        out["new_actor"] = [5, 10]
    return out


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class Soak:
    """The head, the drivers and the failed checks of one soak run."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "sessions"
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.cwd = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MICRORAY_")}
        self.env.update(
            MICRORAY_SESSION_ROOT=str(self.root), SOAK_MARKS=str(self.marks), SOAK_OBJ_BYTES=str(OBJ_BYTES),
            SOAK_OBJECTS=str(N_OBJECTS), SOAK_ROUND_S=str(ROUND_S),
        )
        self.problems: list[str] = []
        self.timeline: list[str] = []
        self.sessions: list[dict] = []     # the current_cluster record of every head started
        self.head: dict | None = None
        self.drivers: list[subprocess.Popen] = []
        self.checked: subprocess.Popen | None = None
        self.rounds = 0                    # rounds the current checked driver answered
        self.actor_pid: int | None = None  # its actor's process
        self.t0 = time.monotonic()

    # -- bookkeeping ------------------------------------------------------------------
    def problem(self, phase: str, text: str) -> None:
        self.problems.append(f"[{phase}] {text}")

    def note(self, text: str) -> None:
        self.timeline.append(f"{time.monotonic() - self.t0:6.1f}s {text}")

    @property
    def session(self) -> str:
        assert self.head is not None
        return self.head["session_dir"]

    # -- the head -----------------------------------------------------------------------
    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*_cli_argv(), *args], env=self.env, cwd=self.cwd, capture_output=True, text=True,
                              timeout=START_TIMEOUT)

    def start(self) -> None:
        out = self.cli("start", "--head", "--num-cpus", str(NUM_CPUS), "--object-store-memory", str(STORE_BYTES),
                       "--dashboard", "none")
        assert out.returncode == 0, f"microray start --head failed:\n{out.stdout}\n{out.stderr[-3000:]}"
        self.head = json.loads((self.root / "current_cluster").read_text())
        self.sessions.append(self.head)
        self.note(f"head started: {self.session}")
        self.start_checked()

    def stop(self, phase: str) -> None:
        """``microray stop``, then check that it left nothing of the head behind."""
        self.exit_checked(phase)
        out = self.cli("stop")
        if out.returncode != 0:
            self.problem(phase, f"microray stop failed ({out.returncode}): {out.stderr[-2000:]}")
        self.note("head stopped")
        if self.head is not None:
            self.check_leftovers(phase, self.head)
        self.head = None

    def restart(self, phase: str, why: str) -> None:
        """A failed check left the node unusable: give the next phase a fresh head."""
        self.note(f"restarting the head after {phase}: {why}")
        self.stop(phase)
        self.start()

    def check_leftovers(self, phase: str, record: dict) -> None:
        """No process, /dev/shm entry or spill file of ``record``'s session (and remove what
        is found, so the rest of the test and the machine start clean)."""
        session, namespace = record["session_dir"], record["store_namespace"]

        def live() -> dict[str, list[int]]:
            return {role: [p.pid for p in procs] for role, procs in session_processes(session).items() if procs}

        try:
            wait_for(lambda: not live(), timeout=EXIT_DEADLINE, what="the session's processes to exit")
        except AssertionError:
            left = live()
            self.problem(phase, f"processes of {session} left after microray stop, by role: {left}: "
                                f"{describe(p for procs in session_processes(session).values() for p in procs)}")
            for pids in left.values():
                for pid in pids:
                    _sigkill(pid)
        shm = _shm_entries(namespace)
        if shm:
            self.problem(phase, f"/dev/shm entries of the store namespace {namespace} left after microray stop: {shm}")
            for name in shm:
                path = os.path.join("/dev/shm", name)
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)
        spill = _files_under(Path(session) / "spill")
        if spill:
            self.problem(phase, f"{len(spill)} spill files left after microray stop under {session}/spill, "
                                f"e.g. {spill[:3]}")
            shutil.rmtree(Path(session) / "spill", ignore_errors=True)

    # -- drivers ------------------------------------------------------------------------
    def start_driver(self, body: str, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """A driver whose stdout the test reads; its stderr goes to ``<tmp>/drivers/<name>.err``
        (a pipe nobody reads would block it once full)."""
        err_dir = self.cwd / "drivers"
        err_dir.mkdir(exist_ok=True)
        with open(err_dir / f"{name}.err", "ab") as err:
            proc = subprocess.Popen([sys.executable, "-c", driver_code(body)], env={**self.env, **(env or {})},
                                    cwd=self.cwd,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        self.drivers.append(proc)
        return proc

    def checked_err(self) -> str:
        """The end of the current checked driver's stderr file, for a failure message."""
        path = self.cwd / "drivers" / f"checked-{len(self.sessions)}.err"
        try:
            return f" (its stderr, {path}, ends: {path.read_text(errors='replace')[-1500:]!r})"
        except OSError:
            return ""

    def start_checked(self) -> None:
        self.checked = self.start_driver(CHECKED, f"checked-{len(self.sessions)}")
        self.rounds, self.actor_pid = 0, None
        read_marker(self.checked, "REPLY ", START_TIMEOUT)

    def ask(self, phase: str, cmd: dict, timeout: float) -> dict | None:
        """Send a command to the checked driver and read its reply; None (and a problem)
        when it died or did not answer in time (it is killed then)."""
        if self.checked is None:
            self.problem(phase, f"no checked driver to run {cmd['op']}")
            return None
        try:
            self.checked.stdin.write(json.dumps(cmd) + "\n")
            self.checked.stdin.flush()
            return json.loads(read_marker(self.checked, "REPLY ", timeout))
        except (AssertionError, OSError) as exc:
            self.problem(phase, f"the checked driver gave no answer to {cmd['op']}: {str(exc)[-1000:]}"
                                f"{self.checked_err()}")
            self.kill_checked()
            return None

    def exit_checked(self, phase: str) -> None:
        if self.checked is None:
            return
        proc, self.checked = self.checked, None
        try:
            proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
            proc.stdin.flush()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.problem(phase, "the checked driver did not exit after shutdown()")
            proc.kill()
            proc.wait(10)

    def kill_checked(self) -> None:
        if self.checked is not None:
            self.checked.kill()
            self.checked.wait(10)
            self.checked = None

    def kill_all_drivers(self) -> None:
        for proc in self.drivers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    # -- marks and gates ----------------------------------------------------------------
    def marked_pids(self, tag: str) -> list[int]:
        return [int(n.split("@", 1)[1]) for n in os.listdir(self.marks) if n.split("@", 1)[0] == tag]

    def wait_marked(self, tag: str) -> int:
        """The pid of the first process that marked ``tag`` (a task that started)."""
        return wait_for(lambda: (self.marked_pids(tag) or [None])[0], timeout=START_TIMEOUT,
                        what=f"a task marked {tag!r} to start")

    def open_gate(self, tag: str) -> None:
        (self.marks / f"open-{tag}").touch()

    # -- rounds and checks --------------------------------------------------------------
    def send_round(self, tag: str, seed: int, held: str | None = None, new_actor: bool = False) -> dict:
        cmd = {"op": "round", "tag": tag, "seed": seed, "held": held, "new_actor": new_actor}
        assert self.checked is not None
        self.checked.stdin.write(json.dumps(cmd) + "\n")
        self.checked.stdin.flush()
        return cmd

    def finish_round(self, phase: str, cmd: dict) -> bool:
        """Read the round's answers and compare each with what it must be; True if all right."""
        if self.checked is None:
            self.problem(phase, "the checked driver is gone; its round was not answered")
            return False
        try:
            got = json.loads(read_marker(self.checked, "REPLY ", ROUND_S + START_TIMEOUT))
        except AssertionError as exc:
            self.problem(phase, f"the checked driver did not answer its round: {str(exc)[-1000:]}"
                                f"{self.checked_err()}")
            self.checked = None
            return False
        want = expected_round(cmd["seed"], self.rounds, cmd["held"], cmd["new_actor"])
        self.rounds += 1
        wrong = []
        if "put" in got:   # nothing was put: the reads and the spilling are moot
            wrong.append(f"ray.put of {N_OBJECTS} objects of {OBJ_BYTES} bytes failed: {got['put']}")
            want = {k: v for k, v in want.items() if k not in ("driver_reads", "task_reads")}
        elif not got.get("spill_files"):
            wrong.append(f"no spill file while {N_OBJECTS} x {OBJ_BYTES} bytes were held in a "
                         f"{STORE_BYTES}-byte store: the round did not exercise spilling")
        for key, value in want.items():
            if got.get(key) != value:
                wrong.append(f"round answer {key!r} is wrong: got {_short(got.get(key))}, expected {_short(value)}")
        actor_pid = got.get("actor_pid")
        if not isinstance(actor_pid, int):
            wrong.append(f"the actor's pid was not answered: {_short(actor_pid)}")
        elif self.actor_pid is None:
            self.actor_pid = actor_pid
        elif actor_pid != self.actor_pid:
            wrong.append(f"the checked driver's actor changed process: was pid {self.actor_pid}, now {actor_pid} "
                         "(no kill aimed at it)")
        for text in wrong:
            self.problem(phase, text)
        ok = not wrong
        if not ok:
            self.problem(phase, f"the round above was answered by the checked driver{self.checked_err()}")
        self.note(f"{phase}: round answered ({'right' if ok else 'WRONG'})")
        return ok

    def leases_back(self, phase: str) -> bool:
        """Every lease came back: available_resources() == cluster_resources() within the deadline."""
        got = self.ask(phase, {"op": "resources", "deadline": LEASE_DEADLINE}, LEASE_DEADLINE + START_TIMEOUT)
        if got is None:
            return False
        if not got["cluster"]:
            self.problem(phase, f"no live node: cluster_resources() is empty {LEASE_DEADLINE}s after the phase; "
                                f"the session's processes by role: {_roles(self.session)}")
            return False
        if got["available"] != got["cluster"]:
            self.problem(phase, f"leases not back within {LEASE_DEADLINE}s: available_resources()="
                                f"{got['available']} but cluster_resources()={got['cluster']}; "
                                f"the node's workers [pid, state]: {got['workers']}")
            return False
        self.note(f"{phase}: leases back after {got['waited']}s")
        return True

    def phase_end(self, phase: str, round_ok: bool) -> None:
        """The lease check; a fresh head for the next phase when this one broke the node."""
        leases_ok = self.leases_back(phase)
        if not (round_ok and leases_ok):
            self.restart(phase, "round wrong" if leases_ok else "leases not back")

    # -- the phases ---------------------------------------------------------------------
    def kill_drivers(self, cycle: int) -> None:
        phase = f"driver kill #{cycle}"
        # the holding driver's task must run first: the busy driver, once looping, keeps
        # reusing its leases while it has tasks queued, and a later lease request waits
        holding = self.start_driver(HOLDING, f"holding-{cycle}", {"SOAK_HOLD_TAG": f"victim{cycle}"})
        held_worker = self.wait_marked(f"victim{cycle}")  # its task runs: it holds a lease
        busy = self.start_driver(BUSY, f"busy-{cycle}")
        actor = int(read_marker(busy, "ACTOR ", START_TIMEOUT))
        read_marker(busy, "BATCH 2", START_TIMEOUT)    # mid-work: tasks, an actor, an object
        cmd = self.send_round(f"drivers{cycle}", seed=11 + 100 * cycle)
        for proc in (busy, holding):
            proc.send_signal(signal.SIGKILL)
            proc.wait(EXIT_DEADLINE)
        self.note(f"{phase}: drivers {busy.pid} and {holding.pid} killed")
        round_ok = self.finish_round(phase, cmd)
        # what died with its owner: the actor, and the worker running the owner's task
        for pid, what in ((actor, "the killed driver's actor"),
                          (held_worker, "the worker running the killed driver's task")):
            try:
                wait_for(lambda: not pid_alive(pid), timeout=EXIT_DEADLINE, what=f"{what} (pid {pid}) to exit")
            except AssertionError:
                round_ok = False
                self.problem(phase, f"{what} (pid {pid}) still runs {EXIT_DEADLINE}s after the driver was killed")
        self.phase_end(phase, round_ok)

    def kill_nested_owner(self, cycle: int) -> None:
        phase, tag = f"nested-task owner kill #{cycle}", f"nested{cycle}"
        cmd = self.send_round(tag, seed=21 + 100 * cycle, held="nested")
        owner = self.wait_marked(tag)                      # submitted its 4 nested tasks
        wait_for(lambda: len(self.marked_pids(f"{tag}-inner")) >= NUM_CPUS, timeout=START_TIMEOUT,
                 what="nested tasks to run on every CPU (leases the owner holds; the rest wait)")
        kill_session_process(self.session, "worker", pid=owner)
        self.note(f"{phase}: worker {owner} killed")
        self.open_gate(tag)
        self.phase_end(phase, self.finish_round(phase, cmd))

    def kill_task_worker(self, cycle: int) -> None:
        phase, tag = f"task worker kill #{cycle}", f"task{cycle}"
        cmd = self.send_round(tag, seed=31 + 100 * cycle, held="task")
        pid = self.wait_marked(tag)
        kill_session_process(self.session, "worker", pid=pid)
        self.note(f"{phase}: worker {pid} killed")
        self.open_gate(tag)
        self.phase_end(phase, self.finish_round(phase, cmd))

    def kill_zygote(self, cycle: int) -> None:
        phase, tag = f"zygote kill #{cycle}", f"zygote{cycle}"
        cmd = self.send_round(tag, seed=41 + 100 * cycle, held="task", new_actor=True)
        self.wait_marked(tag)                              # work in flight on a worker
        pid = kill_session_process(self.session, "zygote")
        self.note(f"{phase}: zygote {pid} killed")
        self.open_gate(tag)
        round_ok = self.finish_round(phase, cmd)

        def new_zygote() -> list[int]:
            return [p.pid for p in session_processes(self.session)["zygote"] if p.pid != pid]

        try:
            wait_for(new_zygote, timeout=EXIT_DEADLINE, what="a new zygote")
        except AssertionError:
            round_ok = False
            self.problem(phase, f"no new zygote {EXIT_DEADLINE}s after the zygote (pid {pid}) was killed; "
                                f"the session's processes by role: {_roles(self.session)}")
        self.phase_end(phase, round_ok)

    def kill_raylet(self) -> None:
        phase = "raylet kill"
        assert self.head is not None
        record = self.head
        self.send_round("raylet", seed=51, held="task")
        self.wait_marked("raylet")
        spill = Path(self.session) / "spill"
        wait_for(lambda: _files_under(spill), timeout=START_TIMEOUT, what=f"spill files in {spill}")
        pid = kill_session_process(self.session, "raylet")
        self.note(f"{phase}: raylet {pid} killed")
        self.open_gate("raylet")

        def node_left() -> dict[str, list[int]]:
            procs = session_processes(record["session_dir"])
            return {r: [p.pid for p in procs[r]] for r in ("zygote", "worker") if procs[r]}

        try:
            wait_for(lambda: not node_left(), timeout=EXIT_DEADLINE, what="the zygote and workers to exit")
        except AssertionError:
            self.problem(phase, f"the killed raylet's zygote and workers still run {EXIT_DEADLINE}s later: "
                                f"{node_left()}")
        self.kill_checked()   # the driver of the dead node: not checked
        self.stop(phase)      # checks what the stop leaves of the killed node
        self.start()
        cmd = self.send_round("restarted", seed=61)
        self.phase_end("after the raylet kill, a new head", self.finish_round("new head", cmd))


def _roles(session: str) -> dict[str, list[int]]:
    return {role: [p.pid for p in procs] for role, procs in session_processes(session).items()}


def _sigkill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_one_node_soak(tmp_path):
    soak = Soak(tmp_path)
    try:
        soak.start()
        for cycle in range(1, CYCLES + 1):
            soak.kill_drivers(cycle)
            soak.kill_nested_owner(cycle)
            soak.kill_task_worker(cycle)
            soak.kill_zygote(cycle)
        soak.kill_raylet()
        soak.stop("final stop")
        for record in soak.sessions:     # the earlier heads' leftovers were checked at their stop
            soak.check_leftovers("final stop", record)
    finally:
        soak.kill_all_drivers()
        if (soak.root / "current_cluster").exists():
            soak.cli("stop", "--force")
        for record in soak.sessions:    # leave nothing on the machine, whatever failed
            for procs in session_processes(record["session_dir"]).values():
                for p in procs:
                    _sigkill(p.pid)
            for name in _shm_entries(record["store_namespace"]):
                shutil.rmtree(os.path.join("/dev/shm", name), ignore_errors=True)
        print("\n".join(soak.timeline))
    left = [p.pid for p in soak.drivers if pid_alive(p.pid)]
    assert not left, f"driver processes left: {left}"
    assert not soak.problems, f"{len(soak.problems)} failed checks:\n" + "\n".join(soak.problems)
