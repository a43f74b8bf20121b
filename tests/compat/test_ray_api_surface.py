"""Small parts of Ray's API, as Ray documents them: ``ray.util.list_named_actors`` and
``get_node_ip_address``, ``handle.__ray_terminate__``, the runtime context
(``current_actor``, ``was_current_actor_reconstructed``, ``get_node_labels``, task
names, assigned resources, the job's runtime env), ``@ray.method`` used bare or with
``enable_task_events``, generic ``ActorClass[T]`` / ``ActorProxy[T]``, ``RuntimeEnv``
and ``ray.get`` of something that is not a ref. Every ``get`` has a deadline."""

from __future__ import annotations

import asyncio
import os
import typing

import pytest

import microray as ray
from microray.actor import ActorClass, ActorHandle, ActorProxy
from microray.exceptions import ActorDiedError, RayActorError
from microray.runtime_env import RuntimeEnv, RuntimeEnvConfig
from microray.testing.processes import wait_for
from microray.util import get_node_ip_address, list_named_actors
from microray.util.state import get_actor as state_of_actor

DEADLINE = 60


@ray.remote
class Named:
    def ping(self):
        return "pong"


# -- ray.util ---------------------------------------------------------------------------------
def test_list_named_actors_lists_live_named_actors_of_this_namespace(cluster):
    here = [Named.options(name=f"listed-{i}").remote() for i in range(2)]
    elsewhere = Named.options(name="listed-elsewhere", namespace="other-ns").remote()
    unnamed = Named.remote()
    doomed = Named.options(name="listed-doomed").remote()
    ray.get([a.ping.remote() for a in (*here, elsewhere, unnamed, doomed)], timeout=DEADLINE)

    names = list_named_actors()
    assert all(isinstance(n, str) for n in names)
    assert {"listed-0", "listed-1", "listed-doomed"} <= set(names)
    assert "listed-elsewhere" not in names  # another namespace

    everywhere = list_named_actors(all_namespaces=True)
    assert {"name": "listed-elsewhere", "namespace": "other-ns"} in everywhere
    namespace = ray.get_runtime_context().namespace
    assert {"name": "listed-0", "namespace": namespace} in everywhere
    assert all(set(row) == {"name", "namespace"} for row in everywhere)

    ray.kill(doomed)  # a dead actor is no longer listed
    wait_for(lambda: "listed-doomed" not in list_named_actors(), timeout=DEADLINE, what="the killed actor to go")
    assert "listed-0" in ray.util.list_named_actors()


@ray.remote
def node_ip_in_a_task():
    return ray.util.get_node_ip_address()


def test_get_node_ip_address_is_the_nodes_ip(cluster):
    node = next(n for n in ray.nodes() if n["NodeID"] == ray.get_runtime_context().get_node_id())
    assert get_node_ip_address() == node["NodeManagerAddress"]
    assert ray.get(node_ip_in_a_task.remote(), timeout=DEADLINE) == node["NodeManagerAddress"]


# -- __ray_terminate__ --------------------------------------------------------------------------
@ray.remote(max_restarts=1)
class Terminable:
    def __init__(self):
        self.calls = []

    def work(self, i):
        self.calls.append(i)
        return list(self.calls)


def test_ray_terminate_exits_after_the_calls_before_it_without_restart(cluster):
    actor = Terminable.remote()
    before = [actor.work.remote(i) for i in range(5)]
    terminated = actor.__ray_terminate__.remote()
    after = [actor.work.remote(i) for i in range(5, 8)]  # sent behind it: they never run
    # the calls made before it ran, in order, and all of them
    assert ray.get(before, timeout=DEADLINE)[-1] == [0, 1, 2, 3, 4]
    for ref in after:
        with pytest.raises(ActorDiedError):
            ray.get(ref, timeout=DEADLINE)
    ready, _ = ray.wait([terminated], timeout=DEADLINE)
    assert ready == [terminated]

    actor_id = actor._ray_actor_id
    row = wait_for(lambda: (r := state_of_actor(actor_id)) is not None and r.state == "DEAD" and r,
                   timeout=DEADLINE, what="the actor to be DEAD")
    # a final exit, not a crash its max_restarts restarts from
    assert "__ray_terminate__" in (row.death_cause or "")
    with pytest.raises(ActorDiedError):
        ray.get(actor.work.remote(9), timeout=DEADLINE)


# -- the runtime context --------------------------------------------------------------------------
@ray.remote
def context_of_a_task():
    ctx = ray.get_runtime_context()
    return ctx.get_task_name(), ctx.get_task_function_name(), ctx.get_assigned_resources()


@ray.remote(num_cpus=1)
class OneCpu:
    def __init__(self):
        ctx = ray.get_runtime_context()
        self.in_init = (ctx.get_task_name(), ctx.get_task_function_name())

    def names(self):
        ctx = ray.get_runtime_context()
        return ctx.get_task_name(), ctx.get_task_function_name(), self.in_init

    async def async_names(self):
        await asyncio.sleep(0)
        ctx = ray.get_runtime_context()
        return ctx.get_task_name(), ctx.get_task_function_name()

    def resources(self):
        return ray.get_runtime_context().get_assigned_resources()

    def myself(self):
        return ray.get_runtime_context().current_actor

    def reconstructed(self):
        return ray.get_runtime_context().was_current_actor_reconstructed


@ray.remote
class NoCpu:
    def resources(self):
        return ray.get_runtime_context().get_assigned_resources()


def test_task_names_as_ray_names_them(cluster):
    fn = context_of_a_task.__wrapped__
    name, function_name, resources = ray.get(context_of_a_task.remote(), timeout=DEADLINE)
    assert name == "context_of_a_task"
    assert function_name == f"{fn.__module__}.context_of_a_task"
    assert resources == {"CPU": 1.0}
    # a name given in .options() names the task, not its function
    name, function_name, _ = ray.get(context_of_a_task.options(name="renamed").remote(), timeout=DEADLINE)
    assert (name, function_name) == ("renamed", f"{fn.__module__}.context_of_a_task")

    actor = OneCpu.remote()
    module = __name__
    name, function_name, in_init = ray.get(actor.names.remote(), timeout=DEADLINE)
    assert name == "OneCpu.names"
    assert function_name == f"{module}.OneCpu.names"
    assert in_init == ("OneCpu.__init__", f"{module}.OneCpu.__init__")
    assert ray.get(actor.async_names.remote(), timeout=DEADLINE) == (
        "OneCpu.async_names", f"{module}.OneCpu.async_names")
    assert ray.get(actor.names.options(name="named-call").remote(), timeout=DEADLINE)[0] == "named-call"
    # in the driver: no task
    ctx = ray.get_runtime_context()
    assert ctx.get_task_name() is None and ctx.get_task_function_name() is None


def test_assigned_resources_of_actors(cluster):
    one = OneCpu.remote()
    default = NoCpu.remote()
    assert ray.get(one.resources.remote(), timeout=DEADLINE) == {"CPU": 1.0}
    # a default actor holds no CPU once created, as in Ray
    assert ray.get(default.resources.remote(), timeout=DEADLINE) == {}


def test_current_actor_is_a_handle_to_the_actor_itself(cluster):
    actor = OneCpu.remote()
    myself = ray.get(actor.myself.remote(), timeout=DEADLINE)
    assert isinstance(myself, ActorHandle)
    assert myself == actor
    assert ray.get(myself.resources.remote(), timeout=DEADLINE) == {"CPU": 1.0}
    with pytest.raises(RuntimeError, match="only available in an actor"):
        ray.get_runtime_context().current_actor


@ray.remote(max_restarts=1, max_task_retries=0)
class Restartable:
    def reconstructed(self):
        return ray.get_runtime_context().was_current_actor_reconstructed

    def crash(self):
        os._exit(1)


def test_was_current_actor_reconstructed_after_a_restart(cluster):
    actor = Restartable.remote()
    assert ray.get(actor.reconstructed.remote(), timeout=DEADLINE) is False
    with pytest.raises(RayActorError):
        ray.get(actor.crash.remote(), timeout=DEADLINE)
    # calls reach the restarted instance once it is up
    assert wait_for(lambda: ray.get(actor.reconstructed.remote(), timeout=DEADLINE), timeout=DEADLINE,
                    what="the restarted actor to answer", retry_on=(RayActorError,)) is True
    with pytest.raises(AssertionError, match="only available in an actor"):
        ray.get_runtime_context().was_current_actor_reconstructed


@ray.remote
def env_and_labels_in_a_task():
    ctx = ray.get_runtime_context()
    return os.environ.get("SURFACE_VAR"), ctx.runtime_env, ctx.get_node_labels()


def test_driver_context_of_a_job_with_a_runtime_env_and_node_labels(make_cluster):
    make_cluster(runtime_env=RuntimeEnv(env_vars={"SURFACE_VAR": "from-job"}), labels={"zone": "z1"})
    ctx = ray.get_runtime_context()
    assert ctx.runtime_env == {"env_vars": {"SURFACE_VAR": "from-job"}}
    assert isinstance(ctx.runtime_env, RuntimeEnv)
    assert ctx.get_node_labels() == {"zone": "z1"}
    value, env, labels = ray.get(env_and_labels_in_a_task.remote(), timeout=DEADLINE)
    assert value == "from-job"
    assert env["env_vars"] == {"SURFACE_VAR": "from-job"}
    assert labels == {"zone": "z1"}


# -- @ray.method ----------------------------------------------------------------------------------
@ray.remote
class Methods:
    @ray.method
    def bare(self, x: int) -> int:
        return x + 1

    @ray.method(enable_task_events=False)
    def quiet(self):
        return "quiet"

    @ray.method(num_returns=2, enable_task_events=False)
    def pair(self):
        return 1, 2


def test_method_decorator_bare_and_with_enable_task_events(cluster):
    actor = Methods.remote()
    assert ray.get(actor.bare.remote(1), timeout=DEADLINE) == 2
    assert ray.get(actor.quiet.remote(), timeout=DEADLINE) == "quiet"
    assert ray.get(actor.pair.remote(), timeout=DEADLINE) == [1, 2]
    assert ray.get(actor.quiet.options(enable_task_events=True).remote(), timeout=DEADLINE) == "quiet"
    with pytest.raises(TypeError, match="unsupported option 'bogus'"):
        ray.method(bogus=1)
    with pytest.raises(TypeError, match="only keyword"):
        ray.method(1, 2)


# -- type hints -------------------------------------------------------------------------------------
class DemoRay:
    def __init__(self, init: int):
        self.init = init

    @ray.method
    def calculate(self, v1: int, v2: int) -> int:
        return self.init + v1 + v2


def test_actor_types_are_generic_as_in_rays_type_hint_guide(cluster):
    # Ray's "Type hints in Ray" patterns run as written
    ActorDemoRay: ActorClass[DemoRay] = ray.remote(DemoRay)
    actor: ActorProxy[DemoRay] = ActorDemoRay.remote(1)
    assert ray.get(actor.calculate.remote(1, 2), timeout=DEADLINE) == 4
    assert typing.get_origin(ActorClass[DemoRay]) is ActorClass
    assert typing.get_args(ActorClass[DemoRay]) == (DemoRay,)
    assert typing.get_origin(ActorHandle[DemoRay]) is ActorHandle
    assert set(typing.get_args(ActorProxy[DemoRay])) == {ActorHandle[DemoRay], type[DemoRay]}


# -- RuntimeEnv -------------------------------------------------------------------------------------
@ray.remote
def read_var():
    return os.environ.get("SURFACE_VAR")


def test_runtime_env_is_a_dict_of_its_keyword_arguments(cluster):
    env = RuntimeEnv(env_vars={"SURFACE_VAR": "1"}, working_dir=None, config=RuntimeEnvConfig(setup_timeout_seconds=5))
    assert isinstance(env, dict)
    assert env == {"env_vars": {"SURFACE_VAR": "1"}, "config": {"setup_timeout_seconds": 5, "eager_install": True}}
    assert RuntimeEnv.deserialize(env.serialize()) == env
    assert ray.get(read_var.options(runtime_env=RuntimeEnv(env_vars={"SURFACE_VAR": "task"})).remote(),
                   timeout=DEADLINE) == "task"
    assert ray.get(ray.remote(runtime_env=RuntimeEnv(env_vars={"SURFACE_VAR": "deco"}))(read_var.__wrapped__)
                   .remote(), timeout=DEADLINE) == "deco"
    with pytest.raises(ValueError, match="env_vars"):
        RuntimeEnv(env_vars={"SURFACE_VAR": 1})


def test_runtime_env_keys_microray_does_not_support_are_refused_as_in_a_dict(cluster):
    with pytest.raises(ValueError) as as_dict:
        read_var.options(runtime_env={"pip": ["requests"]})
    with pytest.raises(ValueError) as as_class:
        read_var.options(runtime_env=RuntimeEnv(pip=["requests"]))
    assert str(as_class.value) == str(as_dict.value)
    assert "'pip'" in str(as_class.value)
    with pytest.raises(ValueError, match="'conda'"):
        Named.options(runtime_env=RuntimeEnv(conda="env"))


# -- get ----------------------------------------------------------------------------------------------
def test_get_of_something_that_is_not_a_ref_is_a_value_error(cluster):
    with pytest.raises(ValueError, match="'object_refs' must either be an ObjectRef or a list of ObjectRefs") as err:
        ray.get(5)
    assert "int" in str(err.value)
    with pytest.raises(ValueError, match="must either be an ObjectRef"):
        ray.get({"a": ray.put(1)})
    with pytest.raises(TypeError):  # as Ray: a list holding something else
        ray.get([ray.put(1), 5])


# -- init (last: it stops the shared cluster) --------------------------------------------------------
@ray.remote
def summarized_task() -> int:
    return 1


@ray.remote
class SummarizedActor:
    def call(self) -> int:
        return 2


def test_summaries_have_rays_cluster_entry(cluster):
    """Ray's observability docs read ``summarize_tasks()["cluster"]["summary"]`` and the
    totals beside it; the same holds for actors."""
    from microray.util.state import summarize_actors, summarize_tasks

    actor = SummarizedActor.remote()
    assert ray.get([summarized_task.remote() for _ in range(3)] + [actor.call.remote()]) == [1, 1, 1, 2]

    def summarized() -> dict | None:
        c = summarize_tasks()["cluster"]
        counts = {name: e["state_counts"] for name, e in c["summary"].items()}
        done = counts.get("summarized_task", {}).get("FINISHED", 0) >= 3 and any(
            "SummarizedActor" in name and "call" in name for name in counts)
        return c if done else None

    tasks = wait_for(summarized, timeout=30, what="the tasks in the summary")
    assert tasks["summary_by"] == "func_name"
    assert tasks["summary"]["summarized_task"]["type"] == "NORMAL_TASK"
    assert tasks["total_tasks"] >= 3 and tasks["total_actor_tasks"] >= 1 and tasks["total_actor_scheduled"] >= 1
    actors = summarize_actors()["cluster"]
    assert actors["summary_by"] == "class" and actors["total_actors"] >= 1
    assert actors["summary"]["SummarizedActor"]["state_counts"].get("ALIVE", 0) >= 1


def test_init_refuses_a_runtime_env_with_keys_microray_does_not_support(no_cluster):
    with pytest.raises(ValueError, match="'uv'"):
        ray.init(runtime_env=RuntimeEnv(uv=["requests"]))
    assert not ray.is_initialized()
