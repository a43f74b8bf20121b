from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Address(_message.Message):
    __slots__ = ("ip", "port", "node_id", "worker_id")
    IP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ip: str
    port: int
    node_id: str
    worker_id: str
    def __init__(self, ip: _Optional[str] = ..., port: _Optional[int] = ..., node_id: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class ResourceMap(_message.Message):
    __slots__ = ("amounts",)
    class AmountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    AMOUNTS_FIELD_NUMBER: _ClassVar[int]
    amounts: _containers.ScalarMap[str, float]
    def __init__(self, amounts: _Optional[_Mapping[str, float]] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "ip", "raylet_port", "total", "available", "state", "is_head", "start_time", "last_heartbeat", "object_store_namespace", "object_store_used", "object_store_capacity", "labels", "pid", "num_workers", "demands", "host")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    RAYLET_PORT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IS_HEAD_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_USED_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    NUM_WORKERS_FIELD_NUMBER: _ClassVar[int]
    DEMANDS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    ip: str
    raylet_port: int
    total: ResourceMap
    available: ResourceMap
    state: str
    is_head: bool
    start_time: float
    last_heartbeat: float
    object_store_namespace: str
    object_store_used: int
    object_store_capacity: int
    labels: _containers.ScalarMap[str, str]
    pid: int
    num_workers: int
    demands: _containers.RepeatedCompositeFieldContainer[ResourceDemand]
    host: HostStats
    def __init__(self, node_id: _Optional[str] = ..., ip: _Optional[str] = ..., raylet_port: _Optional[int] = ..., total: _Optional[_Union[ResourceMap, _Mapping]] = ..., available: _Optional[_Union[ResourceMap, _Mapping]] = ..., state: _Optional[str] = ..., is_head: _Optional[bool] = ..., start_time: _Optional[float] = ..., last_heartbeat: _Optional[float] = ..., object_store_namespace: _Optional[str] = ..., object_store_used: _Optional[int] = ..., object_store_capacity: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., pid: _Optional[int] = ..., num_workers: _Optional[int] = ..., demands: _Optional[_Iterable[_Union[ResourceDemand, _Mapping]]] = ..., host: _Optional[_Union[HostStats, _Mapping]] = ...) -> None: ...

class HostStats(_message.Message):
    __slots__ = ("cpu_percent", "cpu_count", "mem_total", "mem_used", "disk_total", "disk_used", "disk_path", "load_avg_1m", "sampled_at")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEM_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEM_USED_FIELD_NUMBER: _ClassVar[int]
    DISK_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DISK_USED_FIELD_NUMBER: _ClassVar[int]
    DISK_PATH_FIELD_NUMBER: _ClassVar[int]
    LOAD_AVG_1M_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_AT_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: float
    cpu_count: int
    mem_total: int
    mem_used: int
    disk_total: int
    disk_used: int
    disk_path: str
    load_avg_1m: float
    sampled_at: float
    def __init__(self, cpu_percent: _Optional[float] = ..., cpu_count: _Optional[int] = ..., mem_total: _Optional[int] = ..., mem_used: _Optional[int] = ..., disk_total: _Optional[int] = ..., disk_used: _Optional[int] = ..., disk_path: _Optional[str] = ..., load_avg_1m: _Optional[float] = ..., sampled_at: _Optional[float] = ...) -> None: ...

class ResourceDemand(_message.Message):
    __slots__ = ("shape", "count", "infeasible")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INFEASIBLE_FIELD_NUMBER: _ClassVar[int]
    shape: ResourceMap
    count: int
    infeasible: bool
    def __init__(self, shape: _Optional[_Union[ResourceMap, _Mapping]] = ..., count: _Optional[int] = ..., infeasible: _Optional[bool] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
