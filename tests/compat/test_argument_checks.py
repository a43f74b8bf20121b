"""Calls and options checked as Ray checks them: a call whose arguments do not fit the
function, constructor or method raises ``TypeError`` at ``.remote()`` (nothing is
submitted), and invalid option values raise Ray's exception types with Ray's sentences."""

from __future__ import annotations

import re

import pytest

import microray as ray


@ray.remote
def add(a, b=1, *, scale=1):
    return (a + b) * scale


@ray.remote
class Account:
    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance

    def deposit(self, amount, *, note=None):
        self.balance += amount
        return self.balance

    @staticmethod
    def rate(years):
        return 1.0 + 0.01 * years

    @classmethod
    def kind(cls, suffix=""):
        return cls.__name__ + suffix


@pytest.mark.parametrize("args, kwargs, words", [
    ((), {}, "missing a required argument: 'a'"),
    ((1, 2, 3), {}, "too many positional arguments"),
    ((1,), {"c": 2}, "unexpected keyword argument 'c'"),
    ((1,), {"a": 2}, "multiple values for argument 'a'"),
])
def test_remote_function_call_that_cannot_bind_is_a_type_error(cluster, args, kwargs, words):
    with pytest.raises(TypeError, match=re.escape(words)):
        add.remote(*args, **kwargs)
    assert ray.get(add.remote(1, 2, scale=3), timeout=60) == 9


def test_actor_constructor_and_methods_check_their_arguments(cluster):
    with pytest.raises(TypeError, match="missing a required argument: 'owner'"):
        Account.remote()
    with pytest.raises(TypeError, match="too many positional arguments"):
        Account.remote("ann", 1, 2)
    acct = Account.remote("ann", balance=5)
    with pytest.raises(TypeError, match="missing a required argument: 'amount'"):
        acct.deposit.remote()
    with pytest.raises(TypeError, match="too many positional arguments"):
        acct.deposit.remote(1, "note")  # note is keyword-only
    with pytest.raises(TypeError, match="unexpected keyword argument 'notes'"):
        acct.deposit.remote(1, notes="x")
    # static and class methods take no self
    assert ray.get([acct.deposit.remote(2, note="x"), acct.rate.remote(10), acct.kind.remote("!")],
                   timeout=60) == [7, 1.1, "Account!"]
    with pytest.raises(TypeError):
        acct.rate.remote()


def test_a_handle_got_by_name_checks_arguments_too(cluster):
    named = Account.options(name="checked-account").remote("bo")
    again = ray.get_actor("checked-account")
    with pytest.raises(TypeError, match="missing a required argument: 'amount'"):
        again.deposit.remote()
    assert ray.get(again.deposit.remote(3), timeout=60) == 3
    ray.kill(named)


def test_async_def_is_refused_for_remote_functions():
    async def f():
        return 1

    with pytest.raises(ValueError, match="'async def' should not be used for remote tasks"):
        ray.remote(f)


def f():
    return 1


class A:
    pass


def test_option_type_errors_carry_rays_sentence():
    # Ray: "The type of keyword 'K' must be <types>, but received type <type>"
    int_or_none = f"must be {(int, type(None))}, but received type {float}"
    for key in ("max_retries", "max_calls"):
        with pytest.raises(TypeError, match=re.escape(f"The type of keyword '{key}' {int_or_none}")):
            ray.remote(**{key: 0.5})(f)
    for key in ("max_restarts", "max_task_retries"):
        with pytest.raises(TypeError, match=re.escape(f"The type of keyword '{key}' {int_or_none}")):
            ray.remote(**{key: 0.5})(A)
    with pytest.raises(TypeError, match=re.escape(
            f"The type of keyword 'num_returns' must be {(int, str, type(None))}, but received type {float}")):
        ray.remote(num_returns=0.5)(f)
    with pytest.raises(TypeError, match=re.escape(
            f"The type of keyword '_metadata' must be {(dict, type(None))}, but received type {float}")):
        ray.remote(_metadata=3.14)(A)


def test_option_value_errors_carry_rays_sentence():
    with pytest.raises(ValueError, match="The keyword 'max_calls' only accepts None, 0 or a positive integer"):
        ray.remote(max_calls=-1)(f)
    with pytest.raises(ValueError, match="The keyword 'num_returns' only accepts None, a non-negative integer, "
                                         'or "dynamic"'):
        ray.remote(num_returns=-1)(f)
    infinite = "only accepts None, 0, -1 or a positive integer, where -1 represents infinity."
    with pytest.raises(ValueError, match=re.escape(f"The keyword 'max_retries' {infinite}")):
        ray.remote(max_retries=-5)(f)
    for key in ("max_restarts", "max_task_retries"):
        with pytest.raises(ValueError, match=re.escape(f"The keyword '{key}' {infinite}")):
            ray.remote(**{key: -5})(A)
    with pytest.raises(ValueError, match="The precision of the fractional quantity of resource num_gpus "
                                         "cannot go beyond 0.0001"):
        ray.remote(num_gpus=0.0000001)(f)
    with pytest.raises(ValueError, match="The precision of the fractional quantity of resource custom "
                                         "cannot go beyond 0.0001"):
        ray.remote(resources={"custom": 0.0000001})(f)
    with pytest.raises(ValueError, match="quantity of resource num_cpus cannot be negative"):
        ray.remote(num_cpus=-1)(f)
    with pytest.raises(ValueError, match="Use the 'num_cpus' and 'num_gpus' keyword"):
        ray.remote(resources={"CPU": 1})(f)
    with pytest.raises(ValueError, match="Invalid option keyword"):
        ray.remote(f).options(no_such_option=1)


def test_options_that_belong_to_the_definition_are_refused_in_options():
    with pytest.raises(ValueError, match=re.escape("Setting 'max_calls' is not supported in '.options()'.")):
        ray.remote(f).options(max_calls=1)
    with pytest.raises(ValueError, match=re.escape(
            "Setting 'concurrency_groups' is not supported in '.options()'.")):
        ray.remote(A).options(concurrency_groups={"io": 1})
    ray.remote(max_calls=1)(f)  # on the definition they are fine
    ray.remote(concurrency_groups={"io": 1})(A)
