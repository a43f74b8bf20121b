"""What travels from an owner to a worker for one task, and what comes back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

from microray import ids

# task kinds
NORMAL = 0
ACTOR_CREATION = 1
ACTOR_METHOD = 2
TERMINATE_METHOD = "__microray_terminate__"  # the actor call that ends it (``__ray_terminate__``)

# argument entries: (ARG_VALUE, value) | (ARG_SERIALIZED, bytes) | (ARG_REF, object_id, owner)
ARG_VALUE = 0
ARG_SERIALIZED = 1
ARG_REF = 2

# num_returns for a streaming generator
STREAMING = -1
# num_returns="dynamic": return 1 holds a DynamicObjectRefGenerator of returns 2, 3, ...
DYNAMIC = -2



def strategy_to_wire(strategy: Any) -> Any:
    """A ``scheduling_strategy`` option in the form the raylet and the scheduling policy
    see: "DEFAULT", "SPREAD", or the dict of a strategy object's ``to_wire()``
    (``microray.util.scheduling_strategies``)."""
    if strategy is None:
        return "DEFAULT"
    if isinstance(strategy, str):
        upper = strategy.upper()
        if upper not in ("DEFAULT", "SPREAD"):
            raise ValueError(
                f"scheduling_strategy {strategy!r} is not valid; expected 'DEFAULT', 'SPREAD', "
                "NodeAffinitySchedulingStrategy or PlacementGroupSchedulingStrategy"
            )
        return upper
    if hasattr(strategy, "to_wire"):
        return strategy.to_wire()
    raise ValueError(f"scheduling_strategy {strategy!r} is not valid")


def runtime_env_key(runtime_env: dict | None) -> str:
    """The runtime env as the raylet keys workers by ("" for none)."""
    return json.dumps(runtime_env, sort_keys=True) if runtime_env else ""


# result statuses
OK = 0
APP_ERROR = 1       # the user's code raised; returns hold the error
GEN_ITEM = 2        # one value of a streaming generator
GEN_END = 3         # the generator finished; extra = number of items
SYSTEM_ERROR = 4    # the worker could not run the task at all


@dataclass(slots=True)
class TaskSpec:
    """One task: what to run, with which arguments, for whom — and the one carrier of
    what its scheduling needs (``resources``, ``runtime_env``, ``strategy``)."""

    task_id: bytes
    function_id: bytes
    function_name: str
    args: list = field(default_factory=list)
    kwarg_names: tuple = ()
    num_returns: int = 1
    owner: str = ""
    job_id: str = ""
    kind: int = NORMAL
    max_retries: int = 3
    retry_exceptions: Any = False   # bool, or a tuple of exception classes (pickled by cloudpickle)
    attempt: int = 0
    runtime_env: dict | None = None
    resources: dict = field(default_factory=dict)
    name: str = ""
    actor_id: str = ""
    method_name: str = ""
    seq_no: int = 0
    caller_id: str = ""
    parent_task_id: bytes = b""
    actor_options: dict | None = None
    max_calls: int = 0  # the worker exits after running this many tasks of the function
    concurrency_group: str = ""  # an actor call's concurrency group ("": the default group)
    strategy: Any = "DEFAULT"  # the scheduling strategy's wire form (strategy_to_wire)

    def __reduce__(self):
        # positional fields: half the time and size of the slots-dataclass default (a dict
        # of field names) to pickle and unpickle, and every task pays it twice
        return (TaskSpec, _spec_values(self))


@dataclass(slots=True)
class TaskResult:
    """One message back from a worker. ``returns`` is a list of
    ``(object_id, kind, payload)`` with memory-store kinds."""

    task_id: bytes
    status: int
    returns: list
    extra: Any = None
    worker_pid: int = 0
    retryable: bool = False
    # refs inside return values: {return object id: [(ref id, its owner's address)]}.
    # The worker registered the caller as their borrower before sending this.
    contained: dict | None = None
    sizes: dict | None = None  # sizes of returns written to the node's store: {object id: bytes}
    worker_exiting: bool = False  # the worker retires after this task (max_calls): lease it no more
    # the number of the last line of task output its job has from this worker process
    # (OutputCapture.done; 0: none): the driver prints up to it before it leaves
    output_seq: int = 0

    def __reduce__(self):
        return (TaskResult, _result_values(self))


_spec_values = attrgetter(*(f.name for f in fields(TaskSpec)))
_result_values = attrgetter(*(f.name for f in fields(TaskResult)))


def return_ids(spec: TaskSpec) -> list[bytes]:
    """The object ids of a task's returns (one, the first item, for a streaming task)."""
    if spec.num_returns == STREAMING:
        return [ids.object_id(spec.task_id, 1)]
    return [ids.object_id(spec.task_id, i + 1) for i in range(max(spec.num_returns, 1))]
