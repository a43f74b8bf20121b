"""Drivers and jobs share a node: a busy driver does not starve the others.

A head started with ``microray start --head --num-cpus 2``; one driver keeps both CPUs
busy with rounds of short tasks for as long as the test runs. Its leases are kept for
reuse, but when another owner's lease request waits, the raylet asks the busy driver
to give a lease back after its current task (``raylet/fair_share.py``), so the newcomer
runs at once instead of after the busy driver ends.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from microray.testing.processes import read_marker, run_driver, start_driver

from .busy_driver import FOREVER, busy_rounds
from .test_cli import StartedHead, env  # noqa: F401 -- env is a fixture used here

pytestmark = pytest.mark.timeout(240)

# Keeps both CPUs busy until killed: rounds of four 50 ms tasks.
BUSY_DRIVER = busy_rounds(4, 60) + FOREVER

FIRST_TASK_WITHIN_S = 2.0


@pytest.fixture
def head(env, tmp_path):  # noqa: F811 -- env is the fixture imported above
    h = StartedHead({**env, "MICRORAY_DASHBOARD_PORT": "0"}, tmp_path)
    out = h.start("--num-cpus", "2", "--dashboard", "web")
    assert out.returncode == 0, out.stderr
    yield h
    h.snapshot_tree()
    h.stop()


@pytest.fixture
def busy_driver(head, tmp_path):
    """A driver that keeps both CPUs of the head busy until the test ends."""
    driver = start_driver(BUSY_DRIVER, head.env, tmp_path)
    try:
        read_marker(driver, "LOOPING", timeout=90)
        yield driver
    finally:
        driver.kill()
        driver.communicate(timeout=10)


def test_a_second_driver_runs_its_first_task_while_another_keeps_the_cpus_busy(head, busy_driver, tmp_path):
    out = run_driver(
        f"""
        ray.init(address="auto")

        @ray.remote
        def g():
            return os.getpid()

        try:
            ray.get(g.remote(), timeout={FIRST_TASK_WITHIN_S})
            print("FIRST_TASK done", flush=True)
        except ray.exceptions.GetTimeoutError:
            print("FIRST_TASK timed out", flush=True)
        """,
        head.env, timeout=120, cwd=tmp_path,
    )
    assert "FIRST_TASK done" in out.stdout, (
        f"the second driver's first task did not finish within {FIRST_TASK_WITHIN_S}s while another "
        f"driver kept the CPUs busy:\n{out.stdout}\n{out.stderr[-2000:]}"
    )
    assert busy_driver.poll() is None, "the busy driver was to keep running meanwhile"


def test_a_job_submitted_while_a_driver_is_busy_gets_its_cpus(head, busy_driver, tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "job.py").write_text(
        "import microray as ray\n"
        "ray.init()\n"
        "@ray.remote\n"
        "def double(x):\n"
        "    return 2 * x\n"
        "print('job result', sum(ray.get([double.remote(i) for i in range(6)], timeout=30)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "microray.cli", "job", "submit", "--working-dir", str(job_dir), "--",
         "python", "job.py"],
        env=head.env, cwd=tmp_path, capture_output=True, text=True, timeout=150,
    )
    assert out.returncode == 0 and "job result 30" in out.stdout, (
        f"the job did not get the node's CPUs while another driver was busy:\n{out.stdout}\n{out.stderr[-2000:]}"
    )
    assert busy_driver.poll() is None, "the busy driver was to keep running meanwhile"


def test_three_drivers_on_two_cpus_all_make_progress(head, busy_driver, tmp_path):
    """Owners take turns on a full node: two more busy drivers both finish rounds while
    the first keeps going (none waits for another to end)."""
    body = busy_rounds(4, 60) + 'print("ROUNDS_DONE", flush=True)\n'
    others = [start_driver(body, head.env, tmp_path) for _ in range(2)]
    try:
        for driver in others:
            read_marker(driver, "ROUNDS_DONE", timeout=90)
    finally:
        for driver in others:
            if driver.poll() is None:
                driver.kill()
            driver.communicate(timeout=10)
    assert busy_driver.poll() is None
