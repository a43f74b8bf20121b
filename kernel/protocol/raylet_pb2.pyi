from microray.protocol import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LeaseRequest(_message.Message):
    __slots__ = ("lease_key", "resources", "strategy", "owner_worker_id", "grant_or_reject", "task_name", "actor_spec", "runtime_env_hash", "owner_address", "report_infeasible", "exclude_nodes")
    LEASE_KEY_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    OWNER_WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_OR_REJECT_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_SPEC_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ENV_HASH_FIELD_NUMBER: _ClassVar[int]
    OWNER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REPORT_INFEASIBLE_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_NODES_FIELD_NUMBER: _ClassVar[int]
    lease_key: str
    resources: _common_pb2.ResourceMap
    strategy: bytes
    owner_worker_id: str
    grant_or_reject: bool
    task_name: str
    actor_spec: bytes
    runtime_env_hash: str
    owner_address: str
    report_infeasible: bool
    exclude_nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lease_key: _Optional[str] = ..., resources: _Optional[_Union[_common_pb2.ResourceMap, _Mapping]] = ..., strategy: _Optional[bytes] = ..., owner_worker_id: _Optional[str] = ..., grant_or_reject: _Optional[bool] = ..., task_name: _Optional[str] = ..., actor_spec: _Optional[bytes] = ..., runtime_env_hash: _Optional[str] = ..., owner_address: _Optional[str] = ..., report_infeasible: _Optional[bool] = ..., exclude_nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class LeaseReply(_message.Message):
    __slots__ = ("granted", "worker", "lease_id", "spillback", "canceled", "error", "worker_pid", "infeasible", "cluster_total", "rejected")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    SPILLBACK_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    INFEASIBLE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    worker: _common_pb2.Address
    lease_id: str
    spillback: _common_pb2.Address
    canceled: bool
    error: str
    worker_pid: int
    infeasible: bool
    cluster_total: _common_pb2.ResourceMap
    rejected: bool
    def __init__(self, granted: _Optional[bool] = ..., worker: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., lease_id: _Optional[str] = ..., spillback: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., canceled: _Optional[bool] = ..., error: _Optional[str] = ..., worker_pid: _Optional[int] = ..., infeasible: _Optional[bool] = ..., cluster_total: _Optional[_Union[_common_pb2.ResourceMap, _Mapping]] = ..., rejected: _Optional[bool] = ...) -> None: ...

class ReturnWorkerRequest(_message.Message):
    __slots__ = ("lease_id", "disconnect")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    disconnect: bool
    def __init__(self, lease_id: _Optional[str] = ..., disconnect: _Optional[bool] = ...) -> None: ...

class CancelLeasesRequest(_message.Message):
    __slots__ = ("lease_key", "owner_worker_id")
    LEASE_KEY_FIELD_NUMBER: _ClassVar[int]
    OWNER_WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    lease_key: str
    owner_worker_id: str
    def __init__(self, lease_key: _Optional[str] = ..., owner_worker_id: _Optional[str] = ...) -> None: ...

class CancelLeasesReply(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: int
    def __init__(self, dropped: _Optional[int] = ...) -> None: ...

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "pid", "port", "is_driver", "job_id", "id_prefix")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    IS_DRIVER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    pid: int
    port: int
    is_driver: bool
    job_id: str
    id_prefix: bytes
    def __init__(self, worker_id: _Optional[str] = ..., pid: _Optional[int] = ..., port: _Optional[int] = ..., is_driver: _Optional[bool] = ..., job_id: _Optional[str] = ..., id_prefix: _Optional[bytes] = ...) -> None: ...

class RegisterWorkerReply(_message.Message):
    __slots__ = ("node_id", "config_json", "object_store_namespace", "gcs_address", "session_dir")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    GCS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SESSION_DIR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    config_json: str
    object_store_namespace: str
    gcs_address: str
    session_dir: str
    def __init__(self, node_id: _Optional[str] = ..., config_json: _Optional[str] = ..., object_store_namespace: _Optional[str] = ..., gcs_address: _Optional[str] = ..., session_dir: _Optional[str] = ...) -> None: ...

class WorkerIdRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class WorkerExitRequest(_message.Message):
    __slots__ = ("worker_id", "wait_s")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    wait_s: float
    def __init__(self, worker_id: _Optional[str] = ..., wait_s: _Optional[float] = ...) -> None: ...

class WorkerExitReply(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class WorkerGpusReply(_message.Message):
    __slots__ = ("gpu_ids",)
    GPU_IDS_FIELD_NUMBER: _ClassVar[int]
    gpu_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, gpu_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class NodeStatsReply(_message.Message):
    __slots__ = ("node", "workers")
    NODE_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    node: _common_pb2.NodeInfo
    workers: _containers.RepeatedCompositeFieldContainer[WorkerStats]
    def __init__(self, node: _Optional[_Union[_common_pb2.NodeInfo, _Mapping]] = ..., workers: _Optional[_Iterable[_Union[WorkerStats, _Mapping]]] = ...) -> None: ...

class WorkerStats(_message.Message):
    __slots__ = ("worker_id", "pid", "state", "actor_id", "address", "is_driver", "job_id")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    IS_DRIVER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    pid: int
    state: str
    actor_id: str
    address: str
    is_driver: bool
    job_id: str
    def __init__(self, worker_id: _Optional[str] = ..., pid: _Optional[int] = ..., state: _Optional[str] = ..., actor_id: _Optional[str] = ..., address: _Optional[str] = ..., is_driver: _Optional[bool] = ..., job_id: _Optional[str] = ...) -> None: ...

class ClusterViewReply(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeInfo]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_common_pb2.NodeInfo, _Mapping]]] = ...) -> None: ...
