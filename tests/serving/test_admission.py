"""Admission on the native scheduler: order, fairness, deadlines, limits, cancellation."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from modelkube_serving.errors import QueueFull, QueueTimeout, RateLimited
from modelkube_serving.services.admission import Admission, AdmissionLimits, Ticket

T = TypeVar("T")


def admission(max_running: int = 1, max_queued: int = 8, **limits: float) -> Admission:
    changes: list[tuple[int, int]] = []
    adm = Admission(
        AdmissionLimits(max_running, max_queued, **limits),  # type: ignore[arg-type]
        lambda r, q: changes.append((r, q)),
    )
    adm.changes = changes  # type: ignore[attr-defined]
    return adm


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await scenario()

    return asyncio.run(main())


async def served_order(adm: Admission, tickets: list[tuple[str, Ticket]]) -> list[str]:
    """Queue `tickets` behind one running request, then free it and record who ran."""
    order: list[str] = []
    first = await adm.acquire()

    async def wait(name: str, ticket: Ticket) -> None:
        slot = await adm.acquire(ticket)
        order.append(name)
        await asyncio.sleep(0)
        slot.release()

    tasks = []
    for name, ticket in tickets:
        tasks.append(asyncio.create_task(wait(name, ticket)))
        await asyncio.sleep(0)
    first.release()
    await asyncio.gather(*tasks)
    return order


def test_queues_in_order_then_refuses() -> None:
    async def scenario() -> None:
        adm = admission(1, 2)
        first = await adm.acquire()

        async def use_slot() -> None:
            (await adm.acquire()).release()

        waiters = [asyncio.create_task(use_slot()) for _ in range(2)]
        await asyncio.sleep(0)
        assert (adm.running, adm.queued) == (1, 2)
        with pytest.raises(QueueFull) as refused:
            await adm.acquire()
        assert refused.value.headers() == {"Retry-After": "1"}
        first.release()
        first.release()  # a second release is harmless
        await asyncio.gather(*waiters)
        assert adm.idle
        assert adm.changes[-1] == (0, 0)  # type: ignore[attr-defined]

    run(scenario)


def test_one_heavy_key_cannot_starve_another() -> None:
    heavy = [(f"h{i}", Ticket("heavy", 0, 4000)) for i in range(6)]
    light = [(f"l{i}", Ticket("light", 0, 500)) for i in range(2)]
    order = run(lambda: served_order(admission(1, 16), heavy + light))
    # FIFO would run all six heavy requests first; fair queueing lets "light" in early.
    assert order.index("l0") <= 2
    assert order.index("l1") <= 3


def test_lower_priority_value_is_admitted_first() -> None:
    tickets = [("later", Ticket("a", 5, 10)), ("normal", Ticket("a", 0, 10))]
    tickets.append(("urgent", Ticket("b", -1, 10)))
    assert run(lambda: served_order(admission(1, 8), tickets)) == ["urgent", "normal", "later"]


def test_queued_past_its_deadline_gets_504() -> None:
    async def scenario() -> None:
        adm = admission(1, 4, max_queue_wait_s=0.05)
        slot = await adm.acquire()
        with pytest.raises(QueueTimeout) as timed_out:
            await adm.acquire()
        assert timed_out.value.status_code == 504
        assert adm.queued == 0
        slot.release()
        assert adm.idle

    run(scenario)


def test_rate_limit_per_key_answers_429_with_retry_after() -> None:
    async def scenario() -> None:
        adm = admission(4, 4, requests_per_minute=2)
        for _ in range(2):
            (await adm.acquire(Ticket("a"))).release()
        with pytest.raises(RateLimited) as limited:
            await adm.acquire(Ticket("a"))
        assert limited.value.status_code == 429
        assert limited.value.headers() == {"Retry-After": "30"}
        (await adm.acquire(Ticket("b"))).release()  # other keys are unaffected

    run(scenario)


def test_cancelled_waiter_leaves_the_queue_and_a_handed_slot_passes_on() -> None:
    async def scenario() -> None:
        adm = admission(1, 4)
        slot = await adm.acquire()
        waiter = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert adm.queued == 0
        # A waiter handed the slot just as its client left gives the slot to the next one.
        second = asyncio.create_task(adm.acquire())
        third = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0)
        slot.release()
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        (await third).release()
        assert adm.idle

    run(scenario)
