"""Lazy task graphs (Ray's ``ray.dag``): ``.bind()`` instead of ``.remote()``.

``f.bind(x)`` on a remote function, ``Cls.bind(...)`` on an actor class and
``actor.method.bind(...)`` on an actor's (or a bound class's) method build nodes without
running anything; arguments may be other nodes. ``InputNode()`` stands for the values
given to ``execute``. ``dag.execute(*args, **kwargs)`` submits the whole graph, each node
once, and returns what ``.remote()`` of the last node would: an ObjectRef, an actor handle
for a class node, or a list for ``MultiOutputNode``. Upstream results are passed as
ObjectRefs, so tasks run as soon as their inputs are ready.

This module is pure: it calls ``.remote()``/``.options()`` of what it was given and
imports nothing of the runtime.
"""

from __future__ import annotations

from typing import Any


class DAGNode:
    """A node of a task graph; ``execute`` runs the graph ending here."""

    def __init__(self, args: tuple = (), kwargs: dict[str, Any] | None = None,
                 options: dict[str, Any] | None = None) -> None:
        self._bound_args = tuple(args)
        self._bound_kwargs = dict(kwargs or {})
        self._bound_options = dict(options or {})

    def get_args(self) -> tuple:
        return self._bound_args

    def get_kwargs(self) -> dict[str, Any]:
        return dict(self._bound_kwargs)

    def get_options(self) -> dict[str, Any]:
        return dict(self._bound_options)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Submit the graph ending at this node with ``args``/``kwargs`` as the input."""
        return _Execution(_InputData(args, kwargs)).run(self)

    def _run(self, ex: "_Execution") -> Any:
        raise NotImplementedError

    def _resolved_args(self, ex: "_Execution") -> tuple[tuple, dict[str, Any]]:
        return ex.resolve(self._bound_args), ex.resolve(self._bound_kwargs)


class _InputData:
    def __init__(self, args: tuple, kwargs: dict[str, Any]) -> None:
        self.args = args
        self.kwargs = kwargs


class _Execution:
    """One ``execute()``: every node runs at most once, in dependency order."""

    def __init__(self, data: _InputData) -> None:
        self.data = data
        self.done: dict[int, Any] = {}

    def run(self, node: DAGNode) -> Any:
        key = id(node)
        if key not in self.done:
            self.done[key] = node._run(self)
        return self.done[key]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, DAGNode):
            return self.run(value)
        if isinstance(value, (list, tuple)):
            resolved = [self.resolve(v) for v in value]
            return tuple(resolved) if isinstance(value, tuple) else resolved
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        return value


class InputNode(DAGNode):
    """The input of a graph: ``execute(x)`` gives ``x``; with several arguments, index
    it (``inp[0]``, ``inp["key"]``) or read an attribute (``inp.key``). Usable as a
    context manager, as in Ray (``with InputNode() as inp: ...``)."""

    def __enter__(self) -> "InputNode":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __getitem__(self, key: int | str) -> "InputAttributeNode":
        return InputAttributeNode(self, key, "getitem")

    def __getattr__(self, name: str) -> "InputAttributeNode":
        if name.startswith("_"):
            raise AttributeError(name)
        return InputAttributeNode(self, name, "getattr")

    def _run(self, ex: _Execution) -> Any:
        data = ex.data
        if len(data.args) == 1 and not data.kwargs:
            return data.args[0]
        if not data.args and not data.kwargs:
            raise ValueError("this graph has an InputNode: pass its input to execute()")
        return data


class InputAttributeNode(DAGNode):
    """One part of the graph's input: ``inp[0]``, ``inp["key"]`` or ``inp.key``."""

    def __init__(self, input_node: InputNode, key: int | str, how: str) -> None:
        super().__init__()
        self._input_node = input_node
        self._key = key
        self._how = how

    def _run(self, ex: _Execution) -> Any:
        data = ex.data
        key = self._key
        if isinstance(key, int):
            if key < len(data.args):
                return data.args[key]
            if len(data.args) == 1 and not data.kwargs:
                return data.args[0][key]
            raise IndexError(f"the graph's input has no positional argument {key}")
        if key in data.kwargs:
            return data.kwargs[key]
        if len(data.args) == 1 and not data.kwargs:
            value = data.args[0]
            return value[key] if self._how == "getitem" else getattr(value, key)
        raise KeyError(f"the graph's input has no keyword argument {key!r}")


class _CallNode(DAGNode):
    """A ``.remote()`` call of ``target`` (a remote function or an actor class)."""

    def __init__(self, target: Any, args: tuple, kwargs: dict[str, Any],
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(args, kwargs, options)
        self._target = target

    def options(self, **options: Any) -> Any:
        """The same call with these ``.options()`` added."""
        return type(self)(self._target, self._bound_args, self._bound_kwargs, {**self._bound_options, **options})

    def _run(self, ex: _Execution) -> Any:
        args, kwargs = self._resolved_args(ex)
        target = self._target.options(**self._bound_options) if self._bound_options else self._target
        return target.remote(*args, **kwargs)


class FunctionNode(_CallNode):
    """A remote function call, made by ``f.bind(...)``."""


class ClassNode(_CallNode):
    """An actor creation, made by ``Cls.bind(...)``; ``node.method.bind(...)`` calls a
    method of the actor the graph creates."""

    def __getattr__(self, name: str) -> "_UnboundMethod":
        if name.startswith("_"):
            raise AttributeError(name)
        return _UnboundMethod(self, name, {})


class _UnboundMethod:
    def __init__(self, target: Any, name: str, options: dict[str, Any]) -> None:
        self._target = target
        self._name = name
        self._options = options

    def options(self, **options: Any) -> "_UnboundMethod":
        return _UnboundMethod(self._target, self._name, {**self._options, **options})

    def bind(self, *args: Any, **kwargs: Any) -> "ClassMethodNode":
        return ClassMethodNode(self._target, self._name, args, kwargs, self._options)


class ClassMethodNode(DAGNode):
    """An actor method call, made by ``actor.method.bind(...)`` (an existing actor) or
    ``class_node.method.bind(...)`` (the actor the graph creates)."""

    def __init__(self, target: Any, method_name: str, args: tuple, kwargs: dict[str, Any],
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(args, kwargs, options)
        self._target = target
        self._method_name = method_name

    def _run(self, ex: _Execution) -> Any:
        handle = ex.run(self._target) if isinstance(self._target, DAGNode) else self._target
        args, kwargs = self._resolved_args(ex)
        method = getattr(handle, self._method_name)
        if self._bound_options:
            method = method.options(**self._bound_options)
        return method.remote(*args, **kwargs)


class MultiOutputNode(DAGNode):
    """Several outputs: ``execute`` returns a list with one result per node given."""

    def __init__(self, outputs: list[DAGNode] | tuple[DAGNode, ...]) -> None:
        super().__init__(tuple(outputs))

    def _run(self, ex: _Execution) -> Any:
        return [ex.resolve(node) for node in self._bound_args]


__all__ = [
    "DAGNode", "InputNode", "InputAttributeNode", "FunctionNode", "ClassNode", "ClassMethodNode",
    "MultiOutputNode",
]
