"""Task output reaches the driver: a task's print(), stderr and logging lines are printed
by its driver as ``(f pid=N) line``; ``log_to_driver=False`` turns that off; a line printed
by many workers is printed once with a repeat count. Each driver is its own process, so its
stdout is what a user sees."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from microray.testing.processes import driver_env, run_driver, start_driver, wait_for

PRINTING = """
    import logging
    ray.init(num_cpus=2, include_dashboard=False{extra})

    @ray.remote
    def f():
        print("hello from f", flush=True)
        print("to stderr", file=sys.stderr)
        logging.getLogger("user").warning("logged from f")
        return os.getpid()

    pid = ray.get(f.remote())
    print("PID", pid, flush=True)
"""


class _Lines:
    """The lines a stream of a driver printed so far (read on a thread, so a buffered
    second line is never waited for on the file descriptor)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait(self, done, timeout: float) -> list[str]:
        wait_for(lambda: done(list(self.lines)), timeout=timeout, what=f"lines in {self.lines!r}")
        return list(self.lines)


def test_print_stderr_and_logging_reach_the_driver(tmp_path: Path) -> None:
    proc = start_driver(PRINTING.format(extra="") + "    sys.stdin.read()\n", driver_env(), tmp_path, stdin=True)
    try:
        def printed(lines: list[str]) -> bool:
            pids = [line.split()[1] for line in lines if line.startswith("PID ")]
            return bool(pids) and f"(f pid={pids[0]}) hello from f" in lines

        # the driver's own stdout carries the task's line, labelled with its name and pid
        out = _Lines(proc.stdout).wait(printed, timeout=120)
        pid = next(line.split()[1] for line in out if line.startswith("PID "))
        # stderr and logging lines go to the driver's stderr
        want = {f"(f pid={pid}) to stderr", f"(f pid={pid}) logged from f"}
        _Lines(proc.stderr).wait(lambda lines: want <= set(lines), timeout=30)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_log_to_driver_false_prints_nothing(tmp_path: Path) -> None:
    # the driver waits until the GCS holds the task's lines (where a driver streaming its
    # output reads them), so the lines were there to print, and were not printed
    body = PRINTING.format(extra=", log_to_driver=False") + """
    from microray.core import context
    from microray.protocol import gcs_pb2
    cw = context.worker

    def delivered():
        reply = cw.call(cw.gcs.PollLogs, gcs_pb2.PollLogsRequest(job_id=cw.job_id, after=0, wait_s=1.0))
        return [line for r in reply.records for line in r.lines]

    deadline = time.monotonic() + 60
    while "hello from f" not in delivered():
        assert time.monotonic() < deadline, "the task's lines never reached the GCS"
    print("DELIVERED", flush=True)
    ray.shutdown()
    """
    proc = run_driver(body, driver_env(), timeout=180, cwd=tmp_path)
    assert "DELIVERED" in proc.stdout
    assert "hello from f" not in proc.stdout and "logged from f" not in proc.stderr
    assert "(f pid=" not in proc.stdout + proc.stderr


def test_a_line_printed_by_ten_tasks_is_deduplicated(tmp_path: Path) -> None:
    body = """
    ray.init(num_cpus=2, include_dashboard=False)

    @ray.remote(max_calls=1)  # a fresh worker for each task: ten processes print the line
    def f(i):
        print("the same line", flush=True)
        return os.getpid()

    pids = ray.get([f.remote(i) for i in range(10)])
    print("PIDS", len(set(pids)), flush=True)
    sys.stdin.read()
    """
    proc = start_driver(body, driver_env(), tmp_path, stdin=True)
    stdout, stderr = _Lines(proc.stdout), _Lines(proc.stderr)
    try:
        # the count arrives when the de-duplication window ends (or when the driver leaves)
        stdout.wait(lambda lines: "PIDS 10" in lines and any("[repeated" in line for line in lines), timeout=180)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    out, err = "\n".join(stdout.lines), "\n".join(stderr.lines)
    printed = [line for line in out.splitlines() if re.fullmatch(r"\(f pid=\d+\) the same line", line)]
    repeated = [int(m.group(1)) for m in re.finditer(r"\(f pid=\d+\) the same line \[repeated (\d+)x across cluster\]",
                                                     out)]
    assert repeated, out
    assert len(printed) + sum(repeated) == 10, out
    assert len(printed) < 10
    assert "MICRORAY_DEDUP_LOGS=0" in err  # the first fold says how to see every line


def test_lines_printed_before_a_result_reach_a_driver_that_leaves_at_once(tmp_path: Path) -> None:
    # a result names the last line its worker printed for the job and the driver's
    # shutdown waits until it has that line, so a driver that shuts down the moment it has
    # the results still prints every line: from a task, an actor's constructor (followed by
    # a method that prints nothing), a sync method and an async method, and a task's burst
    # of lines still on its way to the GCS when its result arrives
    body = """
    ray.init(num_cpus=2, include_dashboard=False)

    @ray.remote
    def f():
        print("line from f", flush=True)
        return 1

    @ray.remote
    class Sync:
        def __init__(self):
            print("line from Sync.__init__", flush=True)

        def m(self):
            print("line from Sync.m", file=sys.stderr)
            return 2

    @ray.remote
    class Async:
        async def m(self):
            print("line from Async.m", flush=True)
            return 3

    @ray.remote
    class Quiet:
        def __init__(self):
            print("line from Quiet.__init__", flush=True)

        def m(self):
            return 4

    @ray.remote
    def burst():
        print("\\n".join(f"burst line {i} " + "x" * 200 for i in range(5000)))
        return 5

    s = Sync.remote()
    assert ray.get([f.remote(), s.m.remote(), Async.remote().m.remote(), Quiet.remote().m.remote()]) == [1, 2, 3, 4]
    assert ray.get(burst.remote()) == 5
    ray.shutdown()
    """
    proc = run_driver(body, driver_env(), timeout=180, cwd=tmp_path)
    assert re.search(r"^\(f pid=\d+\) line from f$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^\(Sync pid=\d+\) line from Sync.__init__$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^\(Async pid=\d+\) line from Async.m$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^\(Sync pid=\d+\) line from Sync.m$", proc.stderr, re.M), proc.stderr
    assert re.search(r"^\(Quiet pid=\d+\) line from Quiet.__init__$", proc.stdout, re.M), proc.stdout[-3000:]
    burst = re.findall(r"^\(burst pid=\d+\) burst line \d+ x+$", proc.stdout, re.M)
    assert len(burst) == 5000, (len(burst), proc.stdout[-3000:])


def test_an_actor_whose_class_defines_repr_labels_its_lines_with_it(tmp_path: Path) -> None:
    """As in Ray (``actor-repr.py`` of its logging docs): an actor's method lines carry
    ``repr(actor)``, so that actors of one class tell apart; others keep the class name."""
    body = """
    ray.init(num_cpus=2, include_dashboard=False)

    @ray.remote(num_cpus=0)
    class MyActor:
        def __init__(self, index):
            self.index = index

        def foo(self):
            print("hello there", flush=True)

        def __repr__(self):
            return f"MyActor(index={self.index})"

    @ray.remote(num_cpus=0)
    class Plain:
        def foo(self):
            print("plain hello", flush=True)

    ray.get([MyActor.remote(i).foo.remote() for i in range(2)] + [Plain.remote().foo.remote()])
    ray.shutdown()
    """
    proc = run_driver(body, driver_env(), timeout=180, cwd=tmp_path)
    for i in range(2):
        # (the second line may come de-duplicated: "... [repeated 1x across cluster]")
        assert re.search(rf"^\(MyActor\(index={i}\) pid=\d+\) hello there( \[repeated|$)", proc.stdout, re.M), proc.stdout
    assert re.search(r"^\(Plain pid=\d+\) plain hello$", proc.stdout, re.M), proc.stdout
