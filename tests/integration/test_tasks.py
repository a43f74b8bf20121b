"""Tasks on a real one-machine cluster: submission, arguments, returns, nesting,
generators, options, runtime context and cluster resources."""

from __future__ import annotations

import os
import time

import pytest

import microray as ray
from microray.exceptions import GetTimeoutError, RayTaskError
from microray.testing.processes import stray_processes, wait_for

from .conftest import shm_entries

pytestmark = pytest.mark.timeout(120)


@ray.remote
def double(x):
    return 2 * x


@ray.remote
def echo(*args, **kwargs):
    return args, kwargs


@ray.remote
def with_defaults(a, b=10, *, c="c", d=None):
    return a, b, c, d


# -- basics ------------------------------------------------------------------------
def test_remote_returns_objectref_and_value(cluster):
    ref = double.remote(21)
    assert isinstance(ref, ray.ObjectRef)
    assert ray.get(ref) == 42
    # a second get of the same ref gives the same value
    assert ray.get(ref) == 42


def test_thousand_tasks(cluster):
    refs = [double.remote(i) for i in range(1000)]
    assert len({r.binary() for r in refs}) == 1000
    assert ray.get(refs, timeout=60) == [2 * i for i in range(1000)]


def test_kwargs(cluster):
    args, kwargs = ray.get(echo.remote(1, "two", three=3, four=[4]))
    assert args == (1, "two")
    assert kwargs == {"three": 3, "four": [4]}


def test_defaults(cluster):
    assert ray.get(with_defaults.remote(1)) == (1, 10, "c", None)
    assert ray.get(with_defaults.remote(1, 2, d={"k": 1})) == (1, 2, "c", {"k": 1})
    assert ray.get(with_defaults.remote(a=5, c="x")) == (5, 10, "x", None)


def test_wrong_arguments_surface_as_type_error(cluster):
    # wherever the check happens, a call that does not fit the signature is a TypeError
    with pytest.raises(TypeError):
        ray.get(with_defaults.remote(), timeout=30)
    with pytest.raises(TypeError):
        ray.get(with_defaults.remote(1, 2, 3), timeout=30)
    with pytest.raises(TypeError):
        ray.get(with_defaults.remote(1, nope=2), timeout=30)


def test_wrong_arguments_raise_at_submission(cluster):
    with pytest.raises(TypeError):
        with_defaults.remote()


def test_large_and_complex_arguments_and_results(cluster):
    payload = {"list": list(range(10_000)), "bytes": os.urandom(300_000), "nested": {"t": (1, 2.5, None)}}
    args, kwargs = ray.get(echo.remote(payload, key=payload))
    assert args[0] == payload
    assert kwargs["key"] == payload


@ray.remote
def rendezvous(me: str, other: str, folder: str, limit: float = 3.0):
    """Announce ourselves, then wait for ``other``: True only if both ran at the same time."""
    open(os.path.join(folder, me), "w").close()
    deadline = time.monotonic() + limit
    while not os.path.exists(os.path.join(folder, other)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@ray.remote
def nap(seconds):
    time.sleep(seconds)
    return seconds


def test_tasks_run_in_parallel_on_two_cpus(cluster, tmp_path):
    # once the submitter has seen that tasks of this shape take a while, it gives
    # each its own worker
    ray.get([nap.remote(0.05) for _ in range(4)], timeout=60)
    refs = [rendezvous.remote("a", "b", str(tmp_path), 20.0), rendezvous.remote("b", "a", str(tmp_path), 20.0)]
    assert ray.get(refs, timeout=60) == [True, True]


@pytest.mark.parametrize("history", ["fresh cluster", "after fast tasks"])
def test_slow_tasks_submitted_together_run_in_parallel(make_cluster, tmp_path, history):
    make_cluster(num_cpus=2)
    if history == "after fast tasks":
        assert ray.get([double.remote(i) for i in range(100)], timeout=60)[-1] == 198
    refs = [rendezvous.remote("a", "b", str(tmp_path)), rendezvous.remote("b", "a", str(tmp_path))]
    assert ray.get(refs, timeout=60) == [True, True]


def test_the_leak_check_sees_a_running_cluster(cluster):
    # the teardown check (no process, no shm entry left) is only worth something if it
    # sees the cluster while it runs: GCS, raylet, zygote and workers, and the namespace
    ray.get(double.remote(1), timeout=30)
    assert len(stray_processes(cluster.baseline)) >= 4
    assert shm_entries(cluster.namespace)


# -- multiple returns ---------------------------------------------------------------
@ray.remote(num_returns=2)
def two():
    return "a", "b"


@ray.remote(num_returns=3)
def three(x):
    return x, x + 1, x + 2


@ray.remote
def returns_pair():
    return (1, 2)


def test_num_returns_two_and_three(cluster):
    refs = two.remote()
    assert isinstance(refs, list) and len(refs) == 2
    assert ray.get(refs) == ["a", "b"]
    r0, r1, r2 = three.remote(10)
    assert ray.get(r2) == 12
    assert ray.get([r0, r1]) == [10, 11]


def test_num_returns_via_options(cluster):
    refs = returns_pair.options(num_returns=2).remote()
    assert len(refs) == 2
    assert ray.get(refs) == [1, 2]
    # the default is still one return holding the tuple
    assert ray.get(returns_pair.remote()) == (1, 2)


def test_num_returns_mismatch_raises(cluster):
    refs = returns_pair.options(num_returns=3).remote()
    assert len(refs) == 3
    for ref in refs:
        with pytest.raises(RayTaskError) as info:
            ray.get(ref, timeout=30)
        assert "num_returns=3" in str(info.value)
    # a non-iterable value cannot be split either
    refs = double.options(num_returns=2).remote(1)
    with pytest.raises(RayTaskError):
        ray.get(refs[0], timeout=30)


# -- ObjectRefs as arguments ------------------------------------------------------------
@ray.remote
def describe_arg(x):
    return type(x).__name__, x if not isinstance(x, ray.ObjectRef) else None


@ray.remote
def inspect_list(items):
    kinds = [isinstance(i, ray.ObjectRef) for i in items]
    values = ray.get(list(items))
    return kinds, values


def test_top_level_ref_is_resolved_before_the_task_runs(cluster):
    ref = ray.put({"v": 1})
    assert ray.get(describe_arg.remote(ref)) == ("dict", {"v": 1})
    # a ref returned by another task is resolved too (the task waits for it)
    assert ray.get(describe_arg.remote(double.remote(4))) == ("int", 8)


def test_refs_nested_in_a_list_stay_refs(cluster):
    a = ray.put(1)
    b = double.remote(5)
    kinds, values = ray.get(inspect_list.remote([a, b]))
    assert kinds == [True, True]
    assert values == [1, 10]


def test_ref_as_keyword_argument_is_resolved(cluster):
    ref = ray.put("hello")
    _args, kwargs = ray.get(echo.remote(key=ref))
    assert kwargs == {"key": "hello"}


def test_chain_of_dependent_tasks(cluster):
    ref = ray.put(1)
    for _ in range(20):
        ref = double.remote(ref)
    assert ray.get(ref, timeout=60) == 2**20


# -- nested submission ------------------------------------------------------------------
@ray.remote
def child(i):
    return i * i


@ray.remote
def parent(n):
    refs = [child.remote(i) for i in range(n)]
    return sum(ray.get(refs))


@ray.remote
def grandparent(n):
    return sum(ray.get([parent.remote(n) for _ in range(2)]))


def test_task_submits_and_gets_children(make_cluster):
    make_cluster(num_cpus=2)
    assert ray.get(parent.remote(5), timeout=60) == sum(i * i for i in range(5))


def test_nested_tasks_do_not_deadlock_when_parents_hold_every_cpu(make_cluster):
    # two parents take both CPUs; their children can only run because a worker
    # blocked in get() lends its CPU back
    make_cluster(num_cpus=2)
    refs = [parent.remote(4) for _ in range(2)]
    assert ray.get(refs, timeout=60) == [14, 14]


def test_three_levels_of_nesting(make_cluster):
    make_cluster(num_cpus=2)
    assert ray.get(grandparent.remote(3), timeout=90) == 2 * (0 + 1 + 4)


def test_nested_tasks_after_a_burst_of_tasks(make_cluster):
    make_cluster(num_cpus=2)
    # a burst leaves the driver with lease requests still pending at the raylet
    assert ray.get([double.remote(i) for i in range(1000)], timeout=60)[-1] == 1998
    assert ray.get(parent.remote(5), timeout=10) == 30


def test_task_calls_a_remote_function_the_driver_already_called(cluster):
    # a function defined here is shipped by value, with the remote functions it uses;
    # those must still pickle after the driver has called them
    assert ray.get(child.remote(3), timeout=30) == 9
    child_opts = child.options(num_cpus=1)
    assert ray.get(child_opts.remote(2), timeout=30) == 4

    @ray.remote
    def caller(x):
        return ray.get(child.remote(x)) + ray.get(child_opts.remote(x))

    assert ray.get(caller.remote(4), timeout=60) == 32


# -- generators ----------------------------------------------------------------------------
@ray.remote
def count_to(n):
    for i in range(n):
        yield i * 10


@ray.remote
def fails_midway(n):
    for i in range(n):
        yield i
    raise ValueError("generator broke")


def test_generator_returns_objectref_generator(cluster):
    gen = count_to.remote(5)
    assert isinstance(gen, ray.ObjectRefGenerator)
    refs = list(gen)
    assert all(isinstance(r, ray.ObjectRef) for r in refs)
    assert [ray.get(r) for r in refs] == [0, 10, 20, 30, 40]


def test_empty_generator(cluster):
    assert list(count_to.remote(0)) == []


def test_generator_with_large_items(cluster):
    @ray.remote
    def big(n):
        for i in range(n):
            yield bytes([i]) * 200_000

    values = [ray.get(r) for r in big.remote(3)]
    assert [len(v) for v in values] == [200_000] * 3
    assert [v[0] for v in values] == [0, 1, 2]


def test_generator_error_surfaces_on_next_get(cluster):
    gen = fails_midway.remote(3)
    got = []
    error = None
    for ref in gen:
        try:
            got.append(ray.get(ref, timeout=30))
        except ValueError as exc:
            error = exc
            break
    assert got == [0, 1, 2]
    assert isinstance(error, RayTaskError)
    assert "generator broke" in str(error)
    # the stream ends after the error
    with pytest.raises(StopIteration):
        next(gen)


def test_generator_next_with_timeout(cluster, tmp_path):
    release = tmp_path / "release"

    @ray.remote
    def gated(path):
        yield "first"
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        yield "second"

    gen = gated.remote(str(release))
    assert ray.get(next(gen), timeout=30) == "first"
    try:
        with pytest.raises(GetTimeoutError):
            gen.next(timeout=0.2)
    finally:
        release.touch()
    assert ray.get(gen.next(timeout=30), timeout=30) == "second"
    with pytest.raises(StopIteration):
        gen.next(timeout=30)


def test_get_of_a_generator_is_a_type_error(cluster):
    gen = count_to.remote(1)
    with pytest.raises(TypeError):
        ray.get(gen)
    assert [ray.get(r) for r in gen] == [0]


# -- options ---------------------------------------------------------------------------------
@ray.remote
def env_var(name):
    return os.environ.get(name)


@ray.remote
def task_info():
    ctx = ray.get_runtime_context()
    return {
        "task_name": ctx.get_task_name(),
        "resources": ctx.get_assigned_resources(),
        "task_id": ctx.get_task_id(),
        "job_id": ctx.get_job_id(),
        "node_id": ctx.get_node_id(),
        "worker_id": ctx.get_worker_id(),
        "pid": os.getpid(),
    }


def test_options_runtime_env_env_vars(cluster):
    name = "MICRORAY_TEST_ENV_VAR"
    assert os.environ.get(name) is None
    got = ray.get(env_var.options(runtime_env={"env_vars": {name: "hello-env"}}).remote(name), timeout=60)
    assert got == "hello-env"
    # the variable does not leak into workers of tasks without the runtime env
    assert ray.get([env_var.remote(name) for _ in range(4)], timeout=60) == [None] * 4


def test_options_name_and_num_cpus(cluster):
    info = ray.get(task_info.options(name="my-task", num_cpus=2).remote(), timeout=60)
    assert info["task_name"] == "my-task"
    assert info["resources"] == {"CPU": 2.0}
    info = ray.get(task_info.options(num_cpus=0.5).remote(), timeout=60)
    assert info["resources"] == {"CPU": 0.5}


def test_options_do_not_change_the_function(cluster):
    f = double.options(num_cpus=1, max_retries=0, name="renamed")
    assert ray.get(f.remote(2)) == 4
    assert ray.get(task_info.remote())["task_name"].endswith("task_info")


def test_decorator_with_options(cluster):
    @ray.remote(num_cpus=1, max_retries=1)
    def f(x):
        return x + 1

    assert ray.get(f.remote(1)) == 2


def test_max_calls_one_gives_each_call_a_fresh_worker(cluster):
    once = ray.remote(max_calls=1)(task_info.__wrapped__)  # as in Ray, max_calls is not an .options() key
    pids = [ray.get(once.remote(), timeout=60)["pid"] for _ in range(3)]
    assert len(set(pids)) == 3


def _worker_processes() -> list:
    """The worker processes of the embedded head (children of its raylet but the zygote)."""
    from microray.testing.processes import worker_pids

    return worker_pids(ray.api._head.pids["raylet"])


def test_runtime_env_tasks_run_in_workers_of_their_own(make_cluster):
    make_cluster(num_cpus=2)
    plain = {r["pid"] for r in ray.get([task_info.remote() for _ in range(4)], timeout=60)}
    env = {"env_vars": {"MICRORAY_TEST_ENV_VAR": "x"}}
    with_env = {r["pid"] for r in ray.get([task_info.options(runtime_env=env).remote() for _ in range(4)], timeout=60)}
    assert plain.isdisjoint(with_env)


def test_runtime_env_burst_starts_no_more_workers_than_cpus(make_cluster):
    make_cluster(num_cpus=2)

    @ray.remote
    def slow(x):
        time.sleep(0.1)
        return os.getpid()

    env = {"env_vars": {"MICRORAY_TEST_ENV_VAR": "burst"}}
    pids = ray.get([slow.options(runtime_env=env).remote(i) for i in range(20)], timeout=60)
    assert len(set(pids)) <= 2
    # 2 prestarted plain workers + at most 2 for the runtime env
    workers = _worker_processes()
    assert len(workers) <= 4, f"{len(workers)} worker processes on a 2-CPU node"


# -- runtime context ---------------------------------------------------------------------------
def test_runtime_context_in_driver_and_task(cluster):
    ctx = ray.get_runtime_context()
    driver = {
        "job_id": ctx.get_job_id(),
        "node_id": ctx.get_node_id(),
        "worker_id": ctx.get_worker_id(),
        "task_id": ctx.get_task_id(),
    }
    assert driver["job_id"]
    assert driver["node_id"] == cluster.node_id
    assert driver["worker_id"]
    assert driver["task_id"] is None
    info = ray.get(task_info.remote())
    assert info["task_id"] is not None
    assert info["job_id"] == driver["job_id"]
    assert info["node_id"] == driver["node_id"]
    assert info["worker_id"] != driver["worker_id"]
    assert info["pid"] != os.getpid()
    # each task has its own id
    assert ray.get(task_info.remote())["task_id"] != info["task_id"]


def test_runtime_context_task_id_matches_ref(cluster):
    ref = task_info.remote()
    assert ray.get(ref)["task_id"] == ref.task_id().hex()


# -- cluster info -------------------------------------------------------------------------------
def test_nodes(cluster):
    nodes = ray.nodes()
    assert len(nodes) == 1
    node = nodes[0]
    assert node["NodeID"] == cluster.node_id
    assert node["Alive"] is True
    assert node["Resources"]["CPU"] == 2.0
    assert node["IsHead"] is True
    assert node["ObjectStoreSocketName"] == cluster.namespace


def test_cluster_resources(cluster):
    assert ray.cluster_resources()["CPU"] == 2.0


def test_available_resources_drop_while_busy_and_come_back(cluster, tmp_path):
    release = tmp_path / "release"

    @ray.remote(num_cpus=2)
    def hold_all_cpus(path):
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        return os.path.exists(path)

    ref = hold_all_cpus.remote(str(release))
    try:
        wait_for(lambda: ray.available_resources().get("CPU", 0.0) == 0.0, timeout=20,
                 what="available CPU to drop to 0 while a 2-CPU task runs")
    finally:
        release.touch()
    assert ray.get(ref, timeout=60) is True
    wait_for(lambda: ray.available_resources().get("CPU") == 2.0, timeout=20,
             what="available CPU back to 2")
    assert ray.cluster_resources()["CPU"] == 2.0


def test_available_resources_back_after_many_tasks(cluster):
    ray.get([double.remote(i) for i in range(200)], timeout=60)
    wait_for(lambda: ray.available_resources().get("CPU") == 2.0, timeout=20, what="available CPU back to 2")


@pytest.mark.parametrize("io_loop", ["asyncio", "uvloop"])
def test_io_loop_choice_is_the_loop_of_drivers_and_workers(no_cluster, io_loop):
    ray.init(num_cpus=2, io_loop=io_loop, dashboard="none")

    @ray.remote
    def loop_type() -> str:
        return type(ray.api._worker.loop).__module__.split(".")[0]

    want = "uvloop" if io_loop == "uvloop" else "asyncio"
    assert type(ray.api._worker.loop).__module__.split(".")[0] == want
    assert ray.get(loop_type.remote(), timeout=60) == want
    assert ray.get([task_info.remote() for _ in range(20)], timeout=60)


@ray.remote
def _noop():
    return None


@ray.remote
def _burst_counting_cancels(n):
    """Submit ``n`` short tasks at once from a worker (which holds no lease yet, so it
    asks its raylet for several) and say how many times this worker's submitter asked
    the raylet to drop the lease requests still waiting, over all its bursts so far."""
    import builtins

    from microray.core import submitter

    counts = getattr(builtins, "_microray_test_cancels", None)
    if counts is None:
        counts = builtins._microray_test_cancels = {"cancels": 0, "bursts": 0}
        original = submitter.TaskSubmitter._cancel_lease_requests

        async def counting(self, *args):
            counts["cancels"] += 1
            await original(self, *args)

        submitter.TaskSubmitter._cancel_lease_requests = counting
    ray.get([_noop.remote() for _ in range(n)])
    counts["bursts"] += 1
    return os.getpid(), dict(counts)


def test_a_burst_drops_its_waiting_lease_requests_once(cluster):
    """When a burst of tasks has all been sent, the lease requests still waiting at the
    raylet are dropped by one call, not by one call per result that came back meanwhile."""
    ray.get([_noop.remote() for _ in range(4)])  # the function is seen to be short
    last: dict[int, dict] = {}
    for _ in range(6):
        pid, counts = ray.get(_burst_counting_cancels.remote(100))
        last[pid] = counts
    bursts = sum(c["bursts"] for c in last.values())
    cancels = sum(c["cancels"] for c in last.values())
    assert bursts >= 6, last
    assert cancels <= 1.5 * bursts, last


@ray.remote
def _fresh_short():
    return None


def _record_plans(monkeypatch) -> list[tuple[int, int]]:
    """(tasks queued, tasks sent) of every lease plan the driver makes from now on.

    The driver's policy counts a function as short below 50 ms of average run time here
    (2 ms by default): on a machine busy with other tests a 50 us task's runs can measure a
    few ms each, and these tests are about when short tasks are pipelined, not the bound."""
    from microray.core import context, lease_policy

    monkeypatch.setattr(context.worker.submitter.policy, "long_task_s", 0.05)

    plans: list[tuple[int, int]] = []
    original = lease_policy.LeasePolicy.plan

    def recording(self, queue, *args, **kwargs):
        queued = len(queue)
        plan = original(self, queue, *args, **kwargs)
        plans.append((queued, sum(len(batch) for _, batch in plan.sends)))
        return plan

    monkeypatch.setattr(lease_policy.LeasePolicy, "plan", recording)
    return plans


def test_a_burst_right_after_another_is_pipelined_at_once(cluster, monkeypatch):
    """A burst of a function not seen yet asks for a lease per task and, once it is all
    sent, cancels the requests still waiting. A burst of the (now known short) function
    right after it is sent whole to a leased worker, without waiting for that cancel:
    the requests it drops are not counted as workers on their way."""
    plans = _record_plans(monkeypatch)
    assert ray.get([_fresh_short.remote() for _ in range(10)]) == [None] * 10
    plans.clear()
    assert ray.get([_fresh_short.remote() for _ in range(10)]) == [None] * 10
    first = next(p for p in plans if p[0] == 10)
    assert first == (10, 10), plans


def test_requests_a_cancel_dropped_are_not_counted_on_while_their_answers_are_late(cluster, monkeypatch):
    """The raylet answers the requests a cancel dropped after it answers the cancel, so
    their answers may come in after the cancel's: a burst planned in between still counts
    none of them as a worker on its way, and is pipelined at once."""
    import asyncio
    import threading

    from microray.core import submitter, task_stream

    cancelled = threading.Event()
    cancel = submitter.TaskSubmitter._cancel_lease_requests
    request_done = task_stream.KeyState.request_done

    async def cancel_then_tell(self, key, state):
        await cancel(self, key, state)
        cancelled.set()

    def late_when_dropped(self, granted):
        if granted:
            request_done(self, granted)
        else:  # the answer of a dropped request comes in half a second late
            asyncio.get_running_loop().call_later(0.5, request_done, self, granted)

    monkeypatch.setattr(submitter.TaskSubmitter, "_cancel_lease_requests", cancel_then_tell)
    monkeypatch.setattr(task_stream.KeyState, "request_done", late_when_dropped)

    @ray.remote
    def short():
        return None

    plans = _record_plans(monkeypatch)
    assert ray.get([short.remote() for _ in range(10)]) == [None] * 10
    assert cancelled.wait(10), "the driver never cancelled the requests left waiting"
    plans.clear()
    assert ray.get([short.remote() for _ in range(10)]) == [None] * 10
    first = next(p for p in plans if p[0] == 10)
    assert first == (10, 10), plans


def _load_slowly():
    time.sleep(0.5)  # counted in the run time, it would make the function long (> 50 ms) for many runs
    return "loaded"


class _SlowToLoad:
    """Unpickling it (a worker loading a function that holds it) takes 0.5 s."""

    def __reduce__(self):
        return _load_slowly, ()


def test_a_short_function_slow_to_load_is_still_pipelined(cluster, monkeypatch):
    """The run time an owner averages to decide pipelining starts once the function is
    loaded: a short function whose first load in a worker is slow is still pipelined."""
    held = _SlowToLoad()

    @ray.remote
    def short_but_slow_to_load():
        return held

    plans = _record_plans(monkeypatch)
    assert ray.get([short_but_slow_to_load.remote() for _ in range(10)]) == ["loaded"] * 10
    plans.clear()
    assert ray.get([short_but_slow_to_load.remote() for _ in range(10)]) == ["loaded"] * 10
    first = next(p for p in plans if p[0] == 10)
    assert first == (10, 10), plans
