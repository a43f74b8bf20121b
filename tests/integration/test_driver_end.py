"""How a driver ends is what its job and its tasks show.

A head started with ``microray start --head --num-cpus 2``; drivers in separate processes.
A driver interrupted with Ctrl-C (SIGINT) or killed (SIGKILL) while its tasks run leaves
no task RUNNING (or pending) for ever in ``microray list tasks``: when the job
ends its unfinished tasks are FAILED, as in Ray. The job is STOPPED after Ctrl-C, FAILED
after SIGKILL or an uncaught exception (with the exception as its message), and FINISHED
after a normal exit.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from microray.testing.processes import read_marker, start_driver, wait_for

from .test_cli import StartedHead, env, run_cli  # noqa: F401 -- env is a fixture used here

pytestmark = pytest.mark.timeout(240)

UNFINISHED = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "RUNNING")

# Three tasks on two CPUs: two run (RUNNING), one waits for a CPU.
SLOW_TASKS = """
ray.init(address="auto")

@ray.remote(max_retries=0)
def slow(i):
    time.sleep(300)

refs = [slow.remote(i) for i in range(3)]
print("JOB " + ray.get_runtime_context().get_job_id(), flush=True)
ray.get(refs)
"""


@pytest.fixture
def head(env, tmp_path):  # noqa: F811 -- env is the fixture imported above
    h = StartedHead(env, tmp_path)
    out = h.start("--num-cpus", "2", "--dashboard", "none")
    assert out.returncode == 0, out.stderr
    yield h
    h.snapshot_tree()
    h.stop()


def listed(head: StartedHead, kind: str, *args: str) -> list[dict]:
    out = run_cli("list", kind, "--format", "json", "--limit", "1000", *args, env=head.env, cwd=head.cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def job_of(head: StartedHead, job_id: str) -> dict:
    jobs = {j["job_id"]: j for j in listed(head, "jobs")}
    assert job_id in jobs, jobs
    return jobs[job_id]


def task_states(head: StartedHead, job_id: str) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in listed(head, "tasks", "--filter", f"job_id={job_id}")}


def _end_driver_mid_task(head: StartedHead, tmp_path, sig: int) -> str:
    """Start SLOW_TASKS, wait until two of its tasks run, send ``sig``; its job id."""
    driver = start_driver(SLOW_TASKS, head.env, tmp_path)
    try:
        job_id = read_marker(driver, "JOB", timeout=90)
        wait_for(lambda: list(task_states(head, job_id).values()).count("RUNNING") == 2,
                 timeout=60, what="two tasks of the driver to run")
        driver.send_signal(sig)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate(timeout=10)
    return job_id


def _assert_tasks_end_failed(head: StartedHead, job_id: str) -> None:
    states = wait_for(
        lambda: (s := task_states(head, job_id)) and not any(v in UNFINISHED for v in s.values()) and s,
        timeout=30, what=f"the tasks of job {job_id} to leave their unfinished states",
    )
    assert sorted(states.values()) == ["FAILED"] * 3, states
    failed = listed(head, "tasks", "--filter", f"job_id={job_id}", "--detail")
    assert all(job_id in (t.get("error_message") or "") for t in failed), failed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_a_driver_ended_mid_task_leaves_no_task_running_for_ever(head, tmp_path, sig):
    job_id = _end_driver_mid_task(head, tmp_path, sig)
    _assert_tasks_end_failed(head, job_id)
    job = wait_for(lambda: (j := job_of(head, job_id))["status"] != "RUNNING" and j, timeout=30,
                   what=f"job {job_id} to end")
    if sig == signal.SIGINT:
        assert job["status"] == "STOPPED" and "KeyboardInterrupt" in job["message"], job
    else:
        assert job["status"] == "FAILED" and "without disconnecting" in job["message"], job
    status = run_cli("status", env=head.env, cwd=head.cwd)
    assert "RUNNING" not in status.stdout and "SUBMITTED_TO_WORKER" not in status.stdout, status.stdout


def test_a_driver_ended_by_an_uncaught_exception_fails_its_job(head, tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(
        "import microray as ray\n"
        "ray.init(address='auto')\n"
        "print('JOB ' + ray.get_runtime_context().get_job_id(), flush=True)\n"
        "raise ZeroDivisionError('the model diverged')\n"
    )
    proc = subprocess.run([sys.executable, str(script)], env=head.env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # Python's own exit for an uncaught exception
    assert "ZeroDivisionError: the model diverged" in proc.stderr  # the traceback is printed as before
    job_id = proc.stdout.split("JOB ", 1)[1].split()[0]
    job = job_of(head, job_id)
    assert job["status"] == "FAILED", job
    assert "ZeroDivisionError: the model diverged" in job["message"], job

    ok = tmp_path / "ok.py"
    ok.write_text(
        "import microray as ray\n"
        "ray.init(address='auto')\n"
        "print('JOB ' + ray.get_runtime_context().get_job_id(), flush=True)\n"
        "try:\n"
        "    raise ValueError('handled')\n"
        "except ValueError:\n"
        "    pass\n"
    )
    proc = subprocess.run([sys.executable, str(ok)], env=head.env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    job = job_of(head, proc.stdout.split("JOB ", 1)[1].split()[0])
    assert job["status"] == "FINISHED" and not job["message"], job
