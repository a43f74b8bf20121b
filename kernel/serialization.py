"""Values to bytes and back: cloudpickle, pickle protocol 5, out-of-band buffers.

The serialized form (inline in a message, or in a node's object store) is::

    header   <4s I Q>   magic, number of buffers, pickle length
    lengths  <Q * n>    length of each out-of-band buffer
    pickle   bytes
    buffers  each starting on a 64-byte boundary

so ``deserialize`` over a zero-copy view of the object store hands numpy the
store's memory directly (read-only) and never copies a large array.

While a value is pickled, the ``ObjectRef``s inside it are recorded, so the
owner can learn that they escaped into another object (borrowing).
"""

from __future__ import annotations

import io
import linecache
import os
import pickle
import struct
import threading
import types
from dataclasses import dataclass
from typing import Any

import cloudpickle

try:  # cloudpickle's own reducer of code objects, whose file name we put back
    from cloudpickle.cloudpickle import _code_reduce as _cloudpickle_code_reduce  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover -- another cloudpickle: tracebacks say <dynamic-code>
    _cloudpickle_code_reduce = None

from microray.exceptions import SerializationError

MAGIC = b"MRO1"
MAGIC_ERROR = b"MRE1"  # the value is an exception that get() raises
_HEADER = struct.Struct("<4sIQ")
_ALIGN = 64

_local = threading.local()


def _pad(n: int) -> int:
    return (-n) % _ALIGN


PARALLEL_COPY_BYTES = 16 * 1024 * 1024  # larger buffers are copied by two threads


def _copy_in_two(dst: memoryview, src: memoryview) -> bool:
    """Copy ``src`` into ``dst`` (same size) with this thread and one helper, each taking
    half: ``ctypes.memmove`` runs without the GIL, and two cores copy ~25% faster than
    one here (numpy arrays into the object store). False (nothing copied) when either
    buffer cannot be addressed that way (read-only or not contiguous)."""
    import ctypes

    if dst.nbytes != src.nbytes:
        return False  # the plain slice assignment raises the right error
    try:
        d = ctypes.c_char.from_buffer(dst)
        s = ctypes.c_char.from_buffer(src.cast("B") if src.format != "B" else src)
    except (TypeError, ValueError, BufferError):
        return False
    n = dst.nbytes
    half = (n // 2) & ~4095
    d0, s0 = ctypes.addressof(d), ctypes.addressof(s)
    # a thread per copy (~0.1 ms against ~10 ms of copying), so none lingers
    other = threading.Thread(target=ctypes.memmove, args=(d0 + half, s0 + half, n - half),
                             name="microray-copy", daemon=True)
    try:
        other.start()
    except RuntimeError:  # no thread to be had: copy alone
        del d, s
        return False
    # The helper writes through raw addresses: nothing may release either buffer until it
    # is done, not even an exception raised into this thread (a cancel, Ctrl-C).
    interrupted: BaseException | None = None
    try:
        ctypes.memmove(d0, s0, half)
    except BaseException as exc:  # noqa: BLE001 -- re-raised once the helper is done
        interrupted = exc
    while other.is_alive():
        try:
            other.join()
        except BaseException as exc:  # noqa: BLE001
            interrupted = interrupted or exc
    del d, s  # release the buffer exports (the mapping can then be closed)
    if interrupted is not None:
        raise interrupted
    return True


@dataclass
class Serialized:
    """A value ready to be written: the pickle, the out-of-band buffers, the refs inside."""

    pickle_bytes: bytes
    buffers: list[memoryview]
    contained_refs: list[Any]
    is_error: bool = False

    @property
    def total_size(self) -> int:
        size = _HEADER.size + 8 * len(self.buffers) + len(self.pickle_bytes)
        for buf in self.buffers:
            size += _pad(size) + buf.nbytes
        return size

    def write_to(self, out: memoryview) -> None:
        """Write the serialized form into ``out`` (exactly ``total_size`` bytes)."""
        n = len(self.buffers)
        _HEADER.pack_into(out, 0, MAGIC_ERROR if self.is_error else MAGIC, n, len(self.pickle_bytes))
        pos = _HEADER.size
        if n:
            struct.pack_into(f"<{n}Q", out, pos, *(b.nbytes for b in self.buffers))
            pos += 8 * n
        end = pos + len(self.pickle_bytes)
        out[pos:end] = self.pickle_bytes
        pos = end
        for buf in self.buffers:
            pos += _pad(pos)
            end = pos + buf.nbytes
            if buf.nbytes < PARALLEL_COPY_BYTES or not _copy_in_two(out[pos:end], buf):
                out[pos:end] = buf
            pos = end

    def to_bytes(self) -> bytes:
        if not self.buffers:
            return _HEADER.pack(MAGIC_ERROR if self.is_error else MAGIC, 0, len(self.pickle_bytes)) + self.pickle_bytes
        out = bytearray(self.total_size)
        self.write_to(memoryview(out))
        return bytes(out)


def record_ref(ref: Any) -> bool:
    """Called by ``ObjectRef.__reduce__``: note a ref found inside the value being pickled.
    False when no microray serialization is under way (the ref is pickled out of band)."""
    refs = getattr(_local, "refs", None)
    if refs is None:
        return False
    refs.append(ref)
    return True


def serialize(value: Any, *, what: str = "value") -> Serialized:
    """Serialize ``value``; raise ``SerializationError`` naming ``what`` on failure."""
    buffers: list[pickle.PickleBuffer] = []
    outer = getattr(_local, "refs", None)
    refs: list[Any] = []
    _local.refs = refs
    try:
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:  # noqa: BLE001 -- any pickling failure becomes one clear error
        raise SerializationError(
            f"could not serialize {what} of type {type(value).__name__}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        _local.refs = outer
    views = [b.raw() for b in buffers]
    return Serialized(data, views, refs)


def serialize_error(exc: BaseException) -> Serialized:
    try:
        data = cloudpickle.dumps(exc, protocol=5)
    except Exception as err:  # noqa: BLE001 -- an unpicklable exception still reports
        from microray.exceptions import RaySystemError

        data = cloudpickle.dumps(RaySystemError(f"{exc!r} (could not pickle the error: {err})"))
    return Serialized(data, [], [], is_error=True)


def deserialize(view: bytes | memoryview) -> tuple[Any, bool]:
    """Rebuild a value from its serialized form; returns ``(value, is_error)``.

    Buffers are slices of ``view``: with a read-only store view, numpy arrays come
    back read-only and zero-copy."""
    mv = view if isinstance(view, memoryview) else memoryview(view)
    magic, n, plen = _HEADER.unpack_from(mv, 0)
    if magic not in (MAGIC, MAGIC_ERROR):
        raise SerializationError(f"not a microray object (magic {bytes(magic)!r})")
    pos = _HEADER.size
    lengths = struct.unpack_from(f"<{n}Q", mv, pos) if n else ()
    pos += 8 * n
    pickled = mv[pos:pos + plen]
    pos += plen
    bufs = []
    for length in lengths:
        pos += _pad(pos)
        bufs.append(mv[pos:pos + length])
        pos += length
    value = pickle.loads(pickled, buffers=bufs)
    return value, magic == MAGIC_ERROR


_SOURCES_MAX = 4 << 20  # characters of source shipped with one function or class


class _SourcePickler(cloudpickle.CloudPickler):
    """cloudpickle that keeps the file name of the code it pickles by value (cloudpickle
    writes ``<dynamic-code>``), and notes those files, so that a worker's tracebacks name
    the user's file and line and show the line's source."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=5)
        self.files: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.CodeType and _cloudpickle_code_reduce is not None:
            return self._reduce_code(obj)
        return super().reducer_override(obj)

    def _reduce_code(self, code: types.CodeType) -> Any:
        rebuild, args = _cloudpickle_code_reduce(code)
        self.files.add(code.co_filename)
        return rebuild, tuple(code.co_filename if a == "<dynamic-code>" else a for a in args)


def dumps_function(fn: Any) -> bytes:
    """Pickle a function or class for export (by content hash), with the source lines of
    the files its code (pickled by value) comes from: ``loads_function`` makes them known
    to ``linecache`` where those files do not exist (another machine)."""
    try:
        buf = io.BytesIO()
        pickler = _SourcePickler(buf)
        pickler.dump(fn)
    except Exception as exc:  # noqa: BLE001
        name = getattr(fn, "__qualname__", repr(fn))
        raise SerializationError(f"could not serialize remote function/class {name}: {exc}") from exc
    sources: dict[str, str] = {}
    size = 0
    for path in sorted(pickler.files):
        text = "".join(linecache.getlines(path))
        if text and size + len(text) <= _SOURCES_MAX:
            sources[path] = text
            size += len(text)
    return pickle.dumps((_WITH_SOURCES, sources, buf.getvalue()), protocol=5)


def loads_function(data: bytes) -> Any:
    value = pickle.loads(data)
    if not (isinstance(value, tuple) and len(value) == 3 and value[0] == _WITH_SOURCES):
        return value
    _, sources, pickled = value
    for path, text in sources.items():
        if path not in linecache.cache and not os.path.exists(path):
            lines = text.splitlines(keepends=True)
            linecache.cache[path] = (len(text), None, lines, path)  # mtime None: checkcache keeps it
    return pickle.loads(pickled)


_WITH_SOURCES = "microray-fn-v1"


def is_simple(value: Any) -> bool:
    """Values that the plain pickle of a task spec can carry without cloudpickle."""
    t = type(value)
    if t in _SIMPLE:
        return True
    if t is str or t is bytes:
        return len(value) < 4096
    return False


_SIMPLE = {type(None), bool, int, float}


__all__ = ["Serialized", "serialize", "serialize_error", "deserialize", "record_ref",
           "dumps_function", "loads_function", "is_simple"]
