"""``microray.util.serialization`` (Ray's ``ray.util.register_serializer``): custom
serialization for a type microray cannot pickle as it is, or should pickle otherwise.

What a registered serializer returns is pickled in place of the object, together with the
deserializer (by value, so the processes that load it need not register anything). The
registration applies to what this process serializes, as in Ray.
"""

from __future__ import annotations

from typing import Any, Callable

import cloudpickle

__all__ = ["deregister_serializer", "register_serializer"]


def _rebuild(deserializer: Callable[[Any], Any], data: Any) -> Any:
    return deserializer(data)


def register_serializer(cls: type, *, serializer: Callable[[Any], Any],
                        deserializer: Callable[[Any], Any]) -> None:
    """Serialize every instance of exactly ``cls`` as ``serializer(obj)``; loading it calls
    ``deserializer`` on that. ``serializer``'s result must itself be serializable."""
    if not isinstance(cls, type):
        raise TypeError(f"register_serializer() expects a class, got {cls!r}")
    if not callable(serializer) or not callable(deserializer):
        raise TypeError("register_serializer(): 'serializer' and 'deserializer' must be callables")

    def reduce(obj: Any) -> tuple[Any, tuple[Any, Any]]:
        return _rebuild, (deserializer, serializer(obj))

    cloudpickle.CloudPickler.dispatch_table[cls] = reduce


def deregister_serializer(cls: type) -> None:
    """Forget the serializer registered for ``cls`` (no error if there is none)."""
    cloudpickle.CloudPickler.dispatch_table.maps[0].pop(cls, None)
