from microray.protocol import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class PullRequest(_message.Message):
    __slots__ = ("object_id", "chunk_size", "data_path")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_PATH_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    chunk_size: int
    data_path: bool
    def __init__(self, object_id: _Optional[bytes] = ..., chunk_size: _Optional[int] = ..., data_path: _Optional[bool] = ...) -> None: ...

class FetchObjectRequest(_message.Message):
    __slots__ = ("object_id", "owner_address")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    owner_address: str
    def __init__(self, object_id: _Optional[bytes] = ..., owner_address: _Optional[str] = ...) -> None: ...

class FetchObjectReply(_message.Message):
    __slots__ = ("ok", "lost", "error")
    OK_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    lost: bool
    error: str
    def __init__(self, ok: _Optional[bool] = ..., lost: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class FreeObjectsRequest(_message.Message):
    __slots__ = ("object_ids", "forward_to")
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    FORWARD_TO_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    forward_to: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ..., forward_to: _Optional[_Iterable[str]] = ...) -> None: ...

class TransferStats(_message.Message):
    __slots__ = ("pulls_served", "bytes_served", "chunks_served", "pulls_completed", "bytes_pulled", "chunks_pulled", "fetches_joined", "source_failures", "objects_lost", "secondary_copies", "secondary_bytes", "secondary_freed", "secondary_evicted", "max_active", "active")
    PULLS_SERVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_SERVED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_SERVED_FIELD_NUMBER: _ClassVar[int]
    PULLS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    BYTES_PULLED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_PULLED_FIELD_NUMBER: _ClassVar[int]
    FETCHES_JOINED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_LOST_FIELD_NUMBER: _ClassVar[int]
    SECONDARY_COPIES_FIELD_NUMBER: _ClassVar[int]
    SECONDARY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SECONDARY_FREED_FIELD_NUMBER: _ClassVar[int]
    SECONDARY_EVICTED_FIELD_NUMBER: _ClassVar[int]
    MAX_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    pulls_served: int
    bytes_served: int
    chunks_served: int
    pulls_completed: int
    bytes_pulled: int
    chunks_pulled: int
    fetches_joined: int
    source_failures: int
    objects_lost: int
    secondary_copies: int
    secondary_bytes: int
    secondary_freed: int
    secondary_evicted: int
    max_active: int
    active: int
    def __init__(self, pulls_served: _Optional[int] = ..., bytes_served: _Optional[int] = ..., chunks_served: _Optional[int] = ..., pulls_completed: _Optional[int] = ..., bytes_pulled: _Optional[int] = ..., chunks_pulled: _Optional[int] = ..., fetches_joined: _Optional[int] = ..., source_failures: _Optional[int] = ..., objects_lost: _Optional[int] = ..., secondary_copies: _Optional[int] = ..., secondary_bytes: _Optional[int] = ..., secondary_freed: _Optional[int] = ..., secondary_evicted: _Optional[int] = ..., max_active: _Optional[int] = ..., active: _Optional[int] = ...) -> None: ...
