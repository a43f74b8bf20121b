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
