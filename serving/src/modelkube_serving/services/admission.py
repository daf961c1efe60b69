"""The bounded queue in front of the batch, on the native scheduler.

The scheduler decides who goes next (priorities, then API keys in deficit round robin by token
cost), enforces rate limits and deadlines; this module parks each waiting request on a future
and wakes it when a slot is handed over.
"""

import asyncio
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from modelkube_native import (
    Admission as NativeAdmission,
)
from modelkube_native import (
    InvalidArgumentError,
    QueueFullError,
    RateLimitedError,
)

from modelkube_serving.engine.intake import hand_over
from modelkube_serving.errors import InvalidRequest, QueueFull, QueueTimeout, RateLimited


@dataclass(frozen=True)
class AdmissionLimits:
    max_running: int
    max_queued: int
    max_queue_wait_s: float = 60.0
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True)
class Ticket:
    """What a request asks admission for: whose it is, how urgent, how many tokens at most."""

    key: str = ""
    priority: int = 0
    cost: int = 1


class Slot:
    """One admitted request's place in the batch; releasing twice is harmless."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()


class Admission:
    def __init__(self, limits: AdmissionLimits, on_change: Callable[[int, int], None]) -> None:
        self.limits = limits
        self._core = NativeAdmission(
            limits.max_running,
            limits.max_queued,
            requests_per_minute=limits.requests_per_minute,
            tokens_per_minute=limits.tokens_per_minute,
        )
        self._tickets = itertools.count()
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._on_change = on_change
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        return self._core.running

    @property
    def queued(self) -> int:
        return self._core.queued

    @property
    def idle(self) -> bool:
        return self.running == 0 and self.queued == 0

    def _submit(self, ticket: Ticket) -> tuple[int, float, float, bool]:
        """The ticket's number, when it came, its deadline, and whether it got a slot at once;
        the scheduler's refusals raise."""
        number = next(self._tickets)
        now = time.monotonic()
        deadline = now + self.limits.max_queue_wait_s
        key, priority, cost = ticket.key, ticket.priority, ticket.cost
        admitted = self._core.submit(number, key, priority, cost, deadline, now)
        return number, now, deadline, admitted

    async def acquire(self, ticket: Ticket = Ticket()) -> Slot:
        try:
            number, now, deadline, admitted = self._submit(ticket)
        except QueueFullError:
            raise QueueFull(
                f"the server is at capacity ({self.running} running, {self.queued} queued); "
                "retry later",
                retry_after_s=1,
            ) from None
        except RateLimitedError as exc:
            raise RateLimited(str(exc), retry_after_s=math.ceil(exc.retry_after_s)) from None
        except InvalidArgumentError as exc:
            raise InvalidRequest(str(exc), param="max_tokens") from None
        if admitted:
            self._changed()
            return Slot(self._release)
        hand_over()  # it may queue long: an idle engine does not wait for it (intake.py)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters[number] = waiter
        self._changed()
        # The scheduler owns the deadline; this timer only asks it to expire who is due.
        alarm = loop.call_at(loop.time() + deadline - now, self._expire, deadline)
        try:
            await waiter
        except BaseException:
            if self._give_up(number, waiter):
                self._release()  # handed a slot as the client went away: pass it on
            raise
        finally:
            alarm.cancel()
        return Slot(self._release)

    def try_acquire(self, ticket: Ticket) -> Slot | None:
        """A slot at once, or None where `acquire` would queue the request or refuse it (it
        then says why). Safe off the event loop's thread while the loop is not running
        callbacks (the gateway's front holds its gate): it wakes no waiter."""
        if self.queued or self.running >= self.limits.max_running:
            return None  # the fair queue decides who goes next, not the first to ask here
        try:
            number, _, _, admitted = self._submit(ticket)
        except (QueueFullError, RateLimitedError, InvalidArgumentError):
            return None
        if not admitted:
            self._core.cancel(number)
            return None
        self._changed()
        return Slot(self._release)

    def _timed_out(self) -> QueueTimeout:
        return QueueTimeout(
            f"the request waited {self.limits.max_queue_wait_s:g} s in the queue without a "
            "free slot; retry later",
            retry_after_s=1,
        )

    def _give_up(self, number: int, waiter: asyncio.Future[None]) -> bool:
        """A waiter leaves (client gone): True if it was handed a slot meanwhile."""
        self._waiters.pop(number, None)
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            return True
        self._core.cancel(number)
        self._changed()
        return False

    def _expire(self, due: float) -> None:
        # `due`, not the clock alone: the loop may run a timer a hair before its time.
        self._fail_expired(self._core.expire(max(time.monotonic(), due)))
        self._changed()

    def _fail_expired(self, numbers: list[int]) -> None:
        for number in numbers:
            waiter = self._waiters.pop(number, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(self._timed_out())

    def _release(self) -> None:
        while True:
            handed, expired = self._core.release(time.monotonic())
            self._fail_expired(expired)
            if handed is None:
                break
            waiter = self._waiters.pop(handed, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)  # the slot passes on; running stays the same
                break
            # Its task already left (it cannot be here otherwise): free the slot again.
        self._changed()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def _changed(self) -> None:
        if self.idle:
            self._idle.set()
        else:
            self._idle.clear()
        self._on_change(self.running, self.queued)
