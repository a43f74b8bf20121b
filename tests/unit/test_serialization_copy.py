"""Large out-of-band buffers are copied into their destination by two threads; the
result must be byte-identical whatever the size, and read-only sources still work."""

from __future__ import annotations

import numpy as np
import pytest

from microray import serialization


@pytest.mark.parametrize("extra", [0, 1, 4095, 4097])
@pytest.mark.parametrize("writable", [True, False])
def test_large_buffers_round_trip_exactly(extra: int, writable: bool) -> None:
    n = serialization.PARALLEL_COPY_BYTES + extra
    value = np.random.default_rng(extra).integers(0, 256, n, dtype=np.uint8)
    value.setflags(write=writable)
    ser = serialization.serialize({"a": value, "b": value[::-1].copy()})
    out = bytearray(ser.total_size)
    ser.write_to(memoryview(out))
    back, is_error = serialization.deserialize(memoryview(out))
    assert not is_error
    assert np.array_equal(back["a"], value) and np.array_equal(back["b"], value[::-1])


def test_an_exception_in_the_copying_thread_waits_for_the_helper(monkeypatch) -> None:
    # the helper copies through raw addresses: an exception raised into the caller (a
    # cancel, Ctrl-C) must not release the buffers before the helper is done
    import ctypes
    import threading

    real = ctypes.memmove
    main = threading.get_ident()

    def memmove(dst, src, n):
        out = real(dst, src, n)
        if threading.get_ident() == main:
            raise KeyboardInterrupt("interrupted while copying")
        return out

    monkeypatch.setattr(ctypes, "memmove", memmove)
    n = serialization.PARALLEL_COPY_BYTES * 2
    src = np.random.default_rng(3).integers(0, 256, n, dtype=np.uint8)
    dst = bytearray(n)
    with pytest.raises(KeyboardInterrupt):
        serialization._copy_in_two(memoryview(dst), memoryview(src))
    assert not [t for t in threading.enumerate() if t.name == "microray-copy"]
    assert np.array_equal(np.frombuffer(dst, dtype=np.uint8), src)  # both halves were written


def test_buffers_of_different_sizes_are_not_copied_in_two() -> None:
    assert serialization._copy_in_two(memoryview(bytearray(10)), memoryview(bytearray(11))) is False
