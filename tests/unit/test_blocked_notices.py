"""BlockedNotices: the raylet is told a worker's blocked state one notice at a time, in
order, and always ends up told the state the worker is in now."""

from __future__ import annotations

import asyncio
import threading

from microray.core.blocked_notices import BlockedNotices


class Raylet:
    """Records notices as a raylet would apply them; each one takes ``delay`` loop turns."""

    def __init__(self, delay: int = 3) -> None:
        self.delay = delay
        self.received: list[bool] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def send(self, blocked: bool) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        for _ in range(self.delay):
            await asyncio.sleep(0)
        self.received.append(blocked)
        self.in_flight -= 1


async def settle(notices: BlockedNotices, raylet: Raylet) -> None:
    for _ in range(100):
        await asyncio.sleep(0)
    assert raylet.in_flight == 0


def test_two_gets_in_a_row_end_blocked():
    # blocked, unblocked, blocked: what a task that gets two results one after the other sends
    async def main():
        raylet = Raylet()
        notices = BlockedNotices(asyncio.get_running_loop(), raylet.send)
        notices.enter()
        await asyncio.sleep(0)  # the first notice is on the wire
        notices.leave()
        notices.enter()
        await settle(notices, raylet)
        assert raylet.received[-1] is True  # the worker waits: the raylet must know
        assert notices.told is True
        assert raylet.max_in_flight == 1
        notices.leave()
        await settle(notices, raylet)
        assert raylet.received[-1] is False
        return raylet.received

    received = asyncio.run(main())
    # one notice at a time, alternating: never two of a kind in a row
    assert all(a != b for a, b in zip(received, received[1:])), received
    assert received[0] is True


def test_block_and_unblock_within_one_notice_send_nothing_more():
    async def main():
        raylet = Raylet(delay=5)
        notices = BlockedNotices(asyncio.get_running_loop(), raylet.send)
        notices.enter()
        await asyncio.sleep(0)
        for _ in range(10):  # quick gets while "blocked" is on the wire
            notices.leave()
            notices.enter()
        await settle(notices, raylet)
        return raylet.received

    assert asyncio.run(main()) == [True]


def test_threads_blocking_at_once_count_until_the_last_leaves():
    async def main():
        loop = asyncio.get_running_loop()
        raylet = Raylet()
        notices = BlockedNotices(loop, raylet.send)
        threads = [threading.Thread(target=notices.enter) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        await settle(notices, raylet)
        assert notices.told is True
        for _ in range(3):
            notices.leave()
        await settle(notices, raylet)
        assert notices.told is True  # one thread still waits
        notices.leave()
        await settle(notices, raylet)
        assert notices.told is False
        return raylet.received

    assert asyncio.run(main()) == [True, False]
