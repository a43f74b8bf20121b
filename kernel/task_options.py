"""The options of remote functions, actor classes and actor methods: one schema.

Each option declares the types it takes and its range. As in Ray, a value of the
wrong type raises ``TypeError`` and a value of the right type outside the range
raises ``ValueError``; either message names the option, the value, what it was
given to and what the option accepts. Options are checked when ``@remote`` or
``.options()`` is called, never per call of ``.remote()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NUMBER = (int, float)
NONE = type(None)
RESOURCE_PRECISION = 0.0001  # the smallest fraction of a resource a task may ask for


@dataclass(frozen=True)
class OptionRule:
    """What one option accepts: ``types`` (else TypeError) and ``check`` (a message
    saying what is accepted when the value is out of range, else None)."""

    types: tuple[type, ...]
    accepts: str
    check: Callable[[Any], str | None] | None = None


def _quantity(value: Any) -> str | None:
    """Non-negative, finite, and not finer than ``RESOURCE_PRECISION``."""
    if value is None:
        return None
    if not math.isfinite(value) or value < 0:
        return "None, 0 or a positive finite number"
    if 0 < value < RESOURCE_PRECISION:
        return f"None, 0 or a number >= {RESOURCE_PRECISION} (the finest fraction of a resource)"
    return None


def _count(low: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None or value >= low:
            return None
        return {-1: "None, -1 (no limit), 0 or a positive integer", 0: "None, 0 or a positive integer",
                1: "None or a positive integer"}[low]
    return check


def _num_returns(value: Any) -> str | None:
    if value is None or value in ("streaming", "dynamic") or (isinstance(value, int) and value >= 0):
        return None
    return "None, an integer >= 0, 'streaming' or 'dynamic'"


def _resources(value: Any) -> str | None:
    if value is None:
        return None
    for name, amount in value.items():
        if name in ("CPU", "GPU"):
            return f"custom resources only (use the 'num_{name.lower()}s' option instead of resources[{name!r}])"
        if not isinstance(name, str) or not name:
            return f"non-empty resource names (got {name!r})"
        if isinstance(amount, bool) or not isinstance(amount, NUMBER):
            return f"a number for each resource (got {amount!r} for {name!r})"
        bad = _quantity(amount)
        if bad:
            return f"for each resource {bad} (got {amount!r} for {name!r})"
    return None


RUNTIME_ENV_KEYS = ("config", "env_vars", "excludes", "py_modules", "working_dir")


def runtime_env_problem(value: Any) -> str | None:
    """What a runtime_env (a dict, or a ``RuntimeEnv``) must be instead, or None when it
    is fine: only the supported keys, each with a value of its kind."""
    if value is None:
        return None
    unknown = sorted(set(value) - set(RUNTIME_ENV_KEYS))
    if unknown:
        keys = ", ".join(repr(k) for k in unknown)
        return (f"a runtime_env without {keys}: microray does not support the runtime_env "
                f"key{'s' if len(unknown) > 1 else ''} {keys} (it installs no packages and runs no "
                f"containers; the supported keys are {', '.join(RUNTIME_ENV_KEYS)})")
    env_vars = value.get("env_vars", {})
    if not isinstance(env_vars, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()):
        return "{'env_vars': a dict of str to str}"
    if not isinstance(value.get("working_dir", ""), str):
        return "{'working_dir': a local folder or a package URI (a str)}"
    mods = value.get("py_modules", [])
    if not isinstance(mods, (list, tuple)) or not all(isinstance(m, str) for m in mods):
        return "{'py_modules': a list of local package folders, .py files or package URIs (str)}"
    excludes = value.get("excludes", [])
    if not isinstance(excludes, (list, tuple)) or not all(isinstance(e, str) for e in excludes):
        return "{'excludes': a list of .gitignore-style patterns (str)}"
    if not isinstance(value.get("config", {}), dict):
        return "{'config': a dict}"
    return None


def _retry_exceptions(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if all(isinstance(e, type) and issubclass(e, BaseException) for e in value):
        return None
    return "True, False or a list of exception classes"


def _scheduling_strategy(value: Any) -> str | None:
    if value is None or hasattr(value, "to_wire"):
        return None
    if isinstance(value, str) and value.upper() in ("DEFAULT", "SPREAD"):
        return None
    return "None, 'DEFAULT', 'SPREAD', a NodeAffinitySchedulingStrategy or a PlacementGroupSchedulingStrategy"


def _one_of(*words: Any) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in words else "one of " + ", ".join(repr(w) for w in words)
    return check


_RESOURCE = OptionRule((float, int, NONE), "None, 0 or a positive number", _quantity)
_TEXT = OptionRule((str, NONE), "a string or None")
_FLAG = OptionRule((bool, NONE), "True or False")
_TABLE = OptionRule((dict, NONE), "a dict or None")

RULES: dict[str, OptionRule] = {
    # resources
    "num_cpus": _RESOURCE,
    "num_gpus": _RESOURCE,
    "memory": _RESOURCE,
    "resources": OptionRule((dict, NONE), "a dict of custom resource names to amounts", _resources),
    "accelerator_type": _TEXT,
    "label_selector": _TABLE,
    # tasks
    "num_returns": OptionRule((int, str, NONE), "None, an integer >= 0, 'streaming' or 'dynamic'", _num_returns),
    "max_retries": OptionRule((int, NONE), "an integer >= -1", _count(-1)),
    "retry_exceptions": OptionRule((bool, list, tuple), "True, False or a list of exception classes", _retry_exceptions),
    "max_calls": OptionRule((int, NONE), "an integer >= 0", _count(0)),
    "runtime_env": OptionRule((dict, NONE), "a dict such as {'working_dir': '.', 'env_vars': {...}}", runtime_env_problem),
    "scheduling_strategy": OptionRule((NONE, str), "None, 'DEFAULT', 'SPREAD' or a strategy object",
                                      _scheduling_strategy),
    "name": _TEXT,
    "enable_task_events": _FLAG,
    "_metadata": _TABLE,
    # actors
    "namespace": _TEXT,
    "lifetime": OptionRule((str, NONE), "None, 'detached' or 'non_detached'", _one_of(None, "detached", "non_detached")),
    "get_if_exists": _FLAG,
    "max_restarts": OptionRule((int, NONE), "an integer >= -1", _count(-1)),
    "max_task_retries": OptionRule((int, NONE), "an integer >= -1", _count(-1)),
    "max_concurrency": OptionRule((int, NONE), "an integer >= 1", _count(1)),
    "max_pending_calls": OptionRule((int, NONE), "an integer >= -1", _count(-1)),
    "concurrency_groups": OptionRule((list, dict, NONE), "a dict of group names to sizes, or a list"),
    "concurrency_group": _TEXT,
}

TASK_OPTIONS = frozenset({
    "num_cpus", "num_gpus", "resources", "num_returns", "max_retries", "retry_exceptions",
    "runtime_env", "scheduling_strategy", "name", "memory", "accelerator_type",
    "max_calls", "label_selector", "enable_task_events", "_metadata",
})
ACTOR_OPTIONS = frozenset({
    "num_cpus", "num_gpus", "resources", "name", "namespace", "lifetime", "get_if_exists",
    "max_restarts", "max_task_retries", "max_concurrency", "runtime_env", "scheduling_strategy",
    "memory", "concurrency_groups", "max_pending_calls", "accelerator_type", "label_selector",
    "enable_task_events", "_metadata",
})
METHOD_OPTIONS = frozenset({"num_returns", "name", "max_task_retries", "retry_exceptions", "concurrency_group",
                            "enable_task_events", "_metadata"})


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("None" if t is NONE else t.__name__ for t in types)


_COUNTS = {
    -1: "The keyword '{key}' only accepts None, 0, -1 or a positive integer, where -1 represents infinity.",
    0: "The keyword '{key}' only accepts None, 0 or a positive integer.",
    1: "The keyword '{key}' only accepts None or a positive integer.",
}
_COUNT_LOW = {"max_retries": -1, "max_restarts": -1, "max_task_retries": -1, "max_pending_calls": -1,
              "max_calls": 0, "max_concurrency": 1}


def _quantity_words(name: str, amount: Any) -> str | None:
    if isinstance(amount, bool) or not isinstance(amount, NUMBER) or math.isnan(amount):
        return None
    if amount < 0:
        return f"The quantity of resource {name} cannot be negative."
    if 0 < amount < RESOURCE_PRECISION:
        return f"The precision of the fractional quantity of resource {name} cannot go beyond {RESOURCE_PRECISION}."
    return None


def _ray_words(key: str, value: Any) -> str | None:
    """Ray's own sentence for an out-of-range value, where programs and tests match on it."""
    if key in _COUNT_LOW:
        return _COUNTS[_COUNT_LOW[key]].format(key=key)
    if key == "num_returns":
        return ("The keyword 'num_returns' only accepts None, a non-negative integer, or \"dynamic\" "
                "(for generators), or \"streaming\".")
    if key in ("num_cpus", "num_gpus", "memory"):
        return _quantity_words(key, value)
    if key == "resources":
        if "CPU" in value or "GPU" in value:
            return "Use the 'num_cpus' and 'num_gpus' keyword instead of 'CPU' and 'GPU' in 'resources' keyword."
        for name, amount in value.items():
            words = _quantity_words(name, amount)
            if words:
                return words
        return None
    if key == "retry_exceptions":
        return "retry_exceptions must be either a boolean or a list of exceptions."
    if key == "lifetime":
        return "actor `lifetime` argument must be one of 'detached', 'non_detached' and 'None'."
    return None


def validate_options(options: dict[str, Any], allowed: set[str] | frozenset[str], what: str) -> dict[str, Any]:
    """Check ``options`` against the schema; returns them unchanged.

    Unknown keys and out-of-range values raise ``ValueError``, values of the wrong type
    ``TypeError``; ``what`` says what they were given to (e.g. ``remote function f``)."""
    for key, value in options.items():
        if key not in allowed:
            raise ValueError(f"Invalid option keyword {key} for {what}. Valid ones are: {', '.join(sorted(allowed))}")
        rule = RULES.get(key)
        if rule is None:
            continue
        types = rule.types
        if key == "scheduling_strategy":  # a strategy object is anything with to_wire()
            wrong = not (value is None or isinstance(value, str) or hasattr(value, "to_wire"))
        else:
            wrong = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if wrong:  # Ray's sentence first (programs match on it), then what this option takes
            raise TypeError(
                f"The type of keyword '{key}' must be {types if len(types) > 1 else types[0]}, but received type "
                f"{type(value)}: option {key}={value!r} for {what}: expected {rule.accepts} "
                f"(a value of type {_type_names(types)}), got a {type(value).__name__}"
            )
        if rule.check is not None:
            problem = rule.check(value)
            if problem:
                ray_words = _ray_words(key, value)
                prefix = f"{ray_words} " if ray_words else ""
                raise ValueError(f"{prefix}option {key}={value!r} for {what}: expected {problem}")
    return options


__all__ = ["ACTOR_OPTIONS", "METHOD_OPTIONS", "RULES", "RUNTIME_ENV_KEYS", "TASK_OPTIONS", "OptionRule",
           "runtime_env_problem", "validate_options"]
