"""``microray.cloudpickle``: the cloudpickle microray serializes functions and classes
with, under the name Ray programs import it by (``ray.cloudpickle``)."""

from __future__ import annotations

from pickle import HIGHEST_PROTOCOL, PicklingError, UnpicklingError

from cloudpickle import (
    CloudPickler,
    Pickler,
    dump,
    dumps,
    load,
    loads,
    register_pickle_by_value,
    unregister_pickle_by_value,
)

__all__ = [
    "CloudPickler", "Pickler", "dump", "dumps", "load", "loads", "register_pickle_by_value",
    "unregister_pickle_by_value", "PicklingError", "UnpicklingError", "HIGHEST_PROTOCOL",
]
