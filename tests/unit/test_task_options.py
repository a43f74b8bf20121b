"""Options of remote functions, actors and actor methods: each declares its types and
range; as in Ray, a wrong type is a TypeError and an out-of-range value a ValueError,
and the message names the option, the value and what it accepts. Checked at
``@remote``/``.options()`` time, without a cluster."""

from __future__ import annotations

import math

import pytest

import microray as ray
from microray.task_options import ACTOR_OPTIONS, METHOD_OPTIONS, RULES, TASK_OPTIONS, validate_options
from microray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def f(x):
    return x


class A:
    def m(self):
        return 1


def test_every_option_has_a_rule() -> None:
    assert set(TASK_OPTIONS | ACTOR_OPTIONS | METHOD_OPTIONS) <= set(RULES)


@pytest.mark.parametrize("key, value, words", [
    ("num_cpus", -1, "None, 0 or a positive finite number"),
    ("num_cpus", math.nan, "None, 0 or a positive finite number"),
    ("num_cpus", math.inf, "None, 0 or a positive finite number"),
    ("num_gpus", 0.00001, ">= 0.0001"),
    ("memory", -5, "positive"),
    ("resources", {"x": -1}, "got -1 for 'x'"),
    ("resources", {"x": math.nan}, "got nan for 'x'"),
    ("resources", {"CPU": 1}, "use the 'num_cpus' option"),
    ("resources", {"x": "lots"}, "a number for each resource"),
    ("max_retries", -2, "-1 (no limit)"),
    ("max_calls", -1, "0 or a positive integer"),
    ("num_returns", -1, "an integer >= 0"),
    ("num_returns", "many", "'streaming'"),
    ("scheduling_strategy", "NOWHERE", "'SPREAD'"),
    ("retry_exceptions", [ValueError, 3], "a list of exception classes"),
    ("runtime_env", {"env_vars": {"A": 1}}, "a dict of str to str"),
])
def test_out_of_range_task_options_are_value_errors(key: str, value: object, words: str) -> None:
    fn = ray.remote(f)
    with pytest.raises(ValueError) as info:
        fn.options(**{key: value})
    text = str(info.value)
    assert f"option {key}=" in text and repr(value) in text and "remote function f" in text
    assert words in text
    with pytest.raises(ValueError):
        ray.remote(**{key: value})(f)


@pytest.mark.parametrize("key, value", [
    ("name", 5),
    ("num_cpus", "2"),
    ("num_cpus", True),
    ("resources", [("x", 1)]),
    ("max_retries", "3"),
    ("max_retries", 1.5),
    ("retry_exceptions", "yes"),
    ("scheduling_strategy", 5),
    ("enable_task_events", "no"),
    ("runtime_env", "env"),
])
def test_wrong_type_task_options_are_type_errors(key: str, value: object) -> None:
    with pytest.raises(TypeError) as info:
        ray.remote(f).options(**{key: value})
    text = str(info.value)
    assert f"option {key}={value!r}" in text and "expected" in text and type(value).__name__ in text


def test_good_task_options_pass() -> None:
    fn = ray.remote(f)
    fn.options(num_cpus=0.5, num_gpus=0, resources={"x": 2}, name="n", max_retries=-1, num_returns="streaming",
               retry_exceptions=[KeyError], scheduling_strategy=NodeAffinitySchedulingStrategy("ab", soft=True),
               runtime_env={"env_vars": {"A": "1"}}, memory=None)
    ray.remote(max_calls=0)(f)
    fn.options(scheduling_strategy="spread", retry_exceptions=True, num_cpus=None)


@pytest.mark.parametrize("key, value, error", [
    ("name", 5, TypeError),
    ("namespace", 3, TypeError),
    ("lifetime", "forever", ValueError),
    ("max_concurrency", 0, ValueError),
    ("max_restarts", -2, ValueError),
    ("max_task_retries", "x", TypeError),
    ("max_pending_calls", -5, ValueError),
    ("num_cpus", math.nan, ValueError),
    ("resources", {"x": -1}, ValueError),
    ("get_if_exists", "yes", TypeError),
])
def test_actor_options(key: str, value: object, error: type) -> None:
    cls = ray.remote(A)
    with pytest.raises(error, match=rf"option {key}=.*actor class A"):
        cls.options(**{key: value})
    with pytest.raises(error):
        ray.remote(**{key: value})(A)


def test_actor_method_options() -> None:
    with pytest.raises(ValueError, match=r"option num_returns=-1 for @microray.method"):
        ray.method(num_returns=-1)
    with pytest.raises(TypeError, match=r"option name=5"):
        validate_options({"name": 5}, METHOD_OPTIONS, "actor method m")


@pytest.mark.parametrize("key", ["pip", "conda", "container", "uv", "image_uri"])
def test_unsupported_runtime_env_keys_are_refused_by_name(key: str) -> None:
    env = {"working_dir": ".", key: ["requests"]}
    for call in (lambda: ray.remote(f).options(runtime_env=env), lambda: ray.remote(runtime_env=env)(f),
                 lambda: ray.init(runtime_env=env)):
        with pytest.raises(ValueError) as info:
            call()
        text = str(info.value)
        assert f"does not support the runtime_env key {key!r}" in text
        assert "working_dir" in text and "py_modules" in text  # what it does support
    assert not ray.is_initialized()


@pytest.mark.parametrize("env, words", [
    ({"working_dir": 3}, "'working_dir'"),
    ({"py_modules": "mypkg"}, "'py_modules': a list"),
    ({"excludes": "*.bin"}, "'excludes': a list"),
])
def test_bad_runtime_env_values(env: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ray.remote(f).options(runtime_env=env)


def test_good_runtime_env_passes() -> None:
    ray.remote(f).options(runtime_env={"working_dir": ".", "py_modules": ["lib/mypkg", "one.py"],
                                       "excludes": ["data/"], "env_vars": {"A": "1"}, "config": {}})
