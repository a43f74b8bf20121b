from microray.protocol import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KvPutRequest(_message.Message):
    __slots__ = ("ns", "key", "value", "overwrite")
    NS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    ns: str
    key: bytes
    value: bytes
    overwrite: bool
    def __init__(self, ns: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class KvPutReply(_message.Message):
    __slots__ = ("added",)
    ADDED_FIELD_NUMBER: _ClassVar[int]
    added: bool
    def __init__(self, added: _Optional[bool] = ...) -> None: ...

class KvGetRequest(_message.Message):
    __slots__ = ("ns", "key")
    NS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ns: str
    key: bytes
    def __init__(self, ns: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...

class KvGetReply(_message.Message):
    __slots__ = ("found", "value")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ...) -> None: ...

class KvDelRequest(_message.Message):
    __slots__ = ("ns", "key", "by_prefix")
    NS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    BY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ns: str
    key: bytes
    by_prefix: bool
    def __init__(self, ns: _Optional[str] = ..., key: _Optional[bytes] = ..., by_prefix: _Optional[bool] = ...) -> None: ...

class KvDelReply(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class KvKeysRequest(_message.Message):
    __slots__ = ("ns", "prefix")
    NS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    ns: str
    prefix: bytes
    def __init__(self, ns: _Optional[str] = ..., prefix: _Optional[bytes] = ...) -> None: ...

class KvKeysReply(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ClusterConfigReply(_message.Message):
    __slots__ = ("config_json", "cluster_id")
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    config_json: str
    cluster_id: str
    def __init__(self, config_json: _Optional[str] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class RegisterNodeReply(_message.Message):
    __slots__ = ("config_json", "cluster_id", "refused")
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    config_json: str
    cluster_id: str
    refused: str
    def __init__(self, config_json: _Optional[str] = ..., cluster_id: _Optional[str] = ..., refused: _Optional[str] = ...) -> None: ...

class NodeIdRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_id", "available", "object_store_used", "num_workers", "demands", "host", "exited_drivers")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_USED_FIELD_NUMBER: _ClassVar[int]
    NUM_WORKERS_FIELD_NUMBER: _ClassVar[int]
    DEMANDS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    EXITED_DRIVERS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    available: _common_pb2.ResourceMap
    object_store_used: int
    num_workers: int
    demands: _containers.RepeatedCompositeFieldContainer[_common_pb2.ResourceDemand]
    host: _common_pb2.HostStats
    exited_drivers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, node_id: _Optional[str] = ..., available: _Optional[_Union[_common_pb2.ResourceMap, _Mapping]] = ..., object_store_used: _Optional[int] = ..., num_workers: _Optional[int] = ..., demands: _Optional[_Iterable[_Union[_common_pb2.ResourceDemand, _Mapping]]] = ..., host: _Optional[_Union[_common_pb2.HostStats, _Mapping]] = ..., exited_drivers: _Optional[_Iterable[int]] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("reregister", "dead", "reason")
    REREGISTER_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    reregister: bool
    dead: bool
    reason: str
    def __init__(self, reregister: _Optional[bool] = ..., dead: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class NodeList(_message.Message):
    __slots__ = ("nodes", "version", "seq", "table_id", "delta")
    NODES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TABLE_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeInfo]
    version: int
    seq: int
    table_id: str
    delta: bool
    def __init__(self, nodes: _Optional[_Iterable[_Union[_common_pb2.NodeInfo, _Mapping]]] = ..., version: _Optional[int] = ..., seq: _Optional[int] = ..., table_id: _Optional[str] = ..., delta: _Optional[bool] = ...) -> None: ...

class WatchNodesRequest(_message.Message):
    __slots__ = ("version", "wait_s", "seq", "table_id")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TABLE_ID_FIELD_NUMBER: _ClassVar[int]
    version: int
    wait_s: float
    seq: int
    table_id: str
    def __init__(self, version: _Optional[int] = ..., wait_s: _Optional[float] = ..., seq: _Optional[int] = ..., table_id: _Optional[str] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "driver_ip", "driver_pid", "start_time", "end_time", "state", "entrypoint", "namespace", "submission_id", "message")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DRIVER_IP_FIELD_NUMBER: _ClassVar[int]
    DRIVER_PID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    driver_ip: str
    driver_pid: int
    start_time: float
    end_time: float
    state: str
    entrypoint: str
    namespace: str
    submission_id: str
    message: str
    def __init__(self, job_id: _Optional[str] = ..., driver_ip: _Optional[str] = ..., driver_pid: _Optional[int] = ..., start_time: _Optional[float] = ..., end_time: _Optional[float] = ..., state: _Optional[str] = ..., entrypoint: _Optional[str] = ..., namespace: _Optional[str] = ..., submission_id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class AddJobReply(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class JobIdRequest(_message.Message):
    __slots__ = ("job_id", "state", "message")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: str
    message: str
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class JobList(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class ActorRecordRequest(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: bytes
    def __init__(self, record: _Optional[bytes] = ...) -> None: ...

class RegisterActorReply(_message.Message):
    __slots__ = ("ok", "error", "existing")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    error: str
    existing: bytes
    def __init__(self, ok: _Optional[bool] = ..., error: _Optional[str] = ..., existing: _Optional[bytes] = ...) -> None: ...

class ActorLookupRequest(_message.Message):
    __slots__ = ("actor_id", "name", "namespace")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    name: str
    namespace: str
    def __init__(self, actor_id: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class ActorRecordReply(_message.Message):
    __slots__ = ("found", "record")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    found: bool
    record: bytes
    def __init__(self, found: _Optional[bool] = ..., record: _Optional[bytes] = ...) -> None: ...

class ListActorsRequest(_message.Message):
    __slots__ = ("all_namespaces", "namespace")
    ALL_NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    all_namespaces: bool
    namespace: str
    def __init__(self, all_namespaces: _Optional[bool] = ..., namespace: _Optional[str] = ...) -> None: ...

class ActorListReply(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, records: _Optional[_Iterable[bytes]] = ...) -> None: ...

class KillActorRequest(_message.Message):
    __slots__ = ("actor_id", "no_restart", "reason")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NO_RESTART_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    no_restart: bool
    reason: str
    def __init__(self, actor_id: _Optional[str] = ..., no_restart: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class TaskEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: bytes
    def __init__(self, events: _Optional[bytes] = ...) -> None: ...

class GetTaskEventsRequest(_message.Message):
    __slots__ = ("filters", "limit", "offset", "detail")
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    filters: bytes
    limit: int
    offset: int
    detail: bool
    def __init__(self, filters: _Optional[bytes] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., detail: _Optional[bool] = ...) -> None: ...

class GetTaskEventsReply(_message.Message):
    __slots__ = ("tasks", "total", "counts", "dropped")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    tasks: bytes
    total: int
    counts: bytes
    dropped: int
    def __init__(self, tasks: _Optional[bytes] = ..., total: _Optional[int] = ..., counts: _Optional[bytes] = ..., dropped: _Optional[int] = ...) -> None: ...

class ClusterEventsReply(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: bytes
    def __init__(self, events: _Optional[bytes] = ...) -> None: ...

class GetClusterHistoryRequest(_message.Message):
    __slots__ = ("since",)
    SINCE_FIELD_NUMBER: _ClassVar[int]
    since: float
    def __init__(self, since: _Optional[float] = ...) -> None: ...

class ClusterHistoryReply(_message.Message):
    __slots__ = ("samples", "period_s", "capacity")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    samples: bytes
    period_s: float
    capacity: int
    def __init__(self, samples: _Optional[bytes] = ..., period_s: _Optional[float] = ..., capacity: _Optional[int] = ...) -> None: ...

class LogRecord(_message.Message):
    __slots__ = ("job_id", "name", "pid", "ip", "is_err", "lines", "seq")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    IS_ERR_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    pid: int
    ip: str
    is_err: bool
    lines: _containers.RepeatedScalarFieldContainer[str]
    seq: int
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., pid: _Optional[int] = ..., ip: _Optional[str] = ..., is_err: _Optional[bool] = ..., lines: _Optional[_Iterable[str]] = ..., seq: _Optional[int] = ...) -> None: ...

class LogBatch(_message.Message):
    __slots__ = ("records", "last")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[LogRecord]
    last: int
    def __init__(self, records: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ..., last: _Optional[int] = ...) -> None: ...

class PollLogsRequest(_message.Message):
    __slots__ = ("job_id", "after", "wait_s")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after: int
    wait_s: float
    def __init__(self, job_id: _Optional[str] = ..., after: _Optional[int] = ..., wait_s: _Optional[float] = ...) -> None: ...
