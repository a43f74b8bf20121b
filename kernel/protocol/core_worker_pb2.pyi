from microray.protocol import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class YieldLeasesRequest(_message.Message):
    __slots__ = ("lease_ids",)
    LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    lease_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lease_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class NodesDiedRequest(_message.Message):
    __slots__ = ("node_ids",)
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskBatch(_message.Message):
    __slots__ = ("specs",)
    SPECS_FIELD_NUMBER: _ClassVar[int]
    specs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, specs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ResultBatch(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, results: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetObjectRequest(_message.Message):
    __slots__ = ("object_id", "timeout")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    timeout: float
    def __init__(self, object_id: _Optional[bytes] = ..., timeout: _Optional[float] = ...) -> None: ...

class GetObjectReply(_message.Message):
    __slots__ = ("status", "data", "node_id")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    status: int
    data: bytes
    node_id: str
    def __init__(self, status: _Optional[int] = ..., data: _Optional[bytes] = ..., node_id: _Optional[str] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("task_id", "force", "recursive")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    force: bool
    recursive: bool
    def __init__(self, task_id: _Optional[bytes] = ..., force: _Optional[bool] = ..., recursive: _Optional[bool] = ...) -> None: ...

class CancelTaskReply(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class ExitRequest(_message.Message):
    __slots__ = ("force", "reason")
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    force: bool
    reason: str
    def __init__(self, force: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class BorrowRequest(_message.Message):
    __slots__ = ("object_ids", "borrower")
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    BORROWER_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    borrower: str
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ..., borrower: _Optional[str] = ...) -> None: ...

class LeaseOwnerDiedReply(_message.Message):
    __slots__ = ("busy",)
    BUSY_FIELD_NUMBER: _ClassVar[int]
    busy: bool
    def __init__(self, busy: _Optional[bool] = ...) -> None: ...

class ObjectsInfoReply(_message.Message):
    __slots__ = ("objects", "worker_id", "pid", "job_id")
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    objects: bytes
    worker_id: str
    pid: int
    job_id: str
    def __init__(self, objects: _Optional[bytes] = ..., worker_id: _Optional[str] = ..., pid: _Optional[int] = ..., job_id: _Optional[str] = ...) -> None: ...

class ObjectLocationsRequest(_message.Message):
    __slots__ = ("object_id",)
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    def __init__(self, object_id: _Optional[bytes] = ...) -> None: ...

class ObjectLocationsReply(_message.Message):
    __slots__ = ("known", "node_ids", "why")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    known: bool
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    why: str
    def __init__(self, known: _Optional[bool] = ..., node_ids: _Optional[_Iterable[str]] = ..., why: _Optional[str] = ...) -> None: ...

class ObjectLocationRequest(_message.Message):
    __slots__ = ("object_id", "node_id")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    node_id: str
    def __init__(self, object_id: _Optional[bytes] = ..., node_id: _Optional[str] = ...) -> None: ...

class ObjectLocationReply(_message.Message):
    __slots__ = ("known",)
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    known: bool
    def __init__(self, known: _Optional[bool] = ...) -> None: ...

class RecoverObjectReply(_message.Message):
    __slots__ = ("error", "rebuilt")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REBUILT_FIELD_NUMBER: _ClassVar[int]
    error: bytes
    rebuilt: bool
    def __init__(self, error: _Optional[bytes] = ..., rebuilt: _Optional[bool] = ...) -> None: ...
