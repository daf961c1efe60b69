"""The bounded queue in front of the batch: a slot per running request, FIFO waiting."""

import asyncio
from collections import deque
from collections.abc import Callable

from modelkube_serving.errors import QueueFull


class Slot:
    """One admitted request's place in the batch; releasing twice is harmless."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()


class Admission:
    def __init__(
        self, max_running: int, max_queued: int, on_change: Callable[[int, int], None]
    ) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._on_change = on_change
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def idle(self) -> bool:
        return self.running == 0 and not self._waiters

    async def acquire(self) -> Slot:
        if self.running < self.max_running and not self._waiters:
            self.running += 1
            self._changed()
            return Slot(self._release)
        if len(self._waiters) >= self.max_queued:
            raise QueueFull(
                f"the server is at capacity ({self.running} running, {self.queued} queued); "
                "retry later",
                retry_after_s=1,
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._changed()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over as we were cancelled
            else:
                self._waiters.remove(waiter)
                self._changed()
            raise
        return Slot(self._release)

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; running stays the same
                self._changed()
                return
        self.running -= 1
        self._changed()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def _changed(self) -> None:
        if self.idle:
            self._idle.set()
        else:
            self._idle.clear()
        self._on_change(self.running, len(self._waiters))
