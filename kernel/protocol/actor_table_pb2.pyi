from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActorTableData(_message.Message):
    __slots__ = ("actor_id", "class_name", "name", "namespace", "detached", "max_restarts", "max_task_retries", "job_id", "owner", "resources", "hold", "strategy_json", "env_key", "methods_json", "creation_spec", "state", "num_restarts", "submit_time", "start_time", "end_time", "address", "pid", "node_id", "worker_id", "lease_id", "killed", "death_kind", "death_message", "creation_error")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[ActorTableData.State]
        DEPENDENCIES_UNREADY: _ClassVar[ActorTableData.State]
        PENDING_CREATION: _ClassVar[ActorTableData.State]
        ALIVE: _ClassVar[ActorTableData.State]
        RESTARTING: _ClassVar[ActorTableData.State]
        DEAD: _ClassVar[ActorTableData.State]
    STATE_UNSPECIFIED: ActorTableData.State
    DEPENDENCIES_UNREADY: ActorTableData.State
    PENDING_CREATION: ActorTableData.State
    ALIVE: ActorTableData.State
    RESTARTING: ActorTableData.State
    DEAD: ActorTableData.State
    class DeathKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DEATH_UNSPECIFIED: _ClassVar[ActorTableData.DeathKind]
        KILLED: _ClassVar[ActorTableData.DeathKind]
        RESTARTS_EXHAUSTED: _ClassVar[ActorTableData.DeathKind]
        CREATION_FAILED: _ClassVar[ActorTableData.DeathKind]
        OWNER_DIED: _ClassVar[ActorTableData.DeathKind]
        JOB_FINISHED: _ClassVar[ActorTableData.DeathKind]
    DEATH_UNSPECIFIED: ActorTableData.DeathKind
    KILLED: ActorTableData.DeathKind
    RESTARTS_EXHAUSTED: ActorTableData.DeathKind
    CREATION_FAILED: ActorTableData.DeathKind
    OWNER_DIED: ActorTableData.DeathKind
    JOB_FINISHED: ActorTableData.DeathKind
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class HoldEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    MAX_TASK_RETRIES_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_JSON_FIELD_NUMBER: _ClassVar[int]
    ENV_KEY_FIELD_NUMBER: _ClassVar[int]
    METHODS_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATION_SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NUM_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    KILLED_FIELD_NUMBER: _ClassVar[int]
    DEATH_KIND_FIELD_NUMBER: _ClassVar[int]
    DEATH_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    class_name: str
    name: str
    namespace: str
    detached: bool
    max_restarts: int
    max_task_retries: int
    job_id: str
    owner: str
    resources: _containers.ScalarMap[str, float]
    hold: _containers.ScalarMap[str, float]
    strategy_json: str
    env_key: str
    methods_json: str
    creation_spec: bytes
    state: ActorTableData.State
    num_restarts: int
    submit_time: float
    start_time: float
    end_time: float
    address: str
    pid: int
    node_id: str
    worker_id: str
    lease_id: str
    killed: bool
    death_kind: ActorTableData.DeathKind
    death_message: str
    creation_error: bytes
    def __init__(self, actor_id: _Optional[str] = ..., class_name: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., detached: _Optional[bool] = ..., max_restarts: _Optional[int] = ..., max_task_retries: _Optional[int] = ..., job_id: _Optional[str] = ..., owner: _Optional[str] = ..., resources: _Optional[_Mapping[str, float]] = ..., hold: _Optional[_Mapping[str, float]] = ..., strategy_json: _Optional[str] = ..., env_key: _Optional[str] = ..., methods_json: _Optional[str] = ..., creation_spec: _Optional[bytes] = ..., state: _Optional[_Union[ActorTableData.State, str]] = ..., num_restarts: _Optional[int] = ..., submit_time: _Optional[float] = ..., start_time: _Optional[float] = ..., end_time: _Optional[float] = ..., address: _Optional[str] = ..., pid: _Optional[int] = ..., node_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., killed: _Optional[bool] = ..., death_kind: _Optional[_Union[ActorTableData.DeathKind, str]] = ..., death_message: _Optional[str] = ..., creation_error: _Optional[bytes] = ...) -> None: ...
