"""``MemoryStore``: entries, ``wait`` and ``on_ready`` callbacks.

The blocking cases start one waiter thread and join it with a generous deadline:
the assertion is about what ``wait`` returns, never about how long it took.
"""

from __future__ import annotations

import threading

import pytest

from microray.core.memory_store import ERROR, IN_STORE, SERIALIZED, VALUE, MemoryStore

A, B, C = b"a" * 28, b"b" * 28, b"c" * 28
JOIN_S = 30.0


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def _waiter(store: MemoryStore, ids: list[bytes], num_ready: int) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(store.wait(ids, num_ready, None)), daemon=True)
    thread.start()
    return thread, out


def test_put_get_delete(store: MemoryStore) -> None:
    store.put(A, VALUE, 1)
    store.put_many([(B, SERIALIZED, b"x"), (C, IN_STORE, "node")])
    assert store.get(A) == (VALUE, 1)
    assert store.get(B) == (SERIALIZED, b"x")
    assert store.get(C) == (IN_STORE, "node")
    assert store.size() == 3
    store.delete(A)
    store.delete(A)  # absent: no error
    assert store.get(A) is None
    assert store.size() == 2


def test_wait_returns_at_once_when_enough_are_present(store: MemoryStore) -> None:
    store.put(A, VALUE, 1)
    assert store.wait([A, B], 1, None) == {B}


def test_wait_with_zero_timeout_never_blocks(store: MemoryStore) -> None:
    assert store.wait([A, B], 2, 0) == {A, B}


def test_wait_times_out_with_the_missing_ids(store: MemoryStore) -> None:
    store.put(A, VALUE, 1)
    assert store.wait([A, B, C], 3, 0.01) == {B, C}


def test_repeated_id_counts_once(store: MemoryStore) -> None:
    """Asking for as many as given, with an id given twice, must not wait for ever."""
    store.put(A, ERROR, ValueError("x"))
    assert store.wait([A, A], 2, None) == set()


def test_put_wakes_a_blocked_wait(store: MemoryStore) -> None:
    thread, out = _waiter(store, [A, B], 2)
    store.put(A, VALUE, 1)
    store.put_many([(B, VALUE, 2)])
    thread.join(JOIN_S)
    assert out == [set()]
    assert store._requests == []  # the request is gone once answered


def test_wait_for_some_returns_the_rest_as_missing(store: MemoryStore) -> None:
    thread, out = _waiter(store, [A, B, C], 1)
    store.put(B, VALUE, 2)
    thread.join(JOIN_S)
    assert out == [{A, C}]


def test_on_ready_for_present_object_returns_true_without_calling(store: MemoryStore) -> None:
    store.put(A, VALUE, 1)
    called: list[bytes] = []
    assert store.on_ready(A, called.append) is True
    assert called == []


def test_on_ready_called_once_when_the_object_lands(store: MemoryStore) -> None:
    called: list[bytes] = []
    assert store.on_ready(A, called.append) is False
    assert store.on_ready(A, called.append) is False
    assert store.on_ready(B, called.append) is False
    store.put(A, VALUE, 1)
    assert called == [A, A]
    store.put(A, VALUE, 2)  # a second put: callbacks already ran
    store.put_many([(B, VALUE, 3)])
    assert called == [A, A, B]
