"""Names and checks shared by the object store backends: object ids, sizes, namespace folders."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container

MAX_ID_BYTES = 32

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def object_id_hex(object_id: bytes) -> str:
    """Check an object id (bytes, 1..32 long) and return it as lower-case hex."""
    if not isinstance(object_id, (bytes, bytearray)):
        raise TypeError(f"object id must be bytes, got {type(object_id).__name__}")
    if not 0 < len(object_id) <= MAX_ID_BYTES:
        raise ValueError(f"object id must be 1 to {MAX_ID_BYTES} bytes, got {len(object_id)}")
    return bytes(object_id).hex()


def namespace_dirname(namespace: str) -> str:
    """A file-name-safe, collision-free form of ``namespace``.

    Readable namespaces (letters, digits, ``._-``, at most 64 characters) are
    used as they are; anything else is cleaned and suffixed with a short hash
    of the original so that two namespaces never share a folder.
    """
    if not isinstance(namespace, str) or not namespace:
        raise ValueError(f"namespace must be a non-empty string, got {namespace!r}")
    if len(namespace) <= 64 and not _SAFE.search(namespace) and namespace not in (".", ".."):
        return namespace
    digest = hashlib.sha1(namespace.encode()).hexdigest()[:12]
    return f"{_SAFE.sub('_', namespace)[:40]}-{digest}"


def check_size(size: int) -> int:
    """An object size: a non-negative int."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"object size must be an int >= 0, got {size!r}")
    return size


def check_new_write(object_id: bytes, size: int, pending: Container[bytes]) -> str:
    """Check a write about to start: a valid id and size, and not an object this
    process is writing already (``pending``). Returns the id in hex."""
    hexid = object_id_hex(object_id)
    check_size(size)
    if object_id in pending:
        raise FileExistsError(f"object {hexid} is already being written by this process")
    return hexid


def as_bytes_view(data: bytes | bytearray | memoryview) -> memoryview:
    """``data`` as a flat, byte-formatted memoryview (no copy)."""
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        if not view.c_contiguous:
            raise ValueError("object data must be a C-contiguous buffer")
        view = view.cast("B")
    return view
