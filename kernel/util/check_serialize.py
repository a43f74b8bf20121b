"""``inspect_serializability`` (Ray's ``ray.util.inspect_serializability``): which part of
an object keeps microray from serializing it.

The object is pickled as microray pickles task arguments and values (cloudpickle, with
the serializers registered by ``register_serializer``). When that fails, the search goes
down, to ``depth`` levels: into a function's globals and closure variables, into any
other object's members (attributes, methods, class attributes; not dunder names), each
pickled in turn. At each level it follows the first member that fails, and the deepest
failing object found on that path is reported, as Ray does. What it tries is printed
(to ``print_file``, default stdout), indented by level.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from microray import serialization

__all__ = ["FailureTuple", "inspect_serializability"]

_RULE_MAX = 80


class FailureTuple:
    """An object that failed to serialize, where it was found.

    ``obj``: the object; ``name``: the name it had in its parent (the attribute, global
    or closure variable name; None for an unnamed top-level object); ``path``: the names
    from the inspected object down to it; ``parent``: the object it was found in (None at
    the top)."""

    def __init__(self, obj: Any, path: tuple[str, ...], parent: Any) -> None:
        self.obj = obj
        self.path = path
        self.name = path[-1] if path else None
        self.parent = parent

    def __repr__(self) -> str:
        where = " -> ".join(self.path) or "unknown"
        return f"FailTuple({self.name or 'unknown'} [path={where}, obj={self.obj}, parent={self.parent}])"


class _Printer:
    def __init__(self, out: TextIO | None) -> None:
        self.out = out
        self.level = 0

    def line(self, text: str) -> None:
        print("    " * self.level + text, file=self.out if self.out is not None else sys.stdout)

    @contextlib.contextmanager
    def indented(self) -> Iterator[None]:
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1


def inspect_serializability(
    base_obj: Any,
    name: str | None = None,
    depth: int = 3,
    print_file: TextIO | None = None,
) -> tuple[bool, set[FailureTuple]]:
    """Whether ``base_obj`` serializes, and the set of the objects found to keep it from
    serializing (empty when it does).

    ``name``: what to call ``base_obj`` in the report; ``depth``: how many levels of
    members to look into; ``print_file``: where the report goes (``print``'s ``file``).

    >>> lock = threading.Lock()
    >>> def f(): return lock
    >>> ok, failures = inspect_serializability(f, name="f")
    >>> ok, [failure.name for failure in failures]
    (False, ['lock'])
    """
    printer = _Printer(print_file)
    title = f"Checking Serializability of {base_obj}"
    rule = "=" * min(len(title), _RULE_MAX)
    for text in (rule, title, rule):
        printer.line(text)
    failures: set[FailureTuple] = set()
    path = (name,) if name is not None else ()
    ok = _inspect(base_obj, path, depth, None, failures, printer)
    if not ok:
        printer.line(rule)
        found = "\n".join(f"\t{failure}" for failure in failures)
        printer.line(f"Variable:\n\n{found}\n\nwas found to be non-serializable. There may be other "
                     "non-serializable variables that were not found.")
        printer.line("Consider removing these variables, or creating them inside the function or class "
                     "that uses them (for example in an actor's __init__), or registering a serializer "
                     "for their type (microray.util.register_serializer).")
        printer.line(rule)
    return ok, failures


def _serializes(obj: Any, printer: _Printer) -> bool:
    try:
        serialization.serialize(obj)
    except Exception as exc:  # noqa: BLE001 -- any failure is what is being looked for
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        printer.line(f"!!! FAIL serialization: {cause}")
        return False
    return True


def _inspect(obj: Any, path: tuple[str, ...], depth: int, parent: Any, failures: set[FailureTuple],
             printer: _Printer) -> bool:
    """True when ``obj`` serializes. Else the deepest failing object under it goes into
    ``failures``: ``obj`` itself when ``depth`` is used up, or when none of its members
    fails and nothing was recorded yet (as Ray records)."""
    if parent is not None:
        printer.line(f"Serializing '{path[-1]}' {obj}...")
    if _serializes(obj, printer):
        return True
    if depth <= 0:
        failures.add(FailureTuple(obj, path, parent))
        return False
    if inspect.isfunction(obj):
        found_below = _inspect_function(obj, path, depth, failures, printer)
    else:
        found_below = _inspect_members(obj, path, depth, failures, printer)
    if not found_below:
        printer.line(f"WARNING: Did not find non-serializable object in {obj}. This may be an oversight.")
    if not failures:
        failures.add(FailureTuple(obj, path, parent))
    return False


def _first_failure(candidates: Iterator[tuple[str, Any]], found: bool, obj: Any, path: tuple[str, ...],
                   depth: int, failures: set[FailureTuple], printer: _Printer) -> bool:
    """Inspect ``candidates`` until one fails; ``found`` says whether a failure was
    already found beside them, in which case only the first is inspected (as Ray does)."""
    with printer.indented():
        for member_name, value in candidates:
            ok = _inspect(value, (*path, member_name), depth - 1, obj, failures, printer)
            found = found or not ok
            if found:
                break
    return found


def _inspect_function(fn: Any, path: tuple[str, ...], depth: int, failures: set[FailureTuple],
                      printer: _Printer) -> bool:
    """A function's globals, then its closure (nonlocal) variables."""
    closure = inspect.getclosurevars(fn)
    found = False
    for kind, variables in (("global", closure.globals), ("nonlocal", closure.nonlocals)):
        if variables:
            printer.line(f"Detected {len(variables)} {kind} variables. Checking serializability...")
            found = _first_failure(iter(variables.items()), found, fn, path, depth, failures, printer)
    return found


def _inspect_members(obj: Any, path: tuple[str, ...], depth: int, failures: set[FailureTuple],
                     printer: _Printer) -> bool:
    """Any other object's function members, then all its members but dunder names and
    builtins."""
    try:
        functions = inspect.getmembers(obj, predicate=inspect.isfunction)
        members = [(n, v) for n, v in inspect.getmembers(obj)
                   if not (n.startswith("__") and n.endswith("__")) and not inspect.isbuiltin(v)]
    except Exception as exc:  # noqa: BLE001 -- an object whose members cannot be listed is a leaf
        printer.line(f"(could not list the members of {obj}: {exc})")
        return False
    found = _first_failure(iter(functions), False, obj, path, depth, failures, printer)
    return _first_failure(iter(members), found, obj, path, depth, failures, printer)
