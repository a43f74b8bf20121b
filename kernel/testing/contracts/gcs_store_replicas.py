"""The part of ``GcsStoreContract`` for a replicated server: a ``gcs_server`` with ``members``
(each a ``microray.testing.servers.ServerProcess``: ``kill()`` = SIGKILL, ``launch()`` and
``wait_ready()`` = start again and wait until it serves), such as
``microray.testing.secure_servers.EtcdCluster``. Mixed into ``GcsStoreContract``; without
``members`` these tests do nothing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from microray.interfaces.gcs_store import GcsStore
from microray.registrations import GcsStoreRegistration
from microray.testing.contracts._gcs_store_support import _watch_applies, run, start_watch

#: Calls that must keep working while members die: retry long enough for a leader election on
#: a loaded machine (a store's own default may be shorter).
REPLICA_RETRY_TIMEOUT = 20.0
#: Calls each load loop must complete while a member is down (shows it is really serving).
CALLS_WHILE_DOWN = 10


class GcsStoreReplicaTests:
    """Losing one member of a replicated server; needs the fixtures of ``GcsStoreContract``."""

    def test_member_loss_under_load(
        self,
        store_factory: Callable[..., GcsStore] | None,
        registration: GcsStoreRegistration,
        gcs_server: Any,
    ) -> None:
        """Kill -9 each member in turn (the first is the one clients start on) while one client
        writes new keys, another advances a compare-and-set counter and a third watches; every
        call succeeds, every acknowledged write is there, and the watch sees every counter
        value exactly once and in order, and every key written."""
        members = list(getattr(gcs_server, "members", None) or [])
        if len(members) < 3 or store_factory is None:
            return
        writer = store_factory(retry_timeout=REPLICA_RETRY_TIMEOUT)
        counter = store_factory(retry_timeout=REPLICA_RETRY_TIMEOUT)
        watcher = store_factory(retry_timeout=REPLICA_RETRY_TIMEOUT)
        watching = _watch_applies(registration, watcher)

        async def body() -> None:
            reader = await start_watch(watcher, "ml") if watching else None
            stop = asyncio.Event()
            written: list[bytes] = []
            applied = 0  # counter values known to be committed

            async def put_loop() -> None:
                for i in itertools.count():
                    if stop.is_set():
                        return
                    key = b"p%06d" % i
                    await writer.put("ml", key, key)
                    written.append(key)

            async def cas_loop() -> None:
                # One lane, values unique per attempt: a compare_and_set that reports False
                # after a retry but whose value is there was in fact applied (see the docs).
                nonlocal applied
                for attempt in itertools.count():
                    if stop.is_set():
                        return
                    current = await counter.get("ml", b"counter")
                    value = b"%d:%d" % (applied + 1, attempt)
                    if await counter.compare_and_set("ml", b"counter", current, value):
                        applied += 1
                    elif await counter.get("ml", b"counter") == value:
                        applied += 1
                    else:
                        raise AssertionError(f"counter changed under its only writer: {current!r}")

            async def advance(what: str) -> None:
                """Wait until both loops did CALLS_WHILE_DOWN more calls (or one failed)."""
                goal_puts, goal_cas = len(written) + CALLS_WHILE_DOWN, applied + CALLS_WHILE_DOWN
                deadline = time.monotonic() + 60
                while len(written) < goal_puts or applied < goal_cas:
                    for task in loops:
                        if task.done():
                            task.result()  # raises the loop's error
                            raise AssertionError(f"a load loop stopped {what}")
                    assert time.monotonic() < deadline, f"no progress {what}: {len(written)} puts, {applied} increments"
                    await asyncio.sleep(0.02)

            loops = [asyncio.ensure_future(put_loop()), asyncio.ensure_future(cas_loop())]
            try:
                await advance("before any member was killed")
                for index, member in enumerate(members):
                    await asyncio.to_thread(member.kill)
                    await advance(f"while member {index} ({member.url}) was down")
                    # Launched from this (the main) thread: a server started from a pool thread
                    # gets its parent-death signal when that thread ends (see ServerProcess).
                    member.launch()
                    await asyncio.to_thread(member.wait_ready)
                    await advance(f"after member {index} ({member.url}) came back")
            finally:
                stop.set()
                results = await asyncio.gather(*loops, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            stored = await writer.get_all("ml", b"p")
            assert sorted(stored) == written and all(stored[k] == k for k in written)
            final = await writer.get("ml", b"counter")
            assert final is not None and int(final.split(b":")[0]) == applied
            if reader is None:
                return
            await writer.put("ml", b"~end", b"")
            events = await reader.until(b"~end", timeout=60)
            counts = [int((e.value or b"").split(b":")[0]) for e in events if e.key == b"counter"]
            assert counts == list(range(1, applied + 1)), f"counter events {counts[:5]}..{counts[-5:]}"
            # a put retried after its reply was lost may show twice; none may be missing
            assert {e.key for e in events if e.key.startswith(b"p")} == set(written)
            await reader.close()

        run(body, writer, counter, watcher, timeout=300)
