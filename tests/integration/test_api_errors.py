"""Errors on a real one-machine cluster: task exceptions, timeouts, cancellation,
worker crashes and retries, API misuse, infeasible tasks and bad init arguments."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest

import microray as ray
from microray.exceptions import (
    ConfigError,
    GetTimeoutError,
    PluginError,
    RayError,
    RayTaskError,
    SerializationError,
    TaskCancelledError,
    WorkerCrashedError,
)
from microray.testing.processes import stray_processes, wait_for

pytestmark = pytest.mark.timeout(120)


@ray.remote
def double(x):
    return 2 * x


@ray.remote
def raises_value_error(msg):
    raise ValueError(msg)


class CustomError(Exception):
    def __init__(self, code):
        super().__init__(f"custom failure code={code}")
        self.code = code


@ray.remote
def raises_custom(code):
    raise CustomError(code)


@ray.remote
def run_until_released(started: str, release: str, limit: float = 60.0):
    """Write our pid to ``started``, then run (in short steps, so a cancel can
    interrupt us) until ``release`` exists."""
    Path(started).write_text(str(os.getpid()))
    deadline = time.monotonic() + limit
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    return "released"


def _started_pid(path: Path, timeout: float = 30.0) -> int:
    wait_for(lambda: path.exists() and path.read_text(), timeout=timeout, what=f"{path.name} to be written")
    return int(path.read_text())


def _pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- task exceptions ------------------------------------------------------------------------
def test_task_exception_is_ray_task_error_and_the_cause_type(cluster):
    ref = raises_value_error.remote("bad thing 42")
    with pytest.raises(ValueError) as info:
        ray.get(ref, timeout=30)
    err = info.value
    assert isinstance(err, RayTaskError)
    assert isinstance(err, RayError)
    assert isinstance(err.cause, ValueError)
    text = str(err)
    assert "bad thing 42" in text
    assert "Traceback (most recent call last)" in text
    assert "raises_value_error" in text
    assert "ValueError" in text
    # the same error on every get of the ref
    with pytest.raises(RayTaskError):
        ray.get(ref, timeout=30)


def test_custom_exception_class_is_preserved(cluster):
    with pytest.raises(CustomError) as info:
        ray.get(raises_custom.remote(7), timeout=30)
    assert isinstance(info.value, RayTaskError)
    assert info.value.cause.code == 7
    assert "custom failure code=7" in str(info.value)


class UnpicklableError(Exception):
    def __init__(self):
        super().__init__("an error holding a lock")
        self.lock = threading.Lock()


def test_unpicklable_exception_still_reports(cluster):
    @ray.remote
    def raises_unpicklable():
        raise UnpicklableError()

    with pytest.raises(RayError) as info:
        ray.get(raises_unpicklable.remote(), timeout=30)
    text = str(info.value)
    assert "an error holding a lock" in text
    assert "raises_unpicklable" in text
    assert ray.get(double.remote(1), timeout=30) == 2


class TwoArgError(Exception):
    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


@ray.remote
def raises_two_arg_error():
    raise TwoArgError("first half", "second half")


def test_exception_with_a_two_argument_init_is_not_lost(cluster):
    # pickled as TwoArgError(*args) it would fail to load in the driver with
    # "__init__() missing 1 required positional argument: 'b'"
    with pytest.raises(TwoArgError) as info:
        ray.get(raises_two_arg_error.remote(), timeout=30)
    err = info.value
    assert isinstance(err, RayTaskError)
    assert err.b == "second half" and err.cause.b == "second half"
    text = str(err)
    assert "raises_two_arg_error" in text and "TwoArgError: first half" in text
    assert "Traceback (most recent call last)" in text


def test_unpicklable_exception_is_a_task_error_with_the_traceback(cluster):
    @ray.remote
    def raises_unpicklable():
        raise UnpicklableError()

    with pytest.raises(RayTaskError) as info:
        ray.get(raises_unpicklable.remote(), timeout=30)
    assert info.value.cause_name == "UnpicklableError"
    assert "Traceback (most recent call last)" in str(info.value)


def test_error_in_a_list_get(cluster):
    refs = [double.remote(1), raises_value_error.remote("in a list"), double.remote(2)]
    with pytest.raises(ValueError, match="in a list"):
        ray.get(refs, timeout=30)
    assert ray.get(refs[0]) == 2 and ray.get(refs[2]) == 4


def test_error_propagates_through_a_dependent_task(cluster):
    failed = raises_value_error.remote("upstream broke")
    with pytest.raises(RayTaskError) as info:
        ray.get(double.remote(failed), timeout=30)
    assert "upstream broke" in str(info.value)


def test_get_timeout(cluster, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    ref = run_until_released.remote(str(started), str(release))
    try:
        t0 = time.monotonic()
        with pytest.raises(GetTimeoutError) as info:
            ray.get(ref, timeout=0.1)
        assert isinstance(info.value, TimeoutError)
        assert time.monotonic() - t0 < 30  # it returned; it did not wait for the task
        # the ref is still good: the value arrives later
    finally:
        release.touch()
    assert ray.get(ref, timeout=60) == "released"


def test_get_timeout_zero_on_unfinished_task(cluster, tmp_path):
    release = tmp_path / "release"
    ref = run_until_released.remote(str(tmp_path / "started"), str(release))
    try:
        with pytest.raises(GetTimeoutError):
            ray.get([ref], timeout=0)
    finally:
        release.touch()
    assert ray.get(ref, timeout=60) == "released"


@pytest.mark.parametrize("timeout, error, words", [
    ("x", TypeError, "'timeout' must be None or a number of seconds >= 0, got 'x' (a str)"),
    ([1], TypeError, "got [1] (a list)"),
    (True, TypeError, "got True (a bool)"),
    (-1, ValueError, "must be nonnegative"),
    (float("nan"), ValueError, "must be nonnegative"),
])
def test_bad_timeouts_are_refused_by_get_and_wait(cluster, timeout, error, words):
    ref = ray.put(1)
    with pytest.raises(error) as info:
        ray.get(ref, timeout=timeout)
    assert str(info.value).startswith("get(): ") and words in str(info.value)
    with pytest.raises(error) as info:
        ray.wait([ref], timeout=timeout)
    assert str(info.value).startswith("wait(): ") and words in str(info.value)


def test_bad_num_returns_of_wait(cluster):
    refs = [ray.put(1), ray.put(2)]
    with pytest.raises(TypeError, match=r"'num_returns' must be an integer >= 1, got '1' \(a str\)"):
        ray.wait(refs, num_returns="1")
    with pytest.raises(TypeError, match="num_returns"):
        ray.wait(refs, num_returns=1.5)
    with pytest.raises(ValueError, match="Invalid number of objects to return 0"):
        ray.wait(refs, num_returns=0)
    with pytest.raises(ValueError, match="num_returns cannot be greater"):
        ray.wait(refs, num_returns=3)
    assert ray.wait(refs, num_returns=2, timeout=10)[0] == refs


# -- cancel --------------------------------------------------------------------------------------
def test_cancel_queued_task(cluster, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    # one task holds both CPUs, so a 1-CPU task cannot get a worker: it stays queued
    blocker = run_until_released.options(num_cpus=2).remote(str(started), str(release))
    try:
        _started_pid(started)
        queued = double.remote(1)
        ready, _ = ray.wait([queued], timeout=0.5)
        assert ready == []
        ray.cancel(queued)
        with pytest.raises(TaskCancelledError):
            ray.get(queued, timeout=10)
        # the running task was not touched
        ready, _ = ray.wait([blocker], timeout=0)
        assert ready == []
    finally:
        release.touch()
    assert ray.get(blocker, timeout=60) == "released"
    assert ray.get(double.remote(21), timeout=30) == 42


def test_cancel_running_task(cluster, tmp_path):
    started = tmp_path / "started"
    ref = run_until_released.remote(str(started), str(tmp_path / "never"))
    pid = _started_pid(started)
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=20)
    # a plain cancel interrupts the task but keeps the worker
    assert not _pid_gone(pid)
    assert ray.get(double.remote(4), timeout=30) == 8


def test_force_cancel_running_task_kills_its_worker(cluster, tmp_path):
    started = tmp_path / "started"
    ref = run_until_released.remote(str(started), str(tmp_path / "never"))
    pid = _started_pid(started)
    ray.cancel(ref, force=True)
    with pytest.raises(WorkerCrashedError, match="cancelled with force=True"):  # as Ray says it raises
        ray.get(ref, timeout=20)
    wait_for(lambda: _pid_gone(pid), timeout=20, what=f"worker {pid} to exit")
    assert ray.get(double.remote(5), timeout=30) == 10


@ray.remote(max_retries=0)
def sleep_or_not(seconds: float, started: str = "") -> int:
    if started:
        Path(started).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def test_force_cancel_keeps_the_tasks_queued_behind_it_on_its_worker(cluster, tmp_path):
    """Tasks pipelined behind the one cancelled with force=True never started: its worker's
    death is not theirs. They run again elsewhere without using a retry (max_retries=0)."""
    assert len(ray.get([sleep_or_not.remote(0) for _ in range(20)], timeout=60)) == 20  # seen short: pipelined
    started = tmp_path / "started"
    long = sleep_or_not.remote(60, str(started))
    queued = [sleep_or_not.remote(0.2) for _ in range(8)]  # more than the 2 CPUs: some queue behind `long`
    pid = _started_pid(started)
    ray.cancel(long, force=True)
    with pytest.raises(WorkerCrashedError):
        ray.get(long, timeout=30)
    pids = ray.get(queued, timeout=60)
    assert len(pids) == 8 and pid not in pids


def test_cancel_finished_task_is_a_no_op(cluster):
    ref = double.remote(3)
    assert ray.get(ref, timeout=30) == 6
    ray.cancel(ref)
    assert ray.get(ref) == 6


def test_cancel_requires_an_objectref(cluster):
    with pytest.raises(TypeError):
        ray.cancel("not a ref")


def test_cancel_task_blocked_in_get(cluster, tmp_path):
    @ray.remote
    def waits_for(refs, started):
        Path(started).write_text(str(os.getpid()))
        return ray.get(refs[0])

    never = double.options(num_cpus=64).remote(1)  # infeasible: never runs
    try:
        started = tmp_path / "started"
        ref = waits_for.remote([never], str(started))
        pid = _started_pid(started)
        ray.cancel(ref)
        with pytest.raises(TaskCancelledError):
            ray.get(ref, timeout=10)
        assert not _pid_gone(pid)  # interrupted, not killed
    finally:
        ray.cancel(never)
    assert ray.get(double.remote(6), timeout=30) == 12


@ray.remote
def touch(path):
    Path(path).touch()
    return "ran"


def test_cancel_task_queued_behind_a_running_task_on_one_worker(make_cluster, tmp_path):
    # one CPU: the second task waits behind the first (tasks submitted together each get
    # a worker when there are CPUs for them, so two CPUs would run both at once)
    make_cluster(num_cpus=1)
    ray.get([double.remote(i) for i in range(50)], timeout=60)
    started, release, ran = tmp_path / "started", tmp_path / "release", tmp_path / "ran"
    blocker = run_until_released.remote(str(started), str(release), 30.0)
    behind = touch.remote(str(ran))
    try:
        _started_pid(started)
        ray.cancel(behind)
        with pytest.raises(TaskCancelledError):
            ray.get(behind, timeout=10)
        ready, _ = ray.wait([blocker], timeout=0)
        assert ready == []  # answered while the task ahead still runs
    finally:
        release.touch()
    assert ray.get(blocker, timeout=60) == "released"
    assert not ran.exists(), "the cancelled task ran anyway"


# -- worker death and retries ---------------------------------------------------------------------
@ray.remote
def exit_on_first_attempt(marker: str):
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return ("second attempt", os.getpid())


@ray.remote
def always_exit(counter: str):
    with open(counter, "a") as f:
        f.write("x")
    os._exit(1)


def test_worker_death_is_retried(cluster, tmp_path):
    marker = tmp_path / "ran-once"
    result, pid = ray.get(exit_on_first_attempt.remote(str(marker)), timeout=60)
    assert result == "second attempt"
    first_pid = int(marker.read_text())
    assert pid != first_pid
    assert _pid_gone(first_pid)


def test_worker_death_after_all_retries_is_worker_crashed_error(cluster, tmp_path):
    counter = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError):
        ray.get(always_exit.remote(str(counter)), timeout=60)
    assert counter.read_text() == "x" * 4  # the first attempt and max_retries=3 retries
    assert ray.get(double.remote(1), timeout=30) == 2


def test_worker_death_with_max_retries_zero(cluster, tmp_path):
    counter = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError):
        ray.get(always_exit.options(max_retries=0).remote(str(counter)), timeout=60)
    assert counter.read_text() == "x"
    marker = tmp_path / "ran-once"
    with pytest.raises(WorkerCrashedError):
        ray.get(exit_on_first_attempt.options(max_retries=0).remote(str(marker)), timeout=60)


def test_worker_death_with_max_retries_one(cluster, tmp_path):
    counter = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError):
        ray.get(always_exit.options(max_retries=1).remote(str(counter)), timeout=60)
    assert counter.read_text() == "xx"


def test_retried_tasks_still_reach_the_state_api(cluster, tmp_path):
    # a retry re-queues the task; that event must not break the task-event flush
    from microray.util.state import list_tasks

    result, _ = ray.get(exit_on_first_attempt.remote(str(tmp_path / "ran-once")), timeout=60)
    assert result == "second attempt"
    ref = double.options(name="after-a-retry").remote(1)
    assert ray.get(ref, timeout=30) == 2

    def finished():
        rows = [r for r in list_tasks(limit=100_000) if r.get("name") == "after-a-retry"]
        return rows and rows[0]["state"] == "FINISHED"

    wait_for(finished, timeout=20, what="the task after a retry to show up FINISHED")


@ray.remote
def flaky(counter: str, exc_type: type, fail_times: int = 2):
    attempts = len(Path(counter).read_text()) if os.path.exists(counter) else 0
    with open(counter, "a") as f:
        f.write("x")
    if attempts < fail_times:
        raise exc_type(f"attempt {attempts}")
    return attempts


def test_exceptions_are_not_retried_by_default(cluster, tmp_path):
    counter = tmp_path / "n"
    with pytest.raises(ValueError, match="attempt 0"):
        ray.get(flaky.remote(str(counter), ValueError), timeout=30)
    assert counter.read_text() == "x"


def test_retry_exceptions_true(cluster, tmp_path):
    counter = tmp_path / "n"
    assert ray.get(flaky.options(retry_exceptions=True).remote(str(counter), ValueError), timeout=60) == 2
    assert counter.read_text() == "xxx"


def test_retry_exceptions_list(cluster, tmp_path):
    counter = tmp_path / "n"
    assert ray.get(flaky.options(retry_exceptions=[ValueError]).remote(str(counter), ValueError), timeout=60) == 2
    # an exception not in the list is not retried
    other = tmp_path / "other"
    with pytest.raises(KeyError):
        ray.get(flaky.options(retry_exceptions=[ValueError]).remote(str(other), KeyError), timeout=60)
    assert other.read_text() == "x"


def test_retry_exceptions_stop_at_max_retries(cluster, tmp_path):
    counter = tmp_path / "n"
    with pytest.raises(ValueError, match="attempt 1"):
        ray.get(flaky.options(retry_exceptions=True, max_retries=1).remote(str(counter), ValueError, 5), timeout=60)
    assert counter.read_text() == "xx"


# -- API misuse ----------------------------------------------------------------------------------
def test_calling_a_remote_function_directly_is_a_type_error(cluster):
    with pytest.raises(TypeError, match=r"double\.remote"):
        double(1)


def test_unknown_option_is_a_value_error_naming_it(cluster):
    with pytest.raises(ValueError, match="not_an_option"):
        double.options(not_an_option=1)
    with pytest.raises(ValueError, match="bogus_key"):
        ray.remote(bogus_key=3)(lambda: None)


def test_bad_option_values(cluster):
    with pytest.raises(ValueError, match="num_cpus"):
        double.options(num_cpus=-1)
    with pytest.raises(TypeError, match="max_retries"):  # as Ray: a wrong type is a TypeError
        double.options(max_retries="3")
    with pytest.raises(ValueError, match="runtime_env"):
        double.options(runtime_env={"env_vars": {"A": 1}})


def test_unserializable_argument(cluster):
    lock = threading.Lock()
    with pytest.raises(TypeError) as info:
        double.remote(lock)
    assert isinstance(info.value, SerializationError)
    assert "argument 0" in str(info.value)
    assert "double" in str(info.value)
    with pytest.raises(SerializationError, match="argument 'x'"):
        double.remote(x=lock)
    # the cluster still works
    assert ray.get(double.remote(8), timeout=30) == 16


def test_unserializable_put(cluster):
    with pytest.raises(TypeError):
        ray.put(threading.Lock())
    assert ray.get(ray.put(5)) == 5


def test_unserializable_return_value(cluster):
    @ray.remote
    def returns_lock():
        return threading.Lock()

    with pytest.raises(RayTaskError) as info:
        ray.get(returns_lock.remote(), timeout=30)
    assert "lock" in str(info.value).lower()
    assert ray.get(double.remote(2), timeout=30) == 4


def test_init_twice(cluster):
    with pytest.raises(RuntimeError, match="ignore_reinit_error"):
        ray.init()
    ctx = ray.init(ignore_reinit_error=True)
    assert ctx["node_id"] == cluster.node_id
    assert ray.get(double.remote(1), timeout=30) == 2


def test_get_of_non_refs_is_refused(cluster):
    with pytest.raises(ValueError, match="must either be an ObjectRef"):  # as Ray
        ray.get(1)
    with pytest.raises(TypeError):  # as Ray: a list holding something else
        ray.get([ray.put(1), 2])


# -- infeasible tasks ------------------------------------------------------------------------------
def test_infeasible_task_pends_and_warns(cluster):
    ref = double.options(num_cpus=64).remote(1)
    try:
        ready, not_ready = ray.wait([ref], timeout=1)
        assert ready == [] and not_ready == [ref]

        def warned():
            text = cluster.raylet_log()
            return "infeasible" in text and "64" in text

        wait_for(warned, timeout=20, what="an 'infeasible' warning in the raylet log")
        # the rest of the cluster is unaffected
        assert ray.get(double.remote(2), timeout=30) == 4
    finally:
        ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=10)


def _driver_events(cluster, event: str) -> list[dict]:
    path = cluster.logs / f"driver-{os.getpid()}.log"
    found = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            found.append(record)
    return found


def test_infeasible_task_warns_the_driver_naming_demand_and_cluster_total(cluster):
    refs = [double.options(num_cpus=48, resources={"warn_probe": 1}).remote(i) for i in range(3)]
    try:
        def warned():
            return [r for r in _driver_events(cluster, "infeasible_task")
                    if r.get("demand") == {"CPU": 48.0, "warn_probe": 1.0}]

        found = wait_for(warned, timeout=20, what="an infeasible_task warning in the driver's log")
        assert len(found) == 1  # once per shape, however many tasks and lease requests
        record = found[0]
        assert record["level"] == "warning" and record["task"] == "double"
        assert record["cluster_total"]["CPU"] == 2.0 and "warn_probe" not in record["cluster_total"]
        assert "cannot be scheduled right now" in record["hint"]
        # the tasks keep pending (a node may join), and the cluster still works
        ready, not_ready = ray.wait(refs, num_returns=1, timeout=0.5)
        assert ready == [] and len(not_ready) == 3
        assert ray.get(double.remote(3), timeout=30) == 6
    finally:
        for ref in refs:
            ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(refs[0], timeout=10)


def test_unknown_custom_resource_is_infeasible(cluster):
    ref = double.options(resources={"no_such_thing": 1}).remote(1)
    try:
        ready, _ = ray.wait([ref], timeout=1)
        assert ready == []
    finally:
        ray.cancel(ref)


# -- bad init arguments ----------------------------------------------------------------------------
def test_unknown_backend_name_at_init(no_cluster):
    with pytest.raises(PluginError) as info:
        ray.init(object_store="shmm")
    msg = str(info.value)
    assert "object_store" in msg
    assert "'shmm'" in msg
    assert "shm" in msg and "lmdb" in msg
    assert "did you mean 'shm'" in msg
    # one clear error, raised before anything started
    assert info.value.__cause__ is None
    assert not ray.is_initialized()
    assert stray_processes(no_cluster) == []


@pytest.mark.parametrize(
    "family,name,suggestion",
    [("scheduling_policy", "hybird", "hybrid"), ("gcs_store", "memroy", "memory")],
)
def test_unknown_backend_names_of_other_families(no_cluster, family, name, suggestion):
    with pytest.raises(PluginError, match=f"did you mean '{suggestion}'") as info:
        ray.init(**{family: name})
    assert family in str(info.value)
    assert not ray.is_initialized()


def test_bad_config_value_at_init(no_cluster):
    with pytest.raises(ConfigError) as info:
        ray.init(num_cpus="x")
    msg = str(info.value)
    assert "num_cpus" in msg
    assert "'x'" in msg
    assert isinstance(info.value, ValueError)
    assert not ray.is_initialized()
    assert stray_processes(no_cluster) == []


def test_unknown_config_key_at_init(no_cluster):
    with pytest.raises(ConfigError, match="num_cpu"):
        ray.init(num_cpu=2)
    assert not ray.is_initialized()


def _failed_start_with_unreachable_gcs_store():
    """``init`` with a Redis GCS store nobody listens on: the GCS cannot start."""
    pytest.importorskip("redis")
    from microray.exceptions import RaySystemError

    with pytest.raises(RaySystemError) as info:
        ray.init(num_cpus=2, gcs_store="redis", gcs_store_options={"url": "redis://127.0.0.1:1/0"})
    return info.value


def test_gcs_that_cannot_start_fails_init_cleanly(no_cluster):
    err = _failed_start_with_unreachable_gcs_store()
    assert "GCS" in str(err) and "redis://127.0.0.1:1/0" in str(err)
    assert not ray.is_initialized()
    wait_for(lambda: stray_processes(no_cluster) == [], timeout=15,
             what="the half-started node's processes to exit")
    ray.init(num_cpus=2)
    try:
        assert ray.get(double.remote(2), timeout=30) == 4
    finally:
        ray.shutdown()


def test_gcs_that_cannot_start_leaves_no_shared_memory(no_cluster):
    import re
    import shutil

    err = _failed_start_with_unreachable_gcs_store()
    match = re.search(r"logs: (\S+)/logs", str(err))
    assert match, str(err)
    tag = os.path.basename(match.group(1))[-12:]

    def left():
        return [n for n in os.listdir("/dev/shm") if f"mr-{tag}-" in n]

    try:
        wait_for(lambda: not left(), timeout=3, what=f"/dev/shm entries of session {tag} to go")
    finally:
        for name in left():  # do not leave the leak behind
            shutil.rmtree(os.path.join("/dev/shm", name), ignore_errors=True)


def test_init_works_after_failed_inits(no_cluster):
    with pytest.raises(PluginError):
        ray.init(object_store="shmm")
    with pytest.raises(ConfigError):
        ray.init(num_cpus="x")
    ray.init(num_cpus=2)
    try:
        assert ray.get(double.remote(3), timeout=30) == 6
    finally:
        ray.shutdown()


# -- repeated init / shutdown ------------------------------------------------------------------------
def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_repeated_init_shutdown_leaves_no_process_or_thread(no_cluster):
    threads = threading.active_count()
    for i in range(3):
        ray.init(num_cpus=2)
        assert ray.get([double.remote(j) for j in range(20)], timeout=60) == [2 * j for j in range(20)]
        ns = ray.api._worker.store_namespace
        ray.shutdown()
        assert not ray.is_initialized()
        wait_for(lambda: stray_processes(no_cluster) == [], timeout=15, what="node processes to exit")
        wait_for(lambda: not [n for n in os.listdir("/dev/shm") if ns in n], timeout=15, what="shm to go")
    # grpc keeps one poller thread per process; nothing else may pile up
    wait_for(lambda: threading.active_count() <= threads + 1, timeout=10,
             what=f"threads back to {threads} (+1 grpc poller), now {threading.enumerate()}")


def test_repeated_init_shutdown_leaks_no_file_descriptors(no_cluster):
    ray.init(num_cpus=2)
    ray.get(double.remote(1), timeout=30)
    ray.shutdown()
    before = _open_fds()
    for _ in range(3):
        ray.init(num_cpus=2)
        ray.get(double.remote(1), timeout=30)
        ray.shutdown()
    assert _open_fds() <= before + 1, f"{_open_fds() - before} more open fds after 3 init/shutdown cycles"
