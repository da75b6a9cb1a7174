"""A flag a task can wait on for at most a while: `asyncio.Event` plus a timeout, cheaply.

`asyncio.timeout(t)` around `Event.wait()` costs a task cancellation and two exceptions every
time the wait runs out, and the committer's group deadline, the sink runners' linger and every
polled serial sensor's tick run out many times a second while data is sparse (10 serial sensors
at 1 Hz). Here a wait is one future and one timer; running out is returning False.
"""

from __future__ import annotations

import asyncio


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Wakeup:
    """Set from the event loop thread (a callback or another task); one task waits at a time."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self, timeout: float) -> bool:
        """Until set or `timeout` seconds have passed; whether it is set. A cancelled wait
        leaves no timer behind."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return self._set
