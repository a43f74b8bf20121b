"""``init()`` starts a cluster whatever the driver did before it.

A node's processes are forks of a launcher, and a process may only be forked while
nothing but its main thread runs. Each test runs a fresh driver that first does what
a user's program might (a failed gRPC call, a thread, a numpy matmul with OpenBLAS's
threads), then ``init()`` and tasks -- three times over, since a fork from a process
with gRPC's threads failed only most of the time. The launcher's origin and the
reason logged at debug level are printed by the driver and checked here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import pytest

from microray.testing import processes

RUNS = 3

DRIVER = """
import json
from microray import log, process
log.configure(level="debug", console=sys.stdout)
{before}
ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)

@ray.remote
def square(x):
    return x * x

assert ray.get([square.remote(i) for i in range(20)]) == [i * i for i in range(20)]
launcher = process._launcher
print("RESULT " + json.dumps({{"how": launcher.how, "reason": launcher.reason}}), flush=True)
ray.shutdown()
{after}
"""

GRPC_CALL = """
import grpc
channel = grpc.insecure_channel("127.0.0.1:1")
try:
    channel.unary_unary("/nothing.Here/Call")(b"", timeout=1)
except grpc.RpcError as exc:
    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
"""

PYTHON_THREAD = """
import threading
release = threading.Event()
waiter = threading.Thread(target=release.wait, name="user-waiter")
waiter.start()
"""

NUMPY_MATMUL = """
import numpy as np
a = np.random.default_rng(0).random((300, 300))
assert (a @ a).shape == (300, 300)
"""


def tagged(stdout: str, tag: str):
    """The JSON the driver printed last on a line starting with ``tag``."""
    lines = [line for line in stdout.splitlines() if line.startswith(tag + " ")]
    assert lines, stdout
    return json.loads(lines[-1].removeprefix(tag + " "))


def run(before: str, after: str = "", tmp_path=None) -> dict:
    env = processes.driver_env({"MICRORAY_SESSION_ROOT": str(tmp_path / "sessions")})
    proc = processes.run_driver(DRIVER.format(before=before, after=after), env, timeout=120,
                                cwd=tempfile.gettempdir())
    result = tagged(proc.stdout, "RESULT")
    result["stdout"] = proc.stdout
    return result


@pytest.mark.parametrize(
    ("before", "after", "names"),
    [
        pytest.param(GRPC_CALL, "", ("grpc", "event_engine"), id="failed-grpc-call"),
        pytest.param(PYTHON_THREAD, "release.set()", ("user-waiter",), id="python-thread"),
        pytest.param(NUMPY_MATMUL, "", (), id="numpy-matmul"),
    ],
)
def test_init_after_the_driver_made_threads(before, after, names, tmp_path):
    for _ in range(RUNS):
        result = run(before, after, tmp_path)
        if result["how"] == "forked":
            # only a driver that has no thread left by then may be forked (numpy
            # without a BLAS thread pool, say): nothing to explain
            assert not names, result
            continue
        assert result["how"] == "spawned", result
        assert "thread" in result["reason"], result
        for name in names:
            assert name in result["reason"], result
        # the reason is logged at debug level
        assert "launcher_spawned" in result["stdout"] and result["reason"] in result["stdout"], result["stdout"]


def test_a_clean_driver_forks_its_launcher(tmp_path):
    result = run("", "", tmp_path)
    assert result == {**result, "how": "forked", "reason": ""}
    assert "launcher_spawned" not in result["stdout"]


def test_the_launcher_is_forked_with_the_workers_modules(tmp_path):
    """The driver imports what a worker runs before it forks the launcher: the zygote and
    its workers then share those pages with every node process (and the driver) instead
    of the zygote loading a copy of its own after the fork."""
    after = """
from microray.raylet import zygote
missing = sorted(set(zygote.WORKER_MODULES) - set(process._launcher_args[1]))
print("PRELOAD " + json.dumps(missing), flush=True)
"""
    result = run("", after, tmp_path)
    assert result["how"] == "forked", result["reason"]
    assert tagged(result["stdout"], "PRELOAD") == [], result["stdout"]


def test_init_again_after_the_launcher_left(tmp_path):
    """A second init once the first launcher left (the driver has run gRPC by then)
    gets a spawned launcher, and works."""
    after = """
deadline = time.monotonic() + 60
while launcher.alive():
    assert time.monotonic() < deadline, "the launcher did not leave"
    time.sleep(0.05)
ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
assert ray.get(square.remote(7)) == 49
second = process._launcher
print("SECOND " + json.dumps({"how": second.how, "reason": second.reason}), flush=True)
ray.shutdown()
"""
    env = processes.driver_env({"MICRORAY_SESSION_ROOT": str(tmp_path / "sessions"),
                                "MICRORAY_LAUNCHER_IDLE_S": "0.2"})
    proc = processes.run_driver(DRIVER.format(before="", after=after), env, timeout=120,
                                cwd=tempfile.gettempdir())
    second = tagged(proc.stdout, "SECOND")
    assert second["how"] == "spawned" and "gRPC" in second["reason"], second


def test_a_spawned_launcher_imports_what_the_driver_can(tmp_path):
    """Workers of a spawned launcher find the modules beside the driver's script (the
    driver's import path), as forks of the driver would."""
    (tmp_path / "helper_beside_script.py").write_text("VALUE = 42\n")
    script = tmp_path / "driver.py"
    script.write_text(processes.driver_code(PYTHON_THREAD + """
import helper_beside_script
from microray import process
ray.init(num_cpus=1, include_dashboard=False)

@ray.remote
def value():
    import helper_beside_script
    return helper_beside_script.VALUE

@ray.remote
def by_reference():
    return helper_beside_script.VALUE

assert process._launcher.how == "spawned", process._launcher.reason
assert ray.get([value.remote(), by_reference.remote()], timeout=60) == [42, 42]
ray.shutdown()
release.set()
print("OK", flush=True)
"""))
    env = processes.driver_env({"MICRORAY_SESSION_ROOT": str(tmp_path / "sessions")})
    env.pop("PYTHONPATH", None)  # the script's folder is on the path only as the driver's sys.path[0]
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tempfile.gettempdir())
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


def test_init_and_shutdown_cycles_print_no_traceback(tmp_path):
    """Shutdown ends the driver's own io-loop tasks and leaves gRPC's to its server and
    channels: cancelling those printed a CancelledError traceback at some shutdowns."""
    after = """
for _ in range(8):
    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False)
    assert ray.get(square.remote(2)) == 4
    ray.shutdown()
print("CYCLES DONE", flush=True)
"""
    env = processes.driver_env({"MICRORAY_SESSION_ROOT": str(tmp_path / "sessions")})
    proc = processes.run_driver(DRIVER.format(before="", after=after), env, timeout=180,
                                cwd=tempfile.gettempdir())
    assert "CYCLES DONE" in proc.stdout
    assert "Traceback" not in proc.stderr and "CancelledError" not in proc.stderr, proc.stderr


def test_the_driver_keeps_the_pages_it_shares_with_a_forked_launcher(tmp_path):
    """The launcher (and through it every node process) is a fork of the driver: the
    driver's objects of that moment stay out of its cycle collector's reach while the
    launcher lives (a full collection would copy their pages, shared with every node
    process), and are back in it once the launcher is gone."""
    before = "import gc"
    after = """
after_shutdown = gc.get_freeze_count()
process.stop_launcher()
print("FREEZE " + json.dumps({"after_shutdown": after_shutdown, "after_launcher": gc.get_freeze_count()}), flush=True)
"""
    result = run(before, after, tmp_path)
    assert result["how"] == "forked", result["reason"]
    counts = tagged(result["stdout"], "FREEZE")
    assert counts["after_shutdown"] > 1000, counts  # the driver's modules and objects, launcher still up
    assert counts["after_launcher"] == 0, counts


def test_objects_a_program_froze_itself_stay_frozen(tmp_path):
    """A program that froze its objects before ``init`` keeps them frozen: neither the
    launcher's fork nor its end changes what the program froze."""
    before = """
import gc
gc.freeze()
own = gc.get_freeze_count()
"""
    after = """
process.stop_launcher()
print("FREEZE " + json.dumps({"own": own, "after": gc.get_freeze_count()}), flush=True)
"""
    counts = tagged(run(before, after, tmp_path)["stdout"], "FREEZE")
    assert counts["own"] > 1000, counts
    # still frozen (some may have been freed meanwhile), not unfrozen by the launcher's end
    assert counts["after"] > counts["own"] - 1000, counts
