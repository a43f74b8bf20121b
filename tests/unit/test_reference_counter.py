"""``ReferenceCounter``: what keeps an object, and the one ``on_free`` when nothing does."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from microray.core.reference_counter import ReferenceCounter

A, B, C = b"a" * 28, b"b" * 28, b"c" * 28
OWNER = "10.0.0.1:7000"


class Freed(list):
    """Records ``on_free`` calls as ``(object_id, owned, owner)``."""

    def __call__(self, object_id: bytes, owned: bool, owner: str | None) -> None:
        self.append((object_id, owned, owner))


@pytest.fixture
def freed() -> Freed:
    return Freed()


@pytest.fixture
def rc(freed: Freed) -> ReferenceCounter:
    return ReferenceCounter(freed)


# -- local refs -----------------------------------------------------------------------
def test_owned_object_freed_once_when_last_local_ref_goes(rc: ReferenceCounter, freed: Freed) -> None:
    rc.add_owned(A)
    rc.add_local(A)
    rc.add_local(A)
    rc.remove_local(A)
    assert freed == []
    rc.remove_local(A)
    assert freed == [(A, True, None)]
    assert not rc.owns(A)
    assert rc.num_tracked() == 0


def test_removing_an_uncounted_ref_frees_nothing(rc: ReferenceCounter, freed: Freed) -> None:
    """A second removal, or a ref counted by an earlier worker of the process."""
    rc.add_local(A)
    rc.remove_local(A)
    rc.remove_local(A)
    rc.remove_local(B)
    rc.remove_submitted([B])
    assert freed == [(A, False, None)]


# -- submitted tasks ------------------------------------------------------------------
def test_submitted_task_keeps_its_arguments(rc: ReferenceCounter, freed: Freed) -> None:
    rc.add_owned(A)
    rc.add_local(A)
    rc.add_submitted([A, A])  # the ref appears twice in one task's arguments
    rc.remove_local(A)
    assert freed == []
    assert rc.counts(A)["submitted"] == 2
    rc.remove_submitted([A, A])
    assert freed == [(A, True, None)]


# -- contained refs -------------------------------------------------------------------
def test_contained_refs_live_as_long_as_the_outer_object(rc: ReferenceCounter, freed: Freed) -> None:
    rc.add_owned(A)
    rc.add_owned(B)
    rc.add_local(B)
    rc.add_local(A)
    rc.add_contained(A, [B])  # put([b]) made A
    rc.remove_local(B)
    assert freed == []
    assert rc.counts(B)["contained"] == 1
    rc.remove_local(A)
    assert freed == [(A, True, None), (B, True, None)]  # the outer first, then what it held


def test_contained_chain_is_released_all_the_way(rc: ReferenceCounter, freed: Freed) -> None:
    for oid in (A, B, C):
        rc.add_owned(oid)
    rc.add_local(A)
    rc.add_contained(A, [B])
    rc.add_contained(B, [C])
    rc.remove_local(A)
    assert [f[0] for f in freed] == [A, B, C]


def test_contained_ref_still_held_locally_survives_the_outer(rc: ReferenceCounter, freed: Freed) -> None:
    rc.add_local(A)
    rc.add_local(B)
    rc.add_contained(A, [B])
    rc.remove_local(A)
    assert freed == [(A, False, None)]
    rc.remove_local(B)
    assert freed[-1] == (B, False, None)


def test_add_contained_with_nothing_inside_changes_nothing(rc: ReferenceCounter, freed: Freed) -> None:
    rc.add_local(A)
    rc.add_contained(A, [])
    rc.remove_local(A)
    assert freed == [(A, False, None)]


# -- borrowers (owner side) -----------------------------------------------------------
def test_owner_keeps_object_while_borrowed(rc: ReferenceCounter, freed: Freed) -> None:
    rc.add_owned(A)
    rc.add_local(A)
    assert rc.add_borrower(A, "w1")
    assert rc.add_borrower(A, "w2")
    rc.remove_local(A)
    rc.remove_borrower(A, "w1")
    assert freed == []
    rc.remove_borrower(A, "w1")  # twice: no effect
    rc.remove_borrower(A, "w2")
    assert freed == [(A, True, None)]


def test_borrower_refused_for_objects_not_owned(rc: ReferenceCounter) -> None:
    assert not rc.add_borrower(A, "w1")
    rc.add_owned(A)
    rc.add_local(A)
    rc.remove_local(A)  # freed: no longer owned here
    assert not rc.add_borrower(A, "w1")


def test_dead_borrower_holds_nothing(rc: ReferenceCounter, freed: Freed) -> None:
    for oid in (A, B):
        rc.add_owned(oid)
        rc.add_local(oid)
        rc.add_borrower(oid, "dead")
        rc.remove_local(oid)
    rc.add_borrower(B, "alive")
    assert rc.remove_borrower_everywhere("dead") == 2
    assert freed == [(A, True, None)]  # B still has a live borrower
    assert rc.remove_borrower_everywhere("dead") == 0


# -- borrowing (borrower side) --------------------------------------------------------
def test_borrowed_object_released_with_its_owner(rc: ReferenceCounter, freed: Freed) -> None:
    """The borrower frees its cached copy and learns whom to tell (the owner)."""
    rc.add_local(A)
    rc.mark_borrowed(A, OWNER)
    assert rc.is_borrowing(A)
    rc.remove_local(A)
    assert freed == [(A, False, OWNER)]
    assert not rc.is_borrowing(A)


def test_borrow_registered_after_last_ref_went_is_ended_at_once(rc: ReferenceCounter, freed: Freed) -> None:
    """The owner must hear that the borrow ended, or it keeps the object for ever."""
    rc.add_local(A)
    rc.remove_local(A)
    rc.mark_borrowed(A, OWNER)
    assert freed == [(A, False, None), (A, False, OWNER)]
    assert not rc.is_borrowing(A)


# -- pins and disowning ---------------------------------------------------------------
def test_pinned_object_is_never_freed(rc: ReferenceCounter, freed: Freed) -> None:
    rc.add_owned(A)
    rc.add_local(A)
    rc.pin([A])
    rc.remove_local(A)
    assert freed == []
    assert rc.counts(A)["pinned"] is True


def test_disowned_object_is_freed_as_not_owned(rc: ReferenceCounter, freed: Freed) -> None:
    rc.add_owned(A)
    rc.add_local(A)
    rc.disown(A)
    rc.remove_local(A)
    assert freed == [(A, False, None)]


# -- threads --------------------------------------------------------------------------
class _RecordingLock:
    """A real lock that counts acquisitions and knows whether it is held."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acquired = 0

    def __enter__(self) -> None:
        self._lock.acquire()
        self.acquired += 1

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


@pytest.mark.parametrize(
    "change",
    [
        lambda rc: rc.add_owned(A),
        lambda rc: rc.mark_borrowed(A, OWNER),
        lambda rc: rc.add_local(A),
        lambda rc: rc.add_submitted([A]),
        lambda rc: rc.add_contained(A, [B]),
        lambda rc: rc.pin([A]),
        lambda rc: rc.add_borrower(A, "w"),
        lambda rc: rc.disown(A),
    ],
    ids=["add_owned", "mark_borrowed", "add_local", "add_submitted", "add_contained", "pin",
         "add_borrower", "disown"],
)
def test_every_change_happens_under_the_lock(change: Any, freed: Freed) -> None:
    rc = ReferenceCounter(freed)
    lock = _RecordingLock()
    rc._lock = lock  # type: ignore[assignment]
    change(rc)
    assert lock.acquired >= 1


def test_on_free_is_called_outside_the_lock(freed: Freed) -> None:
    """``on_free`` does I/O (store deletes, RPCs) and may touch the counter again."""
    held_during_free = []
    lock = _RecordingLock()

    def on_free(object_id: bytes, owned: bool, owner: str | None) -> None:
        held_during_free.append(lock.locked())
        rc.counts(object_id)  # would deadlock if called under the lock

    rc = ReferenceCounter(on_free)
    rc._lock = lock  # type: ignore[assignment]
    rc.add_owned(A)
    rc.add_local(A)
    rc.add_contained(A, [B])
    rc.add_local(C)
    rc.mark_borrowed(C, OWNER)
    rc.remove_local(A)
    rc.remove_local(C)
    assert held_during_free == [False, False, False]


def test_add_owned_local_counts_ownership_and_one_local_ref() -> None:
    freed: list[tuple[bytes, bool, str | None]] = []
    rc = ReferenceCounter(lambda oid, owned, owner: freed.append((oid, owned, owner)))
    rc.add_owned_local(b"x")
    assert rc.counts(b"x") == {"local": 1, "submitted": 0, "contained": 0, "borrowers": 0,
                               "pinned": False, "owned": True}
    rc.add_local(b"x")
    rc.remove_local(b"x")
    assert freed == []
    rc.remove_local(b"x")  # the last ref: freed once, as owned
    assert freed == [(b"x", True, None)]
    assert not rc.owns(b"x")
